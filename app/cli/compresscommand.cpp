#include "clioptions.h"

#include "base/error.h"
#include "methods/registry.h"
#include "run/compressionrun.h"
#include "run/preflight.h"
#include "run/runfolder.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace lathe::cli {

int runCompress(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"output", "threads"}, {"json", "check", "estimate", "overwrite", "resume"});
    if (!o.ok() || o.positional().size() != 1) {
        std::fprintf(stderr,
                     "usage: lathe-cli compress JOB.json [--output DIR] [--overwrite | --resume] [--check | --estimate]\n"
                     "                          [--json]\n"
                     "  runs a compression job (magnitude, wanda, slicegpt): calibration, the method, perplexity\n"
                     "  before/after and the export, into the job's output folder (see docs/compression.md);\n"
                     "  --check makes every check of the job (the model-dependent ones too), creates nothing and exits;\n"
                     "  --estimate also times one forward pass here and prints the run's estimated time, memory and\n"
                     "  export size, and whether it fits;\n"
                     "  --resume continues an interrupted run in its folder: finished points are kept, and Wanda and\n"
                     "  SliceGPT continue from their last layer checkpoint (output.checkpoint_seconds)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    CompressionSpec spec = CompressionSpec::fromFile(o.positional()[0]);
    if (o.value("output"))
        spec.outputDir = *o.value("output");
    if (o.flag("overwrite"))
        spec.overwrite = true;
    if (o.flag("resume"))
        spec.resume = true;
    if (o.flag("check")) {
        checkCompressionSpec(spec); // every check, the model-dependent ones too; creates nothing
        std::printf("%s\n", spec.toJson().dump(2).c_str());
        return 0;
    }
    if (o.flag("estimate")) {
        const Preflight p = preflightCompression(spec);
        const RunEstimate &e = p.estimate;
        if (o.flag("json")) {
            nlohmann::json j = e.toJson();
            j["probe"] = {{"seq_len", p.probe.seqLen},
                          {"build_seconds", p.probe.buildSeconds},
                          {"forward_seconds", p.probe.forwardSeconds}};
            if (!p.probe.device.empty())
                j["probe"]["device"] = {{"name", p.probe.device},
                                        {"build_seconds", p.probe.deviceBuildSeconds},
                                        {"forward_seconds", p.probe.deviceForwardSeconds}};
            j["calibration_tokens"] = p.calibrationTokens;
            j["eval_tokens"] = p.evalTokens;
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("probe: engine built in %.2f s, one %lld-token window in %.3f s\n", p.probe.buildSeconds,
                        (long long)p.probe.seqLen, p.probe.forwardSeconds);
            if (!p.probe.device.empty())
                std::printf("probe on %s: built in %.2f s, the window in %.4f s\n", p.probe.device.c_str(),
                            p.probe.deviceBuildSeconds, p.probe.deviceForwardSeconds);
            std::printf("%s", e.report().c_str());
        }
        return e.refusal.empty() ? 0 : 1;
    }
    // One line per 1% of the job or every 10 s, whichever comes first; the run folder's progress.jsonl has more.
    double lastShown = -1, lastTime = 0;
    const CompressionRunResult r = runCompression(spec, [&](const Progress &p) {
        const double t = steadySeconds();
        if (p.fraction - lastShown >= 0.01 || t - lastTime >= 10.0 || p.fraction >= 1.0) {
            std::fprintf(stderr, "[%5.1f%%] %s\n", p.fraction * 100.0, p.stage.c_str());
            lastShown = p.fraction;
            lastTime = t;
        }
        return true;
    });
    if (o.flag("json")) {
        std::printf("%s\n", r.toJson().dump().c_str());
        return 0;
    }
    std::printf("\n%-10s %10s %12s %12s %12s %9s\n", "sparsity", "PPL", "params", "MB (dense)", "MB (compact)", "time");
    if (r.densePerplexity > 0 || r.denseParams > 0)
        std::printf("%-10s %10.3f %12lld %12.1f %12.1f %9s\n", "dense", r.densePerplexity, (long long)r.denseParams,
                    double(r.denseBytes) / 1e6, double(r.denseBytes) / 1e6, "");
    for (const CompressionRunRecord &x : r.runs)
        std::printf("%-10.2f %10.3f %12lld %12.1f %12.1f %8.1fs\n", x.sparsity, x.perplexity, (long long)x.params,
                    double(x.bytesDense) / 1e6, double(x.bytesCompact) / 1e6, x.methodSeconds);
    std::printf("\nrun folder: %s (results.json, run.log)\n", spec.outputDir.c_str());
    nlohmann::json line = {{"method", spec.methodName()}, {"dense_ppl", r.densePerplexity}};
    nlohmann::json runs = nlohmann::json::array();
    for (const CompressionRunRecord &x : r.runs)
        runs.push_back({{"sparsity", x.sparsity}, {"ppl", x.perplexity}, {"params", x.params},
                        {"seconds", x.methodSeconds}});
    line["runs"] = runs;
    std::printf("%s\n", line.dump().c_str());
    return 0;
}

int runMethods(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {}, {"json"});
    if (!o.ok() || !o.positional().empty()) {
        std::fprintf(stderr, "usage: lathe-cli methods [--json]\n  the compression methods and their parameters\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (o.flag("json")) {
        std::printf("%s\n", methodsJson().dump(2).c_str());
        return 0;
    }
    for (const CompressionMethod *m : compressionMethods()) {
        const MethodInfo &i = m->info();
        std::printf("%s — %s\n  %s\n  %s; %s%s; sparsity: %s; export: %s\n", i.name.c_str(), i.title.c_str(),
                    i.summary.c_str(), methodKindName(i.kind), i.needsCalibration ? "needs calibration text" : "no calibration",
                    i.needsGradients ? ", needs gradients" : "", i.ratioMeaning.c_str(), exportKindName(i.exportKind));
        for (const ParamSpec &p : i.params) {
            std::string range;
            if (p.type == ParamType::Integer || p.type == ParamType::Real)
                range = " in [" + paramValueText(p.min) + ", " + paramValueText(p.max) + "]";
            if (p.type == ParamType::Choice) {
                for (const std::string &c : p.choices)
                    range += (range.empty() ? " one of " : ", ") + c;
                if (p.openChoice)
                    range += ", ...";
            }
            const std::string def = paramValueText(p.defaultValue);
            std::printf("    %-28s %-12s default %s%s%s\n      %s\n", p.key.c_str(), paramTypeName(p.type),
                        def.empty() ? "none" : def.c_str(), range.c_str(), p.unit.empty() ? "" : (" (" + p.unit + ")").c_str(),
                        p.help.c_str());
        }
        std::printf("\n");
    }
    return 0;
}

} // namespace lathe::cli
