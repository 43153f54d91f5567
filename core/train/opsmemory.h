#pragma once

// The GPU trainer's device memory, by formula (what `lathe-cli train --dry-run` and the preflight print before a run,
// and what tst_devicetraining holds to the bytes the trainer allocates).

#include "engine/deviceforward.h"
#include "model/modelconfig.h"
#include "train/devicetraining.h"

#include <cstdint>

namespace lathe::train {

// Device bytes of an OpsTrainer (train/opstrainer.h) for `parameters` parameters, `trainableParameters` of them
// trained, at batches of B x S, with GPU ops:
// - the parameters (4 bytes each), the trained ones' gradients and both moments (12 more);
// - per block the saved activations: the input and the attention norm's output; q, k, v and the context; what the
//   attention saves for its backward, by `store` (attentionSavedFloats); the MLP's up projection and activation,
//   and the gate with SwiGLU; for sequential blocks the residual between attention and MLP and its norm's output;
//   a norm's rstd per row, and its mean with LayerNorm. BERT's post-norm blocks keep as many: the two sums entering
//   their norms instead of the attention norm's output and the residual;
// - BERT's embedding sum, its LayerNorm's statistics and the masked-LM head's dense output and activation;
// - with recomputation the blocks' inputs only, and one block's set;
// - one block's gradient buffers and the head's (7 B S D, 2 or 3 B S F, 2 B S (H + KV) d, and GPT-2's fused q/k/v
//   product or its gradient); the RoPE table;
// - the ops' scratch: the loss's rows x chunk logits, the score block of the sequences the attention takes at a
//   time (attentionSequencesPerCall x H S^2, or B H S floats with the fused attention), and with bf16 products
//   bf16 copies of the operands, and the small buffers (column sums' partials, the gradient norm's partials, token
//   ids, pointer arrays);
// - a fixed allowance of 512 MiB for the CUDA context and cuBLAS's workspaces (an allowance, not a measurement);
// - `linearKindBytes`, what a method's linears hold besides their parameters (OpsTrainer::linearKindBytes: masks
//   and the scratch their products need).
uint64_t opsTrainerDeviceBytes(const ModelConfig &c, int64_t parameters, int64_t trainableParameters, int64_t B,
                               int64_t S, ComputePrecision precision, bool recompute, AttentionStore store,
                               uint64_t linearKindBytes = 0);

// The same bytes in their parts: the trainer's own buffers (exactly what OpsTrainer allocates: its deviceBytes), the
// ops' scratch (an upper bound: sized for the largest op of each kind), the method's linears' bytes as given, and
// the fixed allowance.
struct OpsTrainerMemory {
    uint64_t buffers = 0, scratch = 0, linearKinds = 0;
    uint64_t allowance = uint64_t(512) << 20;
    uint64_t total() const { return buffers + scratch + linearKinds + allowance; }
};
OpsTrainerMemory opsTrainerMemory(const ModelConfig &c, int64_t parameters, int64_t trainableParameters, int64_t B,
                                  int64_t S, ComputePrecision precision, bool recompute, AttentionStore store,
                                  uint64_t linearKindBytes = 0);

} // namespace lathe::train
