#pragma once

#include "run/preflight.h"

#include <atomic>

#include "base/progress.h"
#include "methods/methodparams.h"

#include <nlohmann/json.hpp>

#include "model/modelconfig.h"
#include "numeric/backend.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

class FineTuningMethod;

// A training run as `lathe-cli train JOB.json` reads it (issue 17 item 6). JSON keys (docs/training.md):
//   model, tokenizer?, trainable (regex over parameter names; default every parameter),
//   data {train, eval? | holdout (the fraction of the training text's tokens, from its end, kept out of training
//         and evaluated), seq_len, batch, accumulate, eval_windows, seed},
//   optimizer {lr, schedule ("constant" | "linear" | "cosine"), warmup, min_lr_ratio, beta1, beta2, eps,
//              weight_decay, clip},
//   method?, the method's parameters at their keys, recompute, steps, eval_every, checkpoint_every, output {dir, export, dtype, gguf,
//   overwrite}, device ("cpu" | "cuda" | "cuda:N" | "auto"), precision ("bf16" | "fp32": the GPU's products), comment.
// Relative paths are resolved against the folder of the spec file.
struct TrainingSpec {
    std::string model, tokenizer;
    std::string trainable = ".*";
    std::string trainText, evalText;
    double holdout = 0;
    int64_t seqLen = 256, batch = 4, accumulate = 1, evalWindows = 8;
    uint64_t seed = 42;
    bool recompute = false; // keep block inputs only, recompute each block in backward (train/causallm.h)
    // Where the steps run. "auto" (the default, as for compression jobs since the GPU trainer passed check-gpu on
    // an H200): the GPU trainer where there is a usable GPU and it runs this job, else the CPU, the log saying why;
    // "cpu": the reference engine, every family and method; "cuda" / "cuda:N": the GPU trainer
    // (train/devicetraining.h: the decoder families, plain or with a method that trains on the GPU; anything else is
    // refused with the reason). `precision` is the GPU's product precision.
    std::string device = "auto";
    std::string precision = "bf16";
    // A fine-tuning method (methods/trainingmethod.h: "losparse", "pst") and its parameters, read at their keys
    // ("pst.final_sparsity"); none: plain fine-tuning of the `trainable` parameters (the dense control).
    const FineTuningMethod *method = nullptr;
    MethodParams methodParams;
    double lr = 3e-4;
    std::string schedule = "cosine";
    int64_t warmup = 0;
    double minLrRatio = 0.1;
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.1, clip = 1.0;
    int64_t steps = 200, evalEvery = 50, checkpointEvery = 50;
    std::string outputDir;
    bool exportModel = true;
    std::string dtype = "f32";
    std::string gguf; // also write model.gguf for llama.cpp (weights f32, f16 or q8_0); empty: no
    bool overwrite = false;
    bool resume = false;  // continue the run in outputDir from its last checkpoint (not part of the JSON)
    std::string specFile; // the file the spec was read from: protected like the inputs

    nlohmann::json toJson() const;
    // LatheError naming the key for unknown keys, wrong types and bad values.
    static TrainingSpec fromJson(const nlohmann::json &j, const std::string &baseDir = {});
    static TrainingSpec fromFile(const std::string &path);
};

// Every check that needs no model: files, ranges, the output folder (a training run's, never an input's).
void validateTrainingSpec(const TrainingSpec &spec);

// The GPU a run's steps go to, or none (the CPU): "cpu" none; "cuda[:N]" that GPU (what the GPU trainer does not
// run is refused when the run makes it); "auto" the first GPU when there is one and the GPU trainer runs the job
// (plain fine-tuning, or a method it runs), else none with the reason in `why`.
std::optional<DeviceInfo> trainingGpu(const TrainingSpec &spec, std::string *why = nullptr);

// What a run will hold in memory, known before any work (`lathe-cli train --dry-run`), and how much data it has.
struct TrainingPlan {
    // What the loss and the evaluation's perplexity are of: "next-token", or BERT's "masked-LM (15% of tokens)"
    // (exp of the mean loss over the masked tokens, the same masks at every evaluation).
    std::string objective;
    int64_t parameters = 0, trainableParameters = 0;
    uint64_t weightBytes = 0, gradientBytes = 0, optimizerBytes = 0, activationBytes = 0;
    int64_t trainTokens = 0, trainWindows = 0, evalWindows = 0;
    uint64_t totalBytes() const { return weightBytes + gradientBytes + optimizerBytes + activationBytes; }
    nlohmann::json toJson() const;
};
// validateTrainingSpec, the model opened and checked, the texts tokenized: everything but the work.
TrainingPlan planTraining(const TrainingSpec &spec);

// What `lathe-cli train JOB.json --estimate` and the training dialog show before a run: the plan, a timed probe
// of one training step of the job's model and method on this machine (run/preflight.h), and the estimate of the
// run's time, memory and disk, with the refusal of a run that does not fit. Creates nothing. `cancel` (may be
// null) is looked at between the set-up and each probe step: CancelledError when it is set.
struct TrainingPreflight {
    TrainingPlan plan;
    TrainingProbe probe;
    RunEstimate estimate;
};
TrainingPreflight preflightTraining(const TrainingSpec &spec, const std::atomic<bool> *cancel = nullptr);

struct TrainingStep {
    int64_t step = 0; // 1-based: the state after this many optimizer steps
    double loss = 0, lr = 0, gradNorm = 0, tokensPerSecond = 0;
    nlohmann::json method = nlohmann::json::object(); // the fine-tuning method's values at this step (sparsity)
};
struct TrainingEval {
    int64_t step = 0; // 0: before training
    double loss = 0, perplexity = 0;
};
struct TrainingResult {
    std::string status = "running"; // "done", "cancelled", "failed"
    std::string error;
    TrainingPlan plan;
    std::vector<TrainingStep> steps;
    std::vector<TrainingEval> evals;
    std::string exportDir;
    std::string ggufFile; // model.gguf (output.gguf), empty when none
    std::string device = "cpu"; // where the steps ran: "cpu", or the GPU trainer's description
    double seconds = 0;
    nlohmann::json method = nlohmann::json::object(); // the fine-tuning method's report (budget, kept fractions)
    nlohmann::json toJson() const;
};

// Runs the spec: every check and the tokenization before the run folder is created (marker: a training run),
// then per step `accumulate` micro-batches of `batch` windows of the shuffled training text (a new permutation per
// epoch from the seed), forward and backward, global-norm clipping, AdamW at the schedule's rate; evaluation on
// the first eval_windows windows of the evaluation text (the perplexity protocol) before training, every
// eval_every steps and at the end; a checkpoint every checkpoint_every steps (weights, AdamW moments and step,
// data position: written into a new folder swapped in atomically). The folder receives spec.json, run.log,
// metrics.jsonl (one line per step and per evaluation), results.json, checkpoint/ and the exported model/ (an
// ordinary Hugging Face folder). With spec.resume, the run continues from the folder's checkpoint and ends with
// the weights and losses of an uninterrupted run. Cancellation (progress returning false) stops at a step
// boundary with CancelledError after results.json records it.
// Sees every step and evaluation as it happens (the GUI's live chart), on the training thread.
struct TrainingObserver {
    std::function<void(const TrainingPlan &)> plan; // once, before the first evaluation (the objective, sizes)
    std::function<void(const TrainingStep &)> step;
    std::function<void(const TrainingEval &)> eval;
};
TrainingResult runTraining(const TrainingSpec &spec, const ProgressCallback &progress = {},
                           const TrainingObserver &observer = {});

} // namespace lathe
