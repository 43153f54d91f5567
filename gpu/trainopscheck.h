#pragma once

#include "gpuselfcheck.h"

#include <vector>

namespace lathe::gpu {

// Every training op of gpu/trainops.h against its CPU reference in core/train/ops.h (and the CPU AdamW kernel), on
// random inputs with a fixed seed, shapes that exercise the edge cases (grouped KV heads, partial rotary, a
// vocabulary that the chunk does not divide, rows without a target, repeated token ids, gradients that already hold
// values, so accumulation is checked). The error is max |GPU - CPU| / max |CPU| over each op's outputs (forward
// results and every gradient). Tolerances:
// - fp32 (pedantic GEMMs): 1e-5: summation order and libm-vs-CUDA exp/tanh/erf differences are ~1e-6 of the
//   largest value at these sizes; a wrong index or a missing term is of order 1;
// - bf16 products (the linear and the LM head with bf16 operands, fp32 accumulation): 3e-2, the operands' rounding
//   (2^-9 relative) summed over the reductions;
// - AdamW: 1e-6 of the largest weight (the tolerance against torch.optim.AdamW);
// - the gradient norm's sum of squares: 1e-12 relative (fp64 sums of the same fp32 values, in another order).
// Runs on the current device (GpuContext::forDevice(0)).
std::vector<GpuCheck> runTrainOpChecks();

} // namespace lathe::gpu
