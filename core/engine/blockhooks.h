#pragma once

#include "numeric/mat.h"

#include <cstdint>
#include <functional>

namespace lathe {

// Signals inside one transformer block that hooks can observe, each a (batch*seq x width) activation. Pre-norm
// decoders (Llama, OPT, GPT-2): BlockInput is the residual stream before the attention norm, AttnInput the norm's
// output (the input of q, k and v), AttnContext the attention's output before o_proj (o_proj's input), AttnOutput
// o_proj's output, MlpResidual the residual stream before the MLP norm, MlpInput the MLP norm's output (input of
// gate/up), MlpHidden the activated hidden state (down's input), MlpOutput down's output, BlockOutput the residual
// stream after the block.
// Phi-2 (parallel): MlpInput is AttnInput (one norm feeds both branches); MlpResidual is not emitted.
// BERT (post-norm): MlpResidual is the attention sub-layer's output after its LayerNorm, which is also MlpInput.
enum class BlockSignal : uint8_t {
    BlockInput,
    AttnInput,
    AttnContext,
    AttnOutput,
    MlpResidual,
    MlpInput,
    MlpHidden,
    MlpOutput,
    BlockOutput,
    Count
};

const char *blockSignalName(BlockSignal s);

// Which part of a block a pass runs: all of it, or (sequential decoder blocks) the two halves split at MlpResidual.
enum class BlockPart : uint8_t { Whole, Attention, Mlp };

// Observers for Transformer::runBlock. `observe` is called synchronously on the thread that runs the block, in
// signal order; the matrix is valid only during the call. `mask` selects signals (bit i = BlockSignal i).
struct BlockHooks {
    std::function<void(int layer, BlockSignal signal, const Mat &x)> observe;
    uint32_t mask = ~0u;

    bool wants(BlockSignal s) const { return observe && (mask >> unsigned(s) & 1u); }
    static uint32_t bit(BlockSignal s) { return 1u << unsigned(s); }
};

} // namespace lathe
