#pragma once

#include "methods/method.h"
#include "train/causallm.h"
#include "train/devicetraining.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// Fine-tuning methods (LoSparse, PST, SAT: issue 18) are registered like every method (methods/registry.cpp), with
// MethodKind::FineTuning; `lathe-cli train` runs them, `compress` refuses them. The trainer (run/trainingrun.cpp)
// asks the method for a TrainingMethodRun and calls it around every step; the method's parameters live in the
// training job spec at their keys ("pst.final_sparsity", ...).
namespace lathe {

// What a fine-tuning method does to one training run. Calls, in order: prepare once (before the optimizer's first
// step, also on resume before the checkpoint is read back), then per step beforeStep, the forward/backward passes,
// the optimizer step and afterStep (the step's gradients are still in place). restore follows prepare on resume.
class TrainingMethodRun {
public:
    virtual ~TrainingMethodRun() = default;
    // Swaps in the method's linears and sets which parameters train.
    virtual void prepare(train::CausalLm<float> &lm) = 0;
    // `step` is 0-based, of `total`: the schedule's value for this step (sparsity, omission rate), selections.
    virtual void beforeStep(train::CausalLm<float> &, int64_t /*step*/, int64_t /*total*/) {}
    virtual void afterStep(train::CausalLm<float> &, int64_t /*step*/, int64_t /*total*/) {}
    // What afterStep reads and writes of the parameters, so that the GPU trainer (MethodInfo::trainsOnGpu) need not
    // copy them to the host: per row of each parameter rowSumsAfterStep names, the sum of |value ⊙ gradient|
    // (LoSparse's importance of S), which the GPU trainer computes and hands over with setRowSums before afterStep
    // (one float per row; on the CPU afterStep computes them from the model itself); and the rows whose values
    // afterStep zeroed, which takeZeroedRows gives after it, for the GPU trainer to zero there too (on the CPU they
    // are the model's, already zero).
    virtual std::vector<std::string> rowSumsAfterStep() const { return {}; }
    virtual void setRowSums(std::vector<std::vector<float>>) {}
    virtual std::vector<std::pair<std::string, std::vector<uint8_t>>> takeZeroedRows() { return {}; }
    // What beforeStep reads of the weights (SAT's magnitude scores), computed where the parameters are and handed
    // over with setWeightNorms before it, in request order: train::weightNorms of the model's parameters on the
    // CPU, DeviceTrainer::weightNorms on the GPU trainer (whose values the host's model does not follow).
    virtual std::vector<train::WeightNormRequest> weightNormsBeforeStep(const train::CausalLm<float> &,
                                                                        int64_t /*step*/, int64_t /*total*/) const {
        return {};
    }
    virtual void setWeightNorms(std::vector<std::vector<float>>) {}
    // Whether afterStep reads CausalLm::channelNorms (SAT's scores): the GPU trainer then computes them and hands
    // them to the model before it.
    virtual bool readsChannelNorms() const { return false; }
    // Before an evaluation (held-out perplexity) and after it: a method that thins the network for training
    // steps only (SAT) evaluates the whole network.
    virtual void beforeEvaluation(train::CausalLm<float> &) {}
    // Values of this step for the metrics log ({"sparsity": 0.42}); an object, possibly empty.
    virtual nlohmann::json stepReport() const { return nlohmann::json::object(); }
    // The method's summary for results.json: budget, kept fractions, trainable parameters.
    virtual nlohmann::json report(const train::CausalLm<float> &lm) const = 0;
    // A method whose export stores pruned weights as zeros names its pattern here: the run then also writes the
    // compact sparse archive (run.h5) of its pruned linears, as pruning runs do.
    virtual std::optional<SparsityPattern> sparseExport() const { return std::nullopt; }
    // A method whose linears are low-rank plus sparse asks for the compact export beside the merged one
    // (export/losparseexport.h: model-compact/, loadable by transformers with the shipped code).
    virtual bool lowRankSparseExport() const { return false; }
    // What a checkpoint keeps beyond the parameters (masks, running scores), and its restoration.
    virtual nlohmann::json state() const { return nlohmann::json::object(); }
    virtual void restore(const nlohmann::json &) {}
};

// A target linear as a plan sees it before anything is built (lathe-cli train --dry-run): its weight's name, its
// shape (out x in) and whether the job's `trainable` pattern matches it.
struct PlannedLinear {
    std::string weight;
    int64_t out = 0, in = 0;
    bool trainable = true;
};
struct ParameterCounts {
    int64_t total = 0, trainable = 0;
};

// The base of the fine-tuning methods: a compression run (`lathe-cli compress`) is refused with a pointer to
// `lathe-cli train`; the preview lists the linears the method would change.
class FineTuningMethod : public CompressionMethod {
public:
    void checkRun(const Model &model, double sparsity, const MethodParams &params) const override;
    std::vector<std::string> preview(const Model &model, double sparsity, const MethodParams &params) const override;
    MethodOutcome run(Model &model, const MethodParams &params, const MethodContext &context,
                      const ProgressCallback &progress) const override;
    // The run for `model` with these parameters; `seed` is the job's (random initialisations).
    virtual std::unique_ptr<TrainingMethodRun> startTraining(const Model &model, const MethodParams &params,
                                                             uint64_t seed) const = 0;
    // The key of the parameter holding the regex of target linear weights; empty for a method without one (SAT
    // thins whole blocks' channels).
    virtual std::string targetsKey() const = 0;
    // The method's schedule over a run of `steps` steps, the value a run reports at each step (step 1..steps):
    // its name ("sparsity", "kept_fraction_of_s", "omission") and values, for the Train dialog's preview.
    struct Schedule {
        std::string name;
        std::vector<double> values;
    };
    virtual Schedule schedule(const MethodParams &params, int64_t steps) const = 0;
    // The parameter counts of a run whose dense model has `dense` and these target linears (the ones targetsKey()
    // matches), without building it: what prepare() will add, remove and freeze. The default changes nothing.
    // tst_finetune checks each method's plan against the counts of the model it really builds.
    virtual ParameterCounts planParameters(const MethodParams &, const std::vector<PlannedLinear> &,
                                           ParameterCounts dense) const {
        return dense;
    }

protected:
    // `name` with at(t) for t = first .. first + steps - 1.
    static Schedule sampleSchedule(const std::string &name, int64_t steps, int64_t first,
                                   const std::function<double(int64_t)> &at);
};

// The block linears of `lm` whose weight name the regex `pattern` matches, in the model's order; LatheError when
// none does.
std::vector<train::CausalLm<float>::LinearSlot> targetLinears(const train::CausalLm<float> &lm,
                                                              const std::string &pattern);

// The block linears of `model` whose weight name the regex `pattern` matches, as targetLinears finds them in the
// built model (the same LatheError when none does), each marked trainable when `trainable` (a regex) matches it.
std::vector<PlannedLinear> plannedTargets(const Model &model, const std::string &pattern, const std::string &trainable);

// Cubic sparsity schedule (Zhu & Gupta 2017) between two fractions of the run: `from` until step
// begin * total, `to` from step end * total on, and in between to + (from - to) (1 - p)^3 with p the progress
// through the ramp.
double cubicSchedule(int64_t step, int64_t total, double begin, double end, double from, double to);

// A target-linears parameter: a regular expression over the Hugging Face weight names.
ParamSpec targetsParam(const std::string &key, const std::string &defaultPattern);

} // namespace lathe
