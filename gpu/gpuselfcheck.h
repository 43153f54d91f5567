#pragma once

#include "numeric/backend.h"

#include <string>
#include <vector>

namespace lathe {
class Model;
}

namespace lathe::gpu {

// One comparison of a GPU path with its CPU reference (declared in core, which hands the plugin's results on).
using GpuCheck = GpuSelfCheck;

// Every GPU-vs-CPU check, on the repository's fixtures (tests/fixtures under `sourceDir`) and demo model. Plain C++
// without Qt, so the lent GPU machine (which has no Qt) runs it through `lathe-cli check-gpu`; the Qt test tst_gpu
// runs the same list. LATHE_GPU_ATTENTION=full switches the attention to whole score matrices, to tell a fault of
// the blocked causal attention from others. Tolerances:
// - dequantization: exact (both run core/quantblocks.h in fp32);
// - forward pass in fp32 (pedantic GEMMs, no TF32): max |logit difference| <= 1e-4 x max(1, max |logit|), the
//   tolerance the CPU engine meets against transformers; bf16 / fp16: perplexity within 2% of fp32;
// - cuSOLVER dsyevd: eigenvalues within 1e-10 x the largest, eigenvectors equal up to sign (1 - |dot| <= 1e-8);
//   sgesvd: singular values within 1e-5 x the largest;
// - the training ops (forward and backward): gpu/trainopscheck.h.
// Throws LatheError when no CUDA device is usable.
std::vector<GpuCheck> runGpuSelfChecks(const std::string &sourceDir);

// The part of that list that is not training (trainopscheck.h has the rest) on `device`, a CUDA backend: device
// registry and handles, dequantization, the forward pass, SliceGPT, perplexity, streamed blocks, cuSOLVER. The demo
// model's perplexity runs over `demoWindows` windows of 512 random tokens (4 in check-gpu; the emulated device of
// tst_emulatedgpu, which runs a row kernel's 256 threads one at a time, takes 1), its logits are compared on up to 2.
std::vector<GpuCheck> runGpuEngineChecks(ComputeBackend &device, const std::string &sourceDir,
                                         int64_t demoWindows = 4);

// The sliced model the forward checks run (and tst_emulatedgpu's memory formula measures): `m` (a fixture) sliced
// by SliceGPT at 25%, widths rounded to 1, on 6 windows of 16 random tokens (seed 3); eigendecompositions on
// `solver` when given, else on the CPU.
void sliceForChecks(Model &m, ComputeBackend *solver = nullptr);

} // namespace lathe::gpu
