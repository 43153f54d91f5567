#pragma once

#include <cstdint>

// Hot element-wise and softmax kernels of the CPU engine, compiled twice: for the x86-64 baseline and with
// AVX2 + FMA (cpukernels_avx2.cpp); cpuKernels() picks the AVX2 build at run time when the CPU has it, so the
// program runs on any x86-64 and at full width on a modern one. Loops are written to auto-vectorize; exp is a
// polynomial (max relative error ~2e-7 on [-87, 88]) because libm's expf does not vectorize. No Eigen or
// other templates here: instantiations compiled with AVX2 could otherwise be picked by the linker for baseline code.
namespace lathe::cpu {

struct CpuKernels {
    const char *name;
    // g[i] = silu(g[i]) * u[i]
    void (*siluMul)(float *g, const float *u, int64_t n);
    void (*silu)(float *x, int64_t n);
    void (*geluTanh)(float *x, int64_t n);
    // Softmax of each row of an (nq x nk) score block, in place. Causal: row i sees keys [0, q0 + i + 1) and the
    // rest is zeroed. keyMask (nk entries, 1 = attend) may be null.
    void (*softmaxRows)(float *scores, int64_t nq, int64_t nk, int64_t q0, bool causal, const uint8_t *keyMask);
    // log(sum_j exp(x_j)) over one row of n logits, ~1e-7 relative (the perplexity's normalizer); not finite when
    // the row holds NaN or infinity.
    double (*logSumExp)(const float *x, int64_t n);
};

const CpuKernels &cpuKernels();
const CpuKernels &baselineCpuKernels(); // the x86-64 build, for tests comparing the two

} // namespace lathe::cpu
