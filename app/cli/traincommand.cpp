#include "clioptions.h"

#include "analysis/modelsummary.h"
#include "base/error.h"
#include "engine/evaluation.h"
#include "numeric/blas.h"
#include "run/trainingrun.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

namespace lathe::cli {

// lathe-cli train (issue 17 item 6).
int runTrain(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"resume", "output", "threads", "device", "precision"},
                 {"json", "dry-run", "estimate", "overwrite"});
    const bool fromRunFolder = o.value("resume") && o.positional().empty();
    if (!o.ok() || (o.positional().size() != 1 && !fromRunFolder)) {
        std::fprintf(stderr,
                     "usage: lathe-cli train JOB.json [--output DIR] [--overwrite] [--dry-run | --estimate] [--json]\n"
                     "                                [--device cpu|cuda[:N]|auto] [--precision bf16|fp32]\n"
                     "       lathe-cli train --resume RUN_DIR [--device D] [--json]\n"
                     "  trains the model of the job spec (docs/training.md): shuffled windows of the training text,\n"
                     "  AdamW with the learning-rate schedule, evaluation and checkpoints every K steps, the trained\n"
                     "  model exported as a Hugging Face folder; --dry-run prints the memory plan and does nothing;\n"
                     "  --estimate also times one training step here and prints the run's estimated time, memory\n"
                     "  and disk, and whether it fits (exit status 1 when it does not);\n"
                     "  --resume continues an interrupted run from its last checkpoint (on any device);\n"
                     "  --device and --precision replace the job's (where the steps run, the GPU's products)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    TrainingSpec spec;
    if (fromRunFolder) {
        // The run's own copy of its spec (not an input of the run: it lives in the run folder).
        const std::filesystem::path dir(*o.value("resume"));
        if (!std::filesystem::exists(dir / "spec.json"))
            throw LatheError(dir.string() + " holds no training run (no spec.json)",
                             "give the run folder of lathe-cli train, or the job too: lathe-cli train JOB.json --resume DIR");
        spec = TrainingSpec::fromJson(nlohmann::json::parse(readTextFile((dir / "spec.json").string())));
        spec.outputDir = dir.string();
        spec.resume = true;
    } else {
        spec = TrainingSpec::fromFile(o.positional()[0]);
        if (o.value("output"))
            spec.outputDir = *o.value("output");
        spec.overwrite = spec.overwrite || o.flag("overwrite");
        if (o.value("resume")) {
            spec.outputDir = *o.value("resume");
            spec.resume = true;
        }
    }
    if (o.value("device"))
        spec.device = *o.value("device");
    if (o.value("precision"))
        spec.precision = *o.value("precision");
    if (o.flag("dry-run") || o.flag("estimate")) {
        const bool estimate = o.flag("estimate");
        TrainingPreflight pf;
        if (estimate)
            pf = preflightTraining(spec);
        else
            pf.plan = planTraining(spec);
        const TrainingPlan &plan = pf.plan;
        if (o.flag("json")) {
            nlohmann::json j = plan.toJson();
            if (estimate) {
                j = {{"plan", j}, {"estimate", pf.estimate.toJson()}};
                j["probe"] = {{"seq_len", pf.probe.seqLen},           {"batch", pf.probe.batch},
                              {"setup_seconds", pf.probe.setupSeconds},
                              {"forward_seconds", pf.probe.forwardSeconds}, {"backward_seconds", pf.probe.backwardSeconds},
                              {"fixed_seconds", pf.probe.fixedSeconds}, {"device", pf.probe.device}};
            }
            std::printf("%s\n", j.dump().c_str());
            return estimate && !pf.estimate.refusal.empty() ? 1 : 0;
        }
        std::printf("objective    %s\n", plan.objective.c_str());
        std::printf("parameters   %lld (%lld trainable)\n", (long long)plan.parameters,
                    (long long)plan.trainableParameters);
        std::printf("weights      %s\ngradients    %s\nAdamW state  %s\nactivations  %s (batch %lld x %lld tokens)\n",
                    humanBytes(plan.weightBytes).c_str(), humanBytes(plan.gradientBytes).c_str(),
                    humanBytes(plan.optimizerBytes).c_str(), humanBytes(plan.activationBytes).c_str(),
                    (long long)spec.batch, (long long)spec.seqLen);
        std::printf("total        %s\ndata         %lld training tokens (%lld windows), %lld evaluation windows\n",
                    humanBytes(plan.totalBytes()).c_str(), (long long)plan.trainTokens, (long long)plan.trainWindows,
                    (long long)plan.evalWindows);
        if (!estimate)
            return 0;
        std::printf("probe        set-up %.2f s; %lld x %lld tokens: forward %.3f s, backward %.3f s, "
                    "optimizer and method %.3f s\n%s",
                    pf.probe.setupSeconds, (long long)pf.probe.batch, (long long)pf.probe.seqLen, pf.probe.forwardSeconds,
                    pf.probe.backwardSeconds, pf.probe.fixedSeconds, pf.estimate.report().c_str());
        return pf.estimate.refusal.empty() ? 0 : 1;
    }
    double lastShown = -1;
    const TrainingResult r = runTraining(spec, [&](const Progress &p) {
        if (p.fraction - lastShown >= 0.01 || p.fraction >= 1.0) {
            std::fprintf(stderr, "[%5.1f%%] %s\n", p.fraction * 100.0, p.stage.c_str());
            lastShown = p.fraction;
        }
        return true;
    });
    if (o.flag("json")) {
        std::printf("%s\n", r.toJson().dump().c_str());
        return 0;
    }
    std::printf("objective: %s\n", r.plan.objective.c_str());
    for (const TrainingEval &e : r.evals)
        std::printf("step %6lld  eval loss %.4f  perplexity %.3f\n", (long long)e.step, e.loss, e.perplexity);
    if (!r.steps.empty())
        std::printf("final training loss %.4f after %lld steps, %.1f s\n", r.steps.back().loss,
                    (long long)r.steps.back().step, r.seconds);
    std::printf("run folder: %s%s%s\n", spec.outputDir.c_str(), r.exportDir.empty() ? "" : "; model: ",
                r.exportDir.c_str());
    return 0;
}

} // namespace lathe::cli
