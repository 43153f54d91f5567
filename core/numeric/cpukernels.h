#pragma once

#include <cstdint>

// Hot element-wise and softmax kernels of the CPU engine, compiled twice: for the x86-64 baseline and with
// AVX2 + FMA (cpukernels_avx2.cpp); cpuKernels() picks the AVX2 build at run time when the CPU has it, so the
// program runs on any x86-64 and at full width on a modern one. Loops are written to auto-vectorize; exp is a
// polynomial (max relative error ~2e-7 on [-87, 88]) because libm's expf does not vectorize. No Eigen or
// other templates here: instantiations compiled with AVX2 could otherwise be picked by the linker for baseline code.
namespace lathe::cpu {

// The per-step constants of one AdamW update (train/adamw.h has the formula): w <- w shrink - stepSize m /
// (sqrt(v) / rootC2 + eps), after m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2.
struct AdamWConstants {
    float b1, b2, shrink, stepSize, rootC2, eps;
};

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
    // One AdamW update of n weights w with gradient g and moments m, v (all distinct arrays), in place. The update
    // is memory-bound once it vectorizes (28 bytes per weight); scalar, its square root and two divisions per
    // weight made it twice as slow.
    void (*adamw)(float *w, float *m, float *v, const float *g, int64_t n, const AdamWConstants &c);
    // The same update where keep[i] != 0 only; the other weights and their moments keep their bits.
    void (*adamwMasked)(float *w, float *m, float *v, const float *g, const float *keep, int64_t n,
                        const AdamWConstants &c);
    // The training step's element-wise passes (train/ops.cpp). mid[i] = silu(gate[i]) * up[i]; its backward adds
    // dmid * up * silu'(gate) to dgate and dmid * silu(gate) to dup.
    void (*swiglu)(const float *gate, const float *up, float *mid, int64_t n);
    void (*swigluBackward)(const float *dmid, const float *gate, const float *up, float *dgate, float *dup, int64_t n);
    // x[i] = exp(x[i] - shift) * scale: the cross-entropy's softmax from its log-normalizer.
    void (*scaledExp)(float *x, int64_t n, float shift, float scale);
    // The softmax backward of one row of n probabilities p: g[i] = scale p[i] (g[i] - sum_j g[j] p[j]).
    void (*softmaxBackward)(const float *p, float *g, int64_t n, float scale);
};

const CpuKernels &cpuKernels();
const CpuKernels &baselineCpuKernels(); // the x86-64 build, for tests comparing the two

} // namespace lathe::cpu
