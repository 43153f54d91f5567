#include "clioptions.h"
#include "enginesetup.h"

#include "analysis/importance.h"
#include "analysis/sensitivity.h"
#include "base/error.h"
#include "engine/evaluation.h"
#include "numeric/blas.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>

namespace lathe::cli {

// lathe-cli sensitivity (issue 19 item 2): per block and per kind of linear, the perplexity when only that part is
// pruned; OWL outlier ratios; per-block sparsities proposed from each at a target, ready for a job spec's
// layer_sparsity.
int runSensitivity(int argc, char **argv) {
    CliOptions o(argc, argv, 2,
                 {"model", "text", "tokenizer", "ratio", "score", "calibration-windows", "eval-windows", "seq-len",
                  "owl-m", "target", "lambda", "threads"},
                 {"json"});
    if (!o.ok() || !o.value("model") || !o.value("text") || !o.positional().empty()) {
        std::fprintf(stderr,
                     "usage: lathe-cli sensitivity --model MODEL --text FILE [--ratio R] [--score wanda|magnitude]\n"
                     "         [--calibration-windows C] [--eval-windows E] [--seq-len N] [--owl-m M]\n"
                     "         [--target S] [--lambda L] [--tokenizer FILE] [--threads T] [--json]\n"
                     "  prunes one block (and one kind of linear in every block) at a time by R (default 0.5) and\n"
                     "  evaluates the first E windows of N tokens of the text (defaults 4, 256); Wanda scores from C\n"
                     "  random windows (default 8); OWL outlier ratios (scores above M x the block mean, M = 5); and\n"
                     "  per-block sparsities with mean S (default R) spread by +-L (default 0.08) from each\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    SensitivityParams p;
    p.ratio = o.number("ratio", 0.5, 1e-6, 0.999);
    const std::string score = o.value("score").value_or(importanceName(ImportanceKind::Wanda));
    ImportanceKind kind = ImportanceKind::Wanda;
    if (!parseImportance(score, kind) || (kind != ImportanceKind::Wanda && kind != ImportanceKind::Magnitude))
        throw LatheError("--score: '" + score + "' is not wanda or magnitude");
    p.wanda = kind == ImportanceKind::Wanda;
    p.calibrationWindows = o.integer("calibration-windows", p.calibrationWindows, 1, 1 << 20);
    p.evalWindows = o.integer("eval-windows", p.evalWindows, 1, 1 << 20);
    p.seqLen = o.integer("seq-len", p.seqLen, 2, 1 << 20);
    p.owlM = o.number("owl-m", p.owlM, 1e-6, 1e6);
    const double target = o.number("target", p.ratio, 0.0, 0.99);
    const double lambda = o.number("lambda", 0.08, 0.0, 0.5);
    const std::string modelPath = *o.value("model");
    LoadedModel m = openModelWithTokenizer(modelPath, o.value("tokenizer"));
    const std::vector<int32_t> ids = m.tokenizer->encodeForModel(joinDatasetRows(readTextFile(*o.value("text"))));
    m.model.reset(); // the sweep opens its own copy
    const bool json = o.flag("json");
    const SensitivityResult r = sensitivitySweep(modelPath, ids, p, [json](const Progress &pr) {
        if (!json)
            std::fprintf(stderr, "\r[%3.0f%%] %-70.70s", pr.fraction * 100.0, pr.stage.c_str());
        return true;
    });
    if (!json)
        std::fprintf(stderr, "\n");
    const std::vector<double> bySensitivity = proposeLayerSparsity(sensitivityScores(r), target, lambda);
    const std::vector<double> byOutliers = p.wanda ? proposeLayerSparsity(outlierScores(r), target, lambda)
                                                   : std::vector<double>{};
    const auto rounded = [](const std::vector<double> &v) {
        std::vector<double> out;
        for (double x : v)
            out.push_back(std::round(x * 1e4) / 1e4);
        return out;
    };
    if (json) {
        nlohmann::json j = sensitivityToJson(r);
        j.update({{"model", modelPath}, {"ratio", p.ratio}, {"score", score}, {"target", target}, {"lambda", lambda},
                  {"owl_m", p.owlM}, {"layer_sparsity_from_sensitivity", rounded(bySensitivity)}});
        if (p.wanda)
            j["layer_sparsity_from_outliers"] = rounded(byOutliers);
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    std::printf("dense perplexity %.3f (%lld predicted tokens); each part pruned by %.0f%% (%s)\n", r.densePerplexity,
                (long long)r.evalTokens, p.ratio * 100, p.wanda ? "Wanda, per row" : "magnitude, per matrix");
    std::printf("%-8s %12s %10s %10s %12s %12s\n", "block", "perplexity", "change", "outliers", "budget:sens",
                p.wanda ? "budget:OWL" : "");
    for (size_t i = 0; i < r.blocks.size(); ++i) {
        const SensitivityUnit &u = r.blocks[i];
        std::printf("%-8d %12.3f %+9.2f%% %9.3f%% %12.4f", u.layer, u.perplexity,
                    (u.perplexity / r.densePerplexity - 1) * 100, u.outlierRatio * 100, bySensitivity[i]);
        if (p.wanda)
            std::printf(" %12.4f", byOutliers[i]);
        std::printf("\n");
    }
    std::printf("\n%-14s %12s %10s\n", "kind", "perplexity", "change");
    for (const SensitivityUnit &u : r.kinds)
        std::printf("%-14s %12.3f %+9.2f%%\n", u.name.c_str(), u.perplexity, (u.perplexity / r.densePerplexity - 1) * 100);
    std::printf("\nlayer_sparsity (mean %.4g, lambda %.4g) from sensitivity: %s\n", target, lambda,
                nlohmann::json(rounded(bySensitivity)).dump().c_str());
    if (p.wanda)
        std::printf("layer_sparsity from OWL outlier ratios (M = %g): %s\n", p.owlM,
                    nlohmann::json(rounded(byOutliers)).dump().c_str());
    if (!r.note.empty())
        std::printf("note: %s\n", r.note.c_str());
    return 0;
}

} // namespace lathe::cli
