#pragma once

#include "gpuselfcheck.h"

#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lathe {
class ComputeBackend;
class Model;
} // namespace lathe

// check-gpu's training checks (gpu/gpuselfcheck.h runs them after the engine's): op by op (trainopscheck.cpp) and
// whole steps (trainstepcheck.cpp).

namespace lathe::gpu {

// Every training op of gpu/trainops.h against its CPU reference in core/train/ops.h (and the CPU AdamW kernel), on
// random inputs with a fixed seed, shapes that exercise the edge cases (grouped KV heads, partial rotary, a
// vocabulary that the chunk does not divide, rows without a target, repeated token ids, gradients that already hold
// values, so accumulation is checked). The error is max |GPU - CPU| / max |CPU| over each op's outputs (forward
// results and every gradient). Tolerances:
// - fp32 (pedantic GEMMs): 1e-5: summation order and libm-vs-CUDA exp/tanh/erf differences are ~1e-6 of the
//   largest value at these sizes; a wrong index or a missing term is of order 1;
// - bf16 products (the linear, the LM head and the attention with bf16 operands, fp32 accumulation): 3e-2, the
//   operands' rounding (2^-9 relative) summed over the reductions;
// - AdamW: 1e-6 of the largest weight (the tolerance against torch.optim.AdamW);
// - the gradient norm's sum of squares: 1e-12 relative (fp64 sums of the same fp32 values, in another order).
// Runs on the current device (GpuContext::forDevice(0)).
std::vector<GpuCheck> runTrainOpChecks();

// Sets an environment variable for a scope, and restores what was there: a check that builds a trainer the way a
// run with it set would (LATHE_GPU_TRAIN_ATTENTION).
class ScopedEnvironment {
public:
    ScopedEnvironment(const char *name, const char *value) : m_name(name) {
        if (const char *old = std::getenv(name))
            m_old = old;
        setenv(name, value, 1);
    }
    ~ScopedEnvironment() {
        if (m_old)
            setenv(m_name, m_old->c_str(), 1);
        else
            unsetenv(m_name);
    }
    ScopedEnvironment(const ScopedEnvironment &) = delete;
    ScopedEnvironment &operator=(const ScopedEnvironment &) = delete;

private:
    const char *m_name;
    std::optional<std::string> m_old;
};

// Runs `check`, which appends its results to `out`; a check that throws is recorded in `out` as failed with the
// message, so that the others still run.
void runGuarded(std::vector<GpuCheck> &out, const std::string &name, const std::function<void()> &check);

// One training step of the GPU trainer (core/train/devicetraining.h) against CausalLm<float> on `model`, a batch of
// 2 x 24 random tokens: the loss (relative error), every parameter's gradient (max |GPU - CPU| / max |CPU| of that
// gradient, the worst parameter reported: the criterion against PyTorch), then clipGradNorm (at a norm
// low enough to clip) and AdamW on both sides from the GPU's gradients (the updated values, relative to each
// parameter's largest value); the loss of a forward-only pass after the step against the CPU's; and a second trainer
// created from the downloaded values and moments (a checkpoint) continuing bit for bit as the first does over two
// accumulated micro-batches and a step. Tolerances: fp32 products 1e-5 (loss), 1e-4 (gradients), 1e-6 (the step); bf16
// products 2e-2 (loss) and 1e-1 (gradients: operands rounded to 8 bits of mantissa on a random model whose
// gradients have no dominant direction; 0.5 with ReLU, whose gate flips where rounding moves a pre-activation
// across zero), and the step's 1e-6; the gradient norm 1e-5 (clipGradNorm sums in fp32). Gradients are measured
// against at least 1e-3 of the model's largest gradient (those that are zero analytically hold only noise).
// With `method` (recovery, losparse), every block linear first becomes that method's linear (LoSparse's with every
// third row of the first S pruned).
GpuCheck runTrainStepCheck(ComputeBackend &device, const Model &model, const std::string &name, bool bf16,
                           const std::string &method = "");

// check-gpu's training steps, each by runTrainStepCheck on `device`: the fixtures (tests/fixtures under `fixtures`)
// of every family (tied head: llama; q/k/v biases: qwen2; learned positions, LayerNorm, GELU and the fused q/k/v
// product: gpt2; ReLU and offset positions: opt; the parallel block with partial RoPE and a biased head: phi;
// post-norm blocks, bidirectional attention, segment embeddings and the masked-LM head: bert-mlm) in fp32, bf16
// and bf16 with the fused attention; the fused kernels at an unpadded head width and under SAT's gathered step; and
// the methods' linears (recovery, LoSparse, PST, SAT) in fp32. A check that throws is a failed check.
std::vector<GpuCheck> runTrainStepChecks(ComputeBackend &device, const std::string &fixtures);

} // namespace lathe::gpu
