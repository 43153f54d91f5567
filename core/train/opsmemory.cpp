#include "train/opsmemory.h"

#include "engine/transformer.h"
#include "train/ops.h"

#include <algorithm>

namespace lathe::train {

OpsTrainerMemory opsTrainerMemory(const ModelConfig &c, int64_t parameters, int64_t trainableParameters, int64_t B,
                                  int64_t S, ComputePrecision precision, bool recompute, AttentionStore store,
                                  uint64_t linearKindBytes) {
    const bool rms = c.family == ArchFamily::Llama, swiglu = rms, parallel = c.family == ArchFamily::Phi,
               post = c.family == ArchFamily::Bert;
    const uint64_t rows = uint64_t(B * S), D = uint64_t(c.hiddenSize), F = uint64_t(c.intermediateSize);
    const uint64_t qw = uint64_t(c.numHeads * c.headDim), kw = uint64_t(c.numKvHeads * c.headDim);
    const uint64_t scores = uint64_t(c.numHeads) * uint64_t(S) * uint64_t(S);
    const uint64_t stats = rows * (rms ? 1 : 2); // a norm's rstd (and mean) per row
    const uint64_t mlp = (swiglu ? 3 : 2) * rows * F;
    // What the attention saves for its backward: the probabilities (bf16 with bf16 products) or the log-sum-exps.
    const uint64_t probs = uint64_t(attentionSavedFloats(store, precision, B, c.numHeads, S));
    const uint64_t perBlock = 2 * rows * D + stats + 2 * rows * qw + 2 * rows * kw + probs + mlp +
                              (parallel ? 0 : 2 * rows * D + stats);
    const uint64_t fused = c.family == ArchFamily::Gpt2 ? rows * (qw + 2 * kw) : 0; // GPT-2's q/k/v product
    const uint64_t chunk = uint64_t(std::clamp<int64_t>((int64_t(64) << 20) / std::max<int64_t>(B * S, 1), 1024,
                                                        std::max<int64_t>(c.vocabSize, 1)));
    // With recomputation the blocks keep their inputs (B S D each) and one block's activations exist at a time.
    const uint64_t blocks = recompute ? uint64_t(c.numLayers) * rows * D + (perBlock - rows * D)
                                      : uint64_t(c.numLayers) * perBlock;
    // The attention's scratch: the score gradients of the sequences it handles per call, or with the fused kernels
    // each row's dO . O (B H S floats).
    const bool fusedAttention = store == AttentionStore::LogSumExp;
    const uint64_t attention = fusedAttention ? uint64_t(B) * uint64_t(c.numHeads) * uint64_t(S)
                                              : uint64_t(attentionSequencesPerCall(B, c.numHeads, S)) * scores;
    uint64_t floats = blocks + 7 * rows * D + stats + rows + mlp + 2 * rows * qw + 2 * rows * kw + fused +
                      (post ? 3 * rows * D + stats : 0);
    // The RoPE table (cos and sin: positions x rotaryDim/2 each).
    floats += uint64_t(c.maxPositions) * uint64_t(ropeTableFor(c, 1, "").rotaryDim);
    OpsTrainerMemory m;
    m.buffers = 4 * uint64_t(parameters) + 12 * uint64_t(trainableParameters) + 4 * floats;
    m.scratch = 4 * (rows * chunk + attention);
    // bf16 copies: a product's two operands (an activation or its gradient, and a weight, the LM head's chunk or an
    // activation), the LM head's input and loss gradient, the attention's q, k, v, output gradient and score gradient
    // (none with the fused kernels, which round their tiles as they load them).
    if (precision != ComputePrecision::Fp32)
        m.scratch += 2 * (rows * std::max({F, D, qw + 2 * kw}) +
                          std::max({rows * std::max(F, D), std::max(F, qw + 2 * kw) * D, chunk * D}) + rows * D +
                          rows * chunk + (fusedAttention ? 0 : 2 * rows * (qw + kw) + attention));
    // The small buffers: the column sums' partials (a float per 64 rows and column of the widest sum: a bias, a
    // norm weight or the head's chunk), the loss's per-row sums (12 bytes a row) or the gradient norm's per-block
    // partials (256 doubles per trained tensor: at most 64 tensors per block and 16 more, PST's six matrices per
    // linear included), whichever is larger; the token ids uploaded (four ints per row) and the score blocks'
    // pointer arrays (three per sequence and head).
    const uint64_t widest = std::max({chunk, F, D, qw + 2 * kw});
    m.scratch += 4 * ((rows + 63) / 64) * widest +
                 std::max(12 * rows, uint64_t(2048) * (64 * uint64_t(c.numLayers) + 16)) + 16 * rows +
                 24 * uint64_t(B) * uint64_t(c.numHeads);
    m.linearKinds = linearKindBytes;
    return m;
}

uint64_t opsTrainerDeviceBytes(const ModelConfig &c, int64_t parameters, int64_t trainableParameters, int64_t B,
                               int64_t S, ComputePrecision precision, bool recompute, AttentionStore store,
                               uint64_t linearKindBytes) {
    return opsTrainerMemory(c, parameters, trainableParameters, B, S, precision, recompute, store, linearKindBytes)
        .total();
}

} // namespace lathe::train
