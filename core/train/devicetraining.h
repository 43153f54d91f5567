#pragma once

#include "base/error.h"
#include "engine/deviceforward.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/linearkinds.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace lathe::train {

// One op's share of the device time: its name (the ops' function name), seconds and calls. A nested entry is a part
// timed inside ops (the bf16 rounding of the products' operands): its seconds are also in those ops'.
struct OpTime {
    std::string op;
    double seconds = 0;
    int64_t calls = 0;
    bool nested = false;
};

// What a device trainer's attention forward saves for its backward (one buffer per block in OpsTrainer): the
// probabilities, B H S^2 values (floats with fp32 products, bf16 with bf16 products: gpu/trainops.h), or with the
// GPU's fused kernels (gpu/trainflashkernels.cuh) each row's log-sum-exp, B H S floats, from which the backward
// recomputes the probabilities tile by tile (train::attentionLogSumExp and attentionFromLogSumExp are its CPU
// references). At SmolLM2's 9 heads, 1024 tokens and batch 16 the probabilities are 302 MB per block in bf16, the
// log-sum-exps 0.6 MB.
enum class AttentionStore { Probabilities, LogSumExp };
// Whether the fused kernels can run a head width with a product precision: bf16 products (their operands are rounded
// to bf16 as tiles are loaded; fp32 products stay pedantic, on the score blocks), a head width up to 96 (padded to a
// multiple of 16, the tensor cores' fragment; their tiles' shared memory stays under the 99 KiB of sm_86/89).
inline bool fusedAttentionRuns(ComputePrecision precision, int64_t headDim) {
    return precision == ComputePrecision::Bf16 && headDim > 0 && headDim <= 96;
}
// The GPU trainer's attention from `request`, LATHE_GPU_TRAIN_ATTENTION's value (null when unset): LogSumExp where
// it is "fused" and the fused kernels run (fusedAttentionRuns), Probabilities otherwise. Opt-in until `lathe-cli
// check-gpu` (its "fused" attention checks) has passed on a GPU: they were written in a session without one. `note`
// says why a request was not followed (empty when it was, or when there was none): the trainer warns with it.
struct AttentionChoice {
    AttentionStore store = AttentionStore::Probabilities;
    std::string note;
};
inline AttentionChoice gpuAttentionChoice(ComputePrecision precision, int64_t headDim, const char *request) {
    const std::string asked = request ? request : "";
    if (asked.empty() || asked == "blocks")
        return {};
    const std::string ignored = "LATHE_GPU_TRAIN_ATTENTION=" + asked + " ignored: ";
    if (asked != "fused")
        return {AttentionStore::Probabilities, ignored + "the values are fused and blocks; attention on score blocks"};
    if (precision != ComputePrecision::Bf16)
        return {AttentionStore::Probabilities,
                ignored + "the fused attention multiplies in bf16 only (these products are " +
                    precisionName(precision) + "); attention on score blocks"};
    if (!fusedAttentionRuns(precision, headDim))
        return {AttentionStore::Probabilities, ignored + "the fused attention has kernels for head widths up to 96, "
                                                         "this model's heads are " + std::to_string(headDim) +
                                                         " wide; attention on score blocks"};
    return {AttentionStore::LogSumExp, {}};
}
inline AttentionChoice gpuAttentionChoice(ComputePrecision precision, int64_t headDim) {
    return gpuAttentionChoice(precision, headDim, std::getenv("LATHE_GPU_TRAIN_ATTENTION"));
}
// The saved buffer's size in floats (4-byte units) for a batch of `batch` sequences of `seq` tokens.
inline int64_t attentionSavedFloats(AttentionStore store, ComputePrecision precision, int64_t batch, int64_t heads,
                                    int64_t seq) {
    if (store == AttentionStore::LogSumExp)
        return batch * heads * seq;
    const int64_t probs = batch * heads * seq * seq;
    return precision == ComputePrecision::Fp32 ? probs : (probs + 1) / 2;
}

// A parameter's weight norms (SAT's magnitude scores): the L2 norms of its rows (columnGroup 0), or of its
// consecutive groups of columnGroup columns (1: every column; out x in weights, row-major).
struct WeightNormRequest {
    std::string name;
    int64_t columnGroup = 0;
};
// How a request on a (rows x cols) weight W is computed, wherever it is: `count` norms, either the rows' (byRows:
// rowAbsProductSums(W, W), then the square roots of those sums of squares) or activationNorms(W, rows, channels,
// W, groups, groupWidth) (every column's norm, or the column groups'). LatheError for a group width that does not
// divide the columns.
struct WeightNormPlan {
    int64_t count = 0, channels = 0, groupWidth = 1;
    int groups = 0;
    bool byRows = false;
};
inline WeightNormPlan weightNormPlan(const WeightNormRequest &r, int64_t rows, int64_t cols) {
    if (r.columnGroup == 0)
        return {rows, 0, 1, 0, true};
    if (r.columnGroup == 1)
        return {cols, cols, 1, 0, false};
    require(r.columnGroup > 0 && cols % r.columnGroup == 0, "weight norms",
            r.name + "'s columns do not split into groups of " + std::to_string(r.columnGroup));
    return {cols / r.columnGroup, 0, r.columnGroup, int(cols / r.columnGroup), false};
}
// The host's, by weightNormPlan from the functions the GPU trainer's ops compute, in request order. LatheError for
// a name that is not a parameter.
inline std::vector<std::vector<float>> weightNorms(const ParameterSet<float> &params,
                                                   const std::vector<WeightNormRequest> &requests) {
    std::vector<std::vector<float>> out;
    for (const WeightNormRequest &r : requests) {
        const Parameter<float> *p = params.find(r.name);
        require(p != nullptr, "weight norms", "no parameter " + r.name);
        const float *w = p->value.data();
        const int64_t rows = p->value.rows(), cols = p->value.cols();
        const WeightNormPlan plan = weightNormPlan(r, rows, cols);
        std::vector<float> &n = out.emplace_back(size_t(plan.count));
        if (plan.byRows) {
            rowAbsProductSums(w, w, rows, cols, n.data());
            for (float &v : n)
                v = std::sqrt(v);
        } else {
            activationNorms(w, rows, plan.channels, w, plan.groups, plan.groupWidth, n.data());
        }
    }
    return out;
}
// Every kind of request on every block linear with a weight parameter of its own (dense, masked or gathered; not
// LoSparse's or PST's): its rows, its columns, and for the output projection its KV groups' column groups. What the
// checks compare between the host and a device trainer (tst_devicetraining, check-gpu).
inline std::vector<WeightNormRequest> everyWeightNormRequest(const CausalLm<float> &lm) {
    const ModelConfig &c = lm.config();
    const int64_t groupWidth = (c.numHeads / c.numKvHeads) * c.headDim;
    std::vector<WeightNormRequest> requests;
    for (const auto &slot : lm.linears())
        if (lm.parameters().find(slot.kind->weightName())) {
            requests.push_back({slot.kind->weightName(), 0});
            requests.push_back({slot.kind->weightName(), 1});
            if (slot.role == TensorRole::AttnO)
                requests.push_back({slot.kind->weightName(), groupWidth});
        }
    return requests;
}

// A training step on an accelerator (issue 17 item 9), implemented in gpu/ from the ops of gpu/trainops.h as a
// service of the device's backend; core sees only this interface. It mirrors CausalLm<float>::forward / backward,
// clipGradNorm and AdamW<float> for the decoders (the Llama family, GPT-2, OPT, Phi-2; tied or untied head) and
// BERT with its masked-LM head (train/opstrainer.h), with dense block linears, fixed-mask ones over zeroed
// weights (recovery), low-rank + sparse ones (LoSparse: their row masks read from the CausalLm's linears at every
// forward) or PST's (their sparsity read the same way); the blocks' selections (SAT's gathered steps) and BERT's
// masking are read from the CausalLm at every forward too, so that CausalLm must outlive the trainer. The
// parameters are copied from a CausalLm when it is created and live on the device in fp32 (the master copy), with
// gradients and AdamW moments for the trainable ones only; the products run in the chosen precision (fp32:
// pedantic, checkable against the CPU; bf16: tensor cores, fp32 accumulation), everything else in fp32; the
// CausalLm's recomputation setting is followed. Learned masks are refused at creation with a LatheError naming
// what (train those on the CPU). Not thread-safe.
class DeviceTrainer {
public:
    virtual ~DeviceTrainer() = default;
    // "cuda:0 NVIDIA H200 (139.8 GiB), bf16 products, 134.5M parameters (2150 MiB held)"
    virtual std::string describe() const = 0;
    // Zeroes every gradient (once per optimizer step, as ParameterSet::zeroGrad).
    virtual void zeroGradients() = 0;
    // The forward pass and backward of the loss CausalLm::forward(batch, maskSeed) computes (the mean next-token
    // loss; BERT's masked-LM loss with the batch masked from maskSeed by the CausalLm's masking), its gradient times
    // `scale` ADDED to the gradients (accumulation: scale = 1 / micro-batches); returns the loss.
    virtual float forwardBackward(const TokenBatch &batch, float scale = 1.0f, uint64_t maskSeed = 0) = 0;
    // The forward pass alone: the same loss over `batch` (evaluation).
    virtual float loss(const TokenBatch &batch, uint64_t maskSeed = 0) = 0;
    // The gradients' global L2 norm; when maxNorm > 0 and the norm is above it, they are scaled to it first (as
    // clipGradNorm). Then one AdamW step at `lr`. Returns the norm before clipping.
    virtual double step(double lr, double maxNorm) = 0;
    // Copies the device's parameter values, and their gradients when asked, into `model`'s parameters (the
    // CausalLm it was created from, or one of the same model).
    virtual void download(CausalLm<float> &model, bool gradients) const = 0;
    // What a method's per-step hook reads and writes (TrainingMethodRun::rowSumsAfterStep, takeZeroedRows), done
    // where the parameters are: per row of each named (trainable) parameter, the sum of |value ⊙ gradient|
    // (train::rowAbsProductSums); and the values of a parameter's rows whose keep byte is 0 zeroed. LatheError for
    // a name the trainer does not hold.
    virtual std::vector<std::vector<float>> rowAbsProductSums(const std::vector<std::string> &names) = 0;
    virtual void zeroRows(const std::string &name, const std::vector<uint8_t> &keep) = 0;
    // train::weightNorms of the trainer's parameters as they are now (TrainingMethodRun::weightNormsBeforeStep).
    virtual std::vector<std::vector<float>> weightNorms(const std::vector<WeightNormRequest> &requests) = 0;
    // SAT's scores: with keep on, every forward also computes the channel norms CausalLm::channelNorms describes,
    // and downloadChannelNorms hands the last forward's to `model` (CausalLm::setChannelNorms).
    virtual void keepChannelNorms(bool keep) = 0;
    virtual void downloadChannelNorms(CausalLm<float> &model) const = 0;
    // Copies the AdamW moments and step count into `optimizer` (for a checkpoint: train::AdamW's layout, one pair
    // per parameter of the CausalLm).
    virtual void downloadOptimizer(AdamW<float> &optimizer) const = 0;
    // Waits for the queued work (what benchmarks time).
    virtual void synchronize() = 0;
    // Per-op device time (`lathe-cli bench train --profile`): with profiling on, every op the trainer runs is timed
    // on the device (events around it; nested ops count in the outer one); opTimes waits for the queued work and
    // returns the totals since the last call, largest first, and starts new ones. A backend that cannot time its
    // ops returns none.
    virtual void profileOps(bool on) = 0;
    virtual std::vector<OpTime> opTimes() = 0;
    // Device bytes the trainer holds now: parameters, gradients, moments, and the activations and gradient buffers
    // of the largest batch so far (not the ops' scratch or the CUDA context: opsTrainerDeviceBytes adds those).
    virtual uint64_t deviceBytes() const = 0;
    // The part of deviceBytes a method's linears hold besides their parameters (masks, their products' scratch).
    virtual uint64_t linearKindBytes() const = 0;
};

// What a device that trains provides (ComputeBackend::service; the CPU has none: it runs CausalLm and AdamW).
class DeviceTrainingService {
public:
    static constexpr const char *kServiceKey = "lathe.train.device-training";
    virtual ~DeviceTrainingService() = default;
    // The parameters are copied from `model`; the optimizer's options, and its moments and step count where it has
    // taken steps (a resumed run), from `optimizer`.
    virtual std::unique_ptr<DeviceTrainer> create(const CausalLm<float> &model, const AdamW<float> &optimizer,
                                                  ComputePrecision precision) = 0;
};

} // namespace lathe::train
