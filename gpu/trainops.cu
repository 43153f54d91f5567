#include "trainops.h"

#include "cudacheck.h"
#include "forwardkernels.cuh"

#include "base/error.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numeric>
#include <string>

namespace lathe::gpu {

namespace {

constexpr int kThreads = 256;
// Rows per partial in the column sums: (rows / 64) x cols partials, then one pass over them per column.
constexpr int64_t kRowsPerPartial = 64;

void checkLaunch() { LATHE_CUDA_CHECK(cudaGetLastError()); }

// ---- embedding ----

__global__ void embeddingForwardKernel(const float *table, const int32_t *ids, int64_t width, float *y) {
    const int64_t r = blockIdx.x;
    const float *src = table + int64_t(ids[r]) * width;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
        y[r * width + c] = src[c];
}

// One block per distinct id: order[start[s] .. start[s+1]) are its rows, in row order.
__global__ void embeddingBackwardKernel(const float *dy, const int32_t *order, const int32_t *start,
                                        const int32_t *segmentId, int64_t width, float *dtable) {
    const int s = blockIdx.x;
    float *dst = dtable + int64_t(segmentId[s]) * width;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        float sum = 0.0f;
        for (int32_t i = start[s]; i < start[s + 1]; ++i)
            sum += dy[int64_t(order[i]) * width + c];
        dst[c] += sum;
    }
}

// ---- column sums in a fixed order ----

template <class F> __global__ void columnPartialsKernel(F f, int64_t rows, int64_t cols, float *partials) {
    const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    const int64_t r0 = int64_t(blockIdx.y) * kRowsPerPartial, r1 = min(rows, r0 + kRowsPerPartial);
    float sum = 0.0f;
    for (int64_t r = r0; r < r1; ++r)
        sum += f(r, c);
    partials[int64_t(blockIdx.y) * cols + c] = sum;
}

__global__ void columnTotalsKernel(const float *partials, int64_t chunks, int64_t cols, float *out) {
    const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    float sum = 0.0f;
    for (int64_t i = 0; i < chunks; ++i)
        sum += partials[i * cols + c];
    out[c] += sum;
}

struct PlainValue { // dy[r, c]: bias gradients; PST's dScores for dR (scaled after the sum)
    const float *dy;
    __device__ float operator()(int64_t r, int64_t c, int64_t cols) const { return dy[r * cols + c]; }
};
struct NormWeightGrad { // dy[r, c] * (x[r, c] - mean[r]) * rstd[r]; mean null for RMSNorm
    const float *dy, *x, *mean, *rstd;
    __device__ float operator()(int64_t r, int64_t c, int64_t cols) const {
        const float centred = mean ? x[r * cols + c] - mean[r] : x[r * cols + c];
        return dy[r * cols + c] * (centred * rstd[r]);
    }
};
struct AbsProduct { // |v[r, c] g[r, c]|: LoSparse's importance of S
    const float *v, *g;
    __device__ float operator()(int64_t r, int64_t c, int64_t cols) const {
        return fabsf(v[r * cols + c] * g[r * cols + c]);
    }
};

// The sum of every thread's `value` over a block of kThreads threads, in a fixed tree order (`part`: kThreads
// values of shared memory); every thread gets it.
template <class T> __device__ T blockSum(T value, T *part) {
    part[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (int(threadIdx.x) < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    return part[0];
}

// ---- row sums in a fixed order ----

// out[r] = scale * (the sum over row r of f(r, c, cols)), or out[r] += that with accumulate; one block per row:
// strided partial sums, then blockSum's tree.
template <class F> __global__ void rowTotalsKernel(F f, int64_t cols, float scale, bool accumulate, float *out) {
    __shared__ float part[kThreads];
    const int64_t r = blockIdx.x;
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        sum += f(r, c, cols);
    const float total = scale * blockSum(sum, part);
    if (threadIdx.x == 0)
        out[r] = accumulate ? out[r] + total : total;
}

// Binds the width into a functor of (r, c).
template <class G> struct WithCols {
    G g;
    int64_t cols;
    __device__ float operator()(int64_t r, int64_t c) const { return g(r, c, cols); }
};

// ---- norms: one block of kRowThreads per row (the forward is the inference pass's normKernel) ----

// xhat = (x - mean) rstd, g = dy w: RMSNorm dx += rstd (g - xhat mean(g xhat)); LayerNorm subtracts mean(g) too.
__global__ void normBackwardKernel(const float *dy, const float *x, const float *w, const float *mean,
                                   const float *rstd, int64_t width, float *dx) {
    const int64_t r = blockIdx.x;
    const float mu = mean ? mean[r] : 0.0f, inv = rstd[r];
    const float *xr = x + r * width, *dyr = dy + r * width;
    float sumG = 0.0f, sumGX = 0.0f;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        const float g = dyr[c] * w[c];
        sumG += g;
        sumGX += g * ((xr[c] - mu) * inv);
    }
    const float meanG = mean ? blockReduce(sumG, false) / float(width) : 0.0f;
    const float meanGX = blockReduce(sumGX, false) / float(width);
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        const float g = dyr[c] * w[c], xhat = (xr[c] - mu) * inv;
        dx[r * width + c] += inv * (g - meanG - xhat * meanGX);
    }
}

// ---- element-wise ----

__global__ void addRowVectorKernel(float *y, const float *b, int64_t rows, int64_t cols) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < rows * cols)
        y[i] += b[i % cols];
}

__global__ void addKernel(const float *a, const float *b, int64_t n, float *out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = a[i] + b[i];
}

__global__ void toBf16Kernel(const float *in, int64_t n, __nv_bfloat16 *out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = __float2bfloat16_rn(in[i]);
}

// Rotates pairs (i, i + half) of every head by sign * angle(position, i).
__global__ void ropeKernel(float *x, int64_t rows, int64_t seq, int heads, int headDim, int half, const float *cosT,
                           const float *sinT, float sign) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= rows * heads * half)
        return;
    const int i = int(idx % half);
    const int64_t rh = idx / half, r = rh / heads;
    const int h = int(rh % heads);
    const int64_t pos = r % seq;
    const float c = cosT[pos * half + i], s = sign * sinT[pos * half + i];
    float *v = x + (r * heads + h) * headDim;
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
}

__device__ inline float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swigluForwardKernel(const float *gate, const float *up, int64_t n, float *mid) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        mid[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
__global__ void swigluBackwardKernel(const float *dmid, const float *gate, const float *up, int64_t n, float *dgate,
                                     float *dup) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float g = gate[i], s = sigmoidf(g), d = dmid[i];
    dgate[i] += d * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] += d * g * s;
}

// GELU and its derivative (train::ops.cpp's gelu).
__device__ inline float2 geluAndDerivative(bool tanhForm, float x) {
    if (tanhForm) {
        const float k = 0.7978845608028654f, cubic = 0.044715f;
        const float t = tanhf(k * (x + cubic * x * x * x));
        const float du = k * (1.0f + 3.0f * cubic * x * x);
        return make_float2(0.5f * x * (1.0f + t), 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
    const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
    return make_float2(x * cdf, cdf + x * 0.3989422804014327f * expf(-0.5f * x * x));
}

__global__ void geluForwardKernel(bool tanhForm, const float *x, int64_t n, float *y) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = geluAndDerivative(tanhForm, x[i]).x;
}

__global__ void geluBackwardKernel(bool tanhForm, const float *dy, const float *x, int64_t n, float *dx) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        dx[i] += dy[i] * geluAndDerivative(tanhForm, x[i]).y;
}

__global__ void maskedAddKernel(float *dw, const float *g, const uint8_t *mask, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        dw[i] += g[i] * float(mask[i]);
}

__global__ void rowMaskedAddKernel(float *dst, const float *src, const uint8_t *rowMask, int64_t rows, int64_t cols) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < rows * cols && rowMask[i / cols])
        dst[i] += src[i];
}

__global__ void reluForwardKernel(const float *x, int64_t n, float *y) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = fmaxf(x[i], 0.0f);
}

__global__ void reluBackwardKernel(const float *dy, const float *x, int64_t n, float *dx) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n && x[i] > 0.0f)
        dx[i] += dy[i];
}

// ---- attention rows: one block per (head, query) row of seq scores (the forward's softmax is the inference
// pass's softmaxKernel, in place) ----

// dS = P (dP - rowsum(dP P)) scale into ds (in place over dP in fp32; a bf16 copy with bf16 products); zero above
// the diagonal.
template <class P, class G>
__global__ void softmaxBackwardKernel(const P *p, const float *dp, G *ds, int64_t seq, bool causal, float scale) {
    const int64_t row = blockIdx.x, i = row % seq;
    const int64_t keys = causal ? i + 1 : seq;
    const P *pr = p + row * seq;
    const float *gr = dp + row * seq;
    G *out = ds + row * seq;
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < keys; j += blockDim.x)
        dot += gr[j] * toFloat(pr[j]);
    dot = blockReduce(dot, false);
    for (int64_t j = threadIdx.x; j < seq; j += blockDim.x)
        out[j] = fromFloat<G>(j < keys ? toFloat(pr[j]) * (gr[j] - dot) * scale : 0.0f);
}

// ---- cross-entropy over one vocabulary chunk [c0, c0 + n): one block per row ----

// log(exp(a) + exp(b)) in fp64, NaN if either is.
__device__ inline double logAddExpD(double a, double b) {
    if (isnan(a) || isnan(b))
        return nan("");
    const double hi = fmax(a, b), lo = fmin(a, b);
    if (isinf(hi))
        return hi;
    return hi + log1p(exp(lo - hi));
}

__global__ void crossEntropyChunkKernel(const float *logits, int64_t n, int64_t c0, const int32_t *targets,
                                        double *lse, float *target) {
    const int64_t r = blockIdx.x;
    const float *x = logits + r * n;
    const float2 ms = rowMaxExpSum(x, n);
    if (threadIdx.x == 0) {
        const float chunkLse = ms.x + logf(ms.y);
        lse[r] = logAddExpD(lse[r], double(chunkLse));
        const int32_t t = targets[r];
        if (t >= c0 && t < c0 + n)
            target[r] = x[t - c0];
    }
}

// logits -> (softmax - onehot) norm: in place, and into `rounded` (bf16) when given; zero rows without a target.
__global__ void crossEntropyGradKernel(float *g, int64_t n, int64_t c0, const int32_t *targets, const float *lse,
                                       float norm, __nv_bfloat16 *rounded) {
    const int64_t r = blockIdx.x;
    float *x = g + r * n;
    const int32_t t = targets[r];
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float v = 0.0f;
        if (t >= 0) {
            v = expf(x[j] - lse[r]) * norm;
            if (c0 + j == t)
                v -= norm;
        }
        x[j] = v;
        if (rounded)
            rounded[r * n + j] = __float2bfloat16(v);
    }
}

__global__ void fillKernel(double *x, int64_t n, double value) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = value;
}

// ---- optimizer ----

__device__ void adamwOne(float *w, float *m, float *v, const float *g, int64_t i, const cpu::AdamWConstants &k) {
    const float gi = g[i];
    const float mi = k.b1 * m[i] + (1.0f - k.b1) * gi;
    const float vi = k.b2 * v[i] + (1.0f - k.b2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * k.shrink - k.stepSize * mi / (sqrtf(vi) / k.rootC2 + k.eps);
}

__global__ void adamwKernel(float *w, float *m, float *v, const float *g, int64_t n, cpu::AdamWConstants k) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        adamwOne(w, m, v, g, i, k);
}

// The entries (rows[i], cols[j]) of a parameter with `cols` columns, i < nRows, j < nCols (null lists: all).
__global__ void adamwSomeKernel(float *w, float *m, float *v, const float *g, int64_t cols, const int32_t *rows,
                                int64_t nRows, const int32_t *activeCols, int64_t nCols, cpu::AdamWConstants k) {
    const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= nRows * nCols)
        return;
    const int64_t i = e / nCols, j = e % nCols;
    adamwOne(w, m, v, g, int64_t(rows ? rows[i] : i) * cols + (activeCols ? activeCols[j] : j), k);
}

constexpr int kReduceBlocks = 256;

// Per block, the sum of x^2 over its grid-stride share, in fp64.
__global__ void sumOfSquaresKernel(const float *x, int64_t n, double *partials) {
    __shared__ double part[kThreads];
    double s = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        s += double(x[i]) * double(x[i]);
    part[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (int(threadIdx.x) < stride)
            part[threadIdx.x] += part[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = part[0];
}

__global__ void scaleKernel(float *x, int64_t n, float factor) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= factor;
}

// ---- LoSparse ----

__global__ void zeroRowsKernel(float *x, const uint8_t *keep, int64_t rows, int64_t cols) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < rows * cols && !keep[i / cols])
        x[i] = 0.0f;
}

// ---- gathered linears (SAT) ----

__global__ void gatherKernel(float *to, const float *from, int64_t fromCols, const int32_t *rows, int64_t nRows,
                             const int32_t *cols, int64_t nCols) {
    const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= nRows * nCols)
        return;
    const int64_t i = e / nCols, j = e % nCols;
    to[e] = from[int64_t(rows ? rows[i] : i) * fromCols + (cols ? cols[j] : j)];
}

__global__ void scatterAddKernel(float *to, int64_t toCols, const float *from, const int32_t *rows, int64_t nRows,
                                 const int32_t *cols, int64_t nCols) {
    const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= nRows * nCols)
        return;
    const int64_t i = e / nCols, j = e % nCols;
    to[int64_t(rows ? rows[i] : i) * toCols + (cols ? cols[j] : j)] += from[e];
}

struct SquaredValue { // x[r, c]^2: the channel norms' sums of squares
    const float *x;
    __device__ float operator()(int64_t r, int64_t c, int64_t cols) const {
        const float v = x[r * cols + c];
        return v * v;
    }
};

__global__ void sqrtKernel(float *x, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = sqrtf(x[i]);
}

// out[g] = the L2 norm of columns [g width, (g + 1) width) of ctx (rows x groups width): one block per group,
// strided partial sums, then a tree in shared memory.
__global__ void groupNormsKernel(const float *ctx, int64_t rows, int64_t width, int64_t stride, float *out) {
    __shared__ float part[kThreads];
    const int64_t c0 = int64_t(blockIdx.x) * width;
    float sum = 0.0f;
    for (int64_t e = threadIdx.x; e < rows * width; e += blockDim.x) {
        const float v = ctx[(e / width) * stride + c0 + e % width];
        sum += v * v;
    }
    const float total = blockSum(sum, part);
    if (threadIdx.x == 0)
        out[blockIdx.x] = sqrtf(total);
}

// ---- PST ----

// scores = |adapted| + scores (alpha1 A B, already there) + alpha2 (r[row] + c[col]).
__global__ void pstScoresKernel(const float *adapted, const float *r, const float *c, int64_t rows, int64_t cols,
                                float alpha2, float *scores) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < rows * cols)
        scores[i] = fabsf(adapted[i]) + scores[i] + alpha2 * (r[i / cols] + c[i % cols]);
}

// dScores = g w, dAdapted = g mask + dScores sign(w); dw += dAdapted when there is one.
__global__ void pstGradKernel(const float *g, const float *w, const uint8_t *mask, int64_t n, float *dScores,
                              float *dAdapted, float *dw) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float gi = g[i], wi = w[i], ds = gi * wi;
    const float da = (mask[i] ? gi : 0.0f) + (wi > 0.0f ? ds : wi < 0.0f ? -ds : 0.0f);
    dScores[i] = ds;
    dAdapted[i] = da;
    if (dw)
        dw[i] += da;
}

struct ScaledValue { // s x[r, c]: the column sums of alpha2 dScores
    const float *x;
    float s;
    __device__ float operator()(int64_t r, int64_t c, int64_t cols) const { return s * x[r * cols + c]; }
};

// ---- selection of the k smallest (train::pruneSmallest) ----

// The radix select's state: the key digits found so far (prefix, under prefixMask) and the rank sought among the
// keys that share them; after the last digit, prefix is the threshold's key and rank + 1 the ties to prune.
struct SelectState {
    uint32_t prefix, prefixMask;
    long long rank;
};
constexpr int kDigitBins = 256;
constexpr int64_t kTieChunk = 16 * kThreads; // scores per block when the ties are counted and resolved

// A float's key in the order of its value (train's orderKey): -0 as +0, negatives flipped.
__device__ uint32_t scoreKey(float v) {
    uint32_t bits = __float_as_uint(v);
    if (bits == 0x80000000u)
        bits = 0;
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__global__ void selectInitKernel(SelectState *s, long long rank, unsigned long long *hist) {
    if (threadIdx.x == 0)
        *s = {0u, 0u, rank};
    hist[threadIdx.x] = 0;
}

// Histogram of the digit at `shift` over the keys that share the digits found so far.
__global__ void selectHistogramKernel(const float *x, int64_t n, const SelectState *s, int shift,
                                      unsigned long long *hist) {
    __shared__ unsigned local[kDigitBins];
    local[threadIdx.x] = 0;
    __syncthreads();
    const uint32_t prefix = s->prefix, prefixMask = s->prefixMask;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const uint32_t key = scoreKey(x[i]);
        if ((key & prefixMask) == prefix)
            atomicAdd(&local[(key >> shift) & 0xFFu], 1u);
    }
    __syncthreads();
    if (local[threadIdx.x])
        atomicAdd(&hist[threadIdx.x], static_cast<unsigned long long>(local[threadIdx.x]));
}

// The bin that holds the sought rank: its digit joins the prefix, the rank becomes the rank within it; the
// histogram is cleared for the next digit. One thread.
__global__ void selectPickKernel(SelectState *s, int shift, unsigned long long *hist) {
    long long rank = s->rank;
    int bin = 0;
    for (; bin < kDigitBins - 1 && rank >= static_cast<long long>(hist[bin]); ++bin)
        rank -= static_cast<long long>(hist[bin]);
    s->rank = rank;
    s->prefix |= uint32_t(bin) << shift;
    s->prefixMask |= 0xFFu << shift;
    for (int b = 0; b < kDigitBins; ++b)
        hist[b] = 0;
}

// The keys equal to the threshold in each chunk of kTieChunk scores.
__global__ void tieCountKernel(const float *x, int64_t n, const SelectState *s, unsigned long long *counts) {
    __shared__ unsigned part[kThreads];
    const uint32_t threshold = s->prefix;
    const int64_t begin = int64_t(blockIdx.x) * kTieChunk, end = min(n, begin + kTieChunk);
    unsigned same = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
        same += scoreKey(x[i]) == threshold;
    const unsigned total = blockSum(same, part);
    if (threadIdx.x == 0)
        counts[blockIdx.x] = total;
}

// counts become the ties before each chunk (an exclusive scan; one thread: a few thousand chunks).
__global__ void tieScanKernel(unsigned long long *counts, int64_t chunks) {
    unsigned long long before = 0;
    for (int64_t c = 0; c < chunks; ++c) {
        const unsigned long long here = counts[c];
        counts[c] = before;
        before += here;
    }
}

// mask = 0 below the threshold and for the first (rank + 1) ties by position, 1 otherwise. Each chunk walks its
// scores a block-width tile at a time, numbering its ties by warp ballots.
__global__ void selectMaskKernel(const float *x, int64_t n, const SelectState *s, const unsigned long long *tiesBefore,
                                 uint8_t *mask) {
    __shared__ unsigned warpTies[kThreads / 32];
    const uint32_t threshold = s->prefix;
    const unsigned long long toPrune = static_cast<unsigned long long>(s->rank) + 1;
    const int64_t begin = int64_t(blockIdx.x) * kTieChunk, end = min(n, begin + kTieChunk);
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned long long base = tiesBefore[blockIdx.x];
    for (int64_t tile = begin; tile < end; tile += blockDim.x) {
        const int64_t i = tile + threadIdx.x;
        const uint32_t key = i < end ? scoreKey(x[i]) : 0u;
        const bool same = i < end && key == threshold;
        const unsigned ballot = __ballot_sync(0xFFFFFFFFu, same);
        if (lane == 0)
            warpTies[warp] = __popc(ballot);
        __syncthreads();
        unsigned before = __popc(ballot & ((1u << lane) - 1u)), total = 0;
        for (unsigned w = 0; w < blockDim.x / 32; ++w) {
            before += w < warp ? warpTies[w] : 0u;
            total += warpTies[w];
        }
        if (i < end)
            mask[i] = uint8_t(!(key < threshold || (same && base + before < toPrune)));
        base += total;
        __syncthreads(); // warpTies is rewritten by the next tile
    }
}

unsigned blocksFor(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

} // namespace

// ---- profiling ----

// Events around the outermost op in progress. Never throws: an event that cannot be had drops the span.
class TrainOps::Timed {
public:
    Timed(TrainOps &ops, const char *op) : m_profile(ops.m_profile.on ? &ops.m_profile : nullptr), m_op(op) {
        if (m_profile && m_profile->depth++ == 0)
            m_start = m_profile->event();
    }
    ~Timed() {
        if (!m_profile || --m_profile->depth > 0 || !m_start)
            return;
        if (cudaEvent_t stop = m_profile->event())
            m_profile->pending.push_back({m_op, m_start, stop});
        else
            m_profile->spare.push_back(m_start);
    }
    Timed(const Timed &) = delete;
    Timed &operator=(const Timed &) = delete;

private:
    Profile *m_profile;
    const char *m_op;
    cudaEvent_t m_start = nullptr;
};

TrainOps::Profile::~Profile() {
    for (const Span &s : pending) {
        cudaEventDestroy(s.start);
        cudaEventDestroy(s.stop);
    }
    for (cudaEvent_t e : spare)
        cudaEventDestroy(e);
}

// A spare event or a new one, recorded on the stream now; null when CUDA gives none.
cudaEvent_t TrainOps::Profile::event() noexcept {
    cudaEvent_t e = nullptr;
    if (!spare.empty()) {
        e = spare.back();
        spare.pop_back();
    } else if (cudaEventCreate(&e) != cudaSuccess) {
        return nullptr;
    }
    if (cudaEventRecord(e) != cudaSuccess) {
        spare.push_back(e);
        return nullptr;
    }
    return e;
}

std::vector<train::OpTime> TrainOps::opTimes() {
    LATHE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<train::OpTime> out;
    for (const Profile::Span &s : m_profile.pending) {
        float ms = 0;
        LATHE_CUDA_CHECK(cudaEventElapsedTime(&ms, s.start, s.stop));
        auto it = std::find_if(out.begin(), out.end(), [&](const train::OpTime &t) { return t.op == s.op; });
        if (it == out.end())
            it = out.insert(out.end(), train::OpTime{s.op, 0.0, 0});
        it->seconds += 1e-3 * ms;
        ++it->calls;
        m_profile.spare.push_back(s.start);
        m_profile.spare.push_back(s.stop);
    }
    m_profile.pending.clear();
    std::sort(out.begin(), out.end(), [](const train::OpTime &a, const train::OpTime &b) { return a.seconds > b.seconds; });
    return out;
}

// ---- helpers ----

TrainOps::TrainOps(cublasHandle_t blas, ComputePrecision precision) : m_blas(blas), m_precision(precision) {
    require(precision != ComputePrecision::Fp16, "GPU training", "fp16 products are not supported for training",
            "use bf16 (the default) or fp32");
}

const int32_t *TrainOps::uploadIds(const std::vector<int32_t> &ids, DeviceMemory &to) {
    to.ensure(std::max<size_t>(1, ids.size()) * sizeof(int32_t));
    if (!ids.empty())
        LATHE_CUDA_CHECK(cudaMemcpy(to.as(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return to.as<int32_t>();
}

template <class F> void TrainOps::columnSums(int64_t rows, int64_t cols, F f, float *out) {
    if (rows == 0 || cols == 0)
        return;
    const int64_t chunks = (rows + kRowsPerPartial - 1) / kRowsPerPartial;
    m_partials.ensure(size_t(chunks * cols) * sizeof(float));
    const dim3 grid(blocksFor(cols), unsigned(chunks));
    columnPartialsKernel<<<grid, kThreads>>>(WithCols<F>{f, cols}, rows, cols, m_partials.as<float>());
    checkLaunch();
    columnTotalsKernel<<<blocksFor(cols), kThreads>>>(m_partials.as<float>(), chunks, cols, out);
    checkLaunch();
}

// ---- embedding ----

void TrainOps::embeddingForward(const float *table, int64_t vocab, int64_t width, const std::vector<int32_t> &ids,
                                float *y) {
    const Timed timed(*this, __func__);
    for (const int32_t id : ids)
        require(id >= 0 && id < vocab, "embedding", "token id " + std::to_string(id) + " is outside the vocabulary");
    if (ids.empty())
        return;
    embeddingForwardKernel<<<unsigned(ids.size()), kThreads>>>(table, uploadIds(ids, m_ids), width, y);
    checkLaunch();
}

void TrainOps::embeddingBackward(const float *dy, const std::vector<int32_t> &ids, int64_t width, float *dtable) {
    const Timed timed(*this, __func__);
    if (ids.empty())
        return;
    // [order (rows)] [segment starts (segments + 1)] [segment ids (segments)]
    std::vector<int32_t> order(ids.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ids[size_t(a)] < ids[size_t(b)]; });
    std::vector<int32_t> starts, segmentIds;
    for (size_t i = 0; i < order.size(); ++i)
        if (i == 0 || ids[size_t(order[i])] != ids[size_t(order[i - 1])]) {
            starts.push_back(int32_t(i));
            segmentIds.push_back(ids[size_t(order[i])]);
        }
    const size_t segments = starts.size();
    starts.push_back(int32_t(order.size()));
    std::vector<int32_t> packed = order;
    packed.insert(packed.end(), starts.begin(), starts.end());
    packed.insert(packed.end(), segmentIds.begin(), segmentIds.end());
    const int32_t *d = uploadIds(packed, m_ids2);
    embeddingBackwardKernel<<<unsigned(segments), kThreads>>>(dy, d, d + order.size(), d + order.size() + segments + 1,
                                                             width, dtable);
    checkLaunch();
}

// ---- norms ----

void TrainOps::rmsNormForward(const float *x, const float *w, int64_t rows, int64_t width, float eps, float *y,
                              float *rstd) {
    const Timed timed(*this, __func__);
    if (!rows)
        return;
    normKernel<float>
        <<<unsigned(rows), kRowThreads>>>(x, width, false, float(width), eps, w, nullptr, y, nullptr, rstd);
    checkLaunch();
}

void TrainOps::rmsNormBackward(const float *dy, const float *x, const float *w, const float *rstd, int64_t rows,
                               int64_t width, float *dx, float *dw) {
    const Timed timed(*this, __func__);
    if (!rows)
        return;
    normBackwardKernel<<<unsigned(rows), kRowThreads>>>(dy, x, w, nullptr, rstd, width, dx);
    checkLaunch();
    if (dw)
        columnSums(rows, width, NormWeightGrad{dy, x, nullptr, rstd}, dw);
}

void TrainOps::layerNormForward(const float *x, const float *w, const float *b, int64_t rows, int64_t width, float eps,
                                float *y, float *mean, float *rstd) {
    const Timed timed(*this, __func__);
    if (!rows)
        return;
    normKernel<float><<<unsigned(rows), kRowThreads>>>(x, width, true, float(width), eps, w, b, y, mean, rstd);
    checkLaunch();
}

void TrainOps::layerNormBackward(const float *dy, const float *x, const float *w, const float *mean,
                                 const float *rstd, int64_t rows, int64_t width, float *dx, float *dw, float *db) {
    const Timed timed(*this, __func__);
    if (!rows)
        return;
    normBackwardKernel<<<unsigned(rows), kRowThreads>>>(dy, x, w, mean, rstd, width, dx);
    checkLaunch();
    if (dw)
        columnSums(rows, width, NormWeightGrad{dy, x, mean, rstd}, dw);
    if (db)
        columnSums(rows, width, PlainValue{dy}, db);
}

// ---- products ----

// An operand of a product: fp32 as given, or in Bf16 mode a bf16 copy of its first n values in `scratch`; `at(i)`
// is the address of element i in whichever it is.
struct TrainOps::Operand {
    const void *base;
    size_t elementBytes;
    const void *at(int64_t i) const { return static_cast<const char *>(base) + size_t(i) * elementBytes; }
};

TrainOps::Operand TrainOps::operand(const float *x, int64_t n, DeviceMemory &scratch) {
    if (m_precision == ComputePrecision::Fp32)
        return {x, sizeof(float)};
    scratch.ensure(size_t(n) * sizeof(__nv_bfloat16));
    toBf16Kernel<<<blocksFor(n), kThreads>>>(x, n, scratch.as<__nv_bfloat16>());
    checkLaunch();
    return {scratch.as(), sizeof(__nv_bfloat16)};
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix with leading dimension
// ld is the column-major transpose with the same ld: so cuBLAS gets (B, A) swapped, n and m swapped. In bf16 the
// spans the product reads (rows x ld, the last row only up to its width) are rounded into scratch.
void TrainOps::gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const Timed timed(*this, __func__);
    if (m == 0 || n == 0)
        return;
    const int64_t aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
    const Operand A = operand(a, (aRows - 1) * lda + aCols, m_bf16a);
    const Operand B = operand(b, (bRows - 1) * ldb + bCols, m_bf16b);
    gemmOperands(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, c, ldc);
}

// gemm on operands already in the object's precision (fp32 C). The strided-batched call with a count of one is the
// call the GPU checks were measured with.
void TrainOps::gemmOperands(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const Operand &a,
                            int64_t lda, const Operand &b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (!m || !n)
        return;
    const cudaDataType_t type = m_precision == ComputePrecision::Fp32 ? CUDA_R_32F : CUDA_R_16BF;
    LATHE_CUDA_CHECK(cublasGemmStridedBatchedEx(
        m_blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
        b.base, type, int(ldb), 0, a.base, type, int(lda), 0, &beta, c, CUDA_R_32F, int(ldc), 0, 1, CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
}

void TrainOps::linearForward(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out,
                             float *y) {
    const Timed timed(*this, __func__);
    gemm(false, true, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (b && rows) {
        addRowVectorKernel<<<blocksFor(rows * out), kThreads>>>(y, b, rows, out);
        checkLaunch();
    }
}

void TrainOps::linearBackward(const float *dy, const float *x, const float *w, int64_t rows, int64_t in, int64_t out,
                              float *dx, float *dw, float *db) {
    const Timed timed(*this, __func__);
    // dy is rounded once for both products (34 ms instead of 41 for SmolLM2's linears at 16 x 1024 on an H200).
    if ((dx || dw) && rows && in && out) {
        const Operand Dy = operand(dy, rows * out, m_bf16a);
        if (dx)
            gemmOperands(false, false, rows, in, out, 1.0f, Dy, out, operand(w, out * in, m_bf16b), in, 1.0f, dx, in);
        if (dw)
            gemmOperands(true, false, out, in, rows, 1.0f, Dy, out, operand(x, rows * in, m_bf16b), in, 1.0f, dw, in);
    }
    if (db)
        columnSums(rows, out, PlainValue{dy}, db);
}

// ---- RoPE ----

void TrainOps::ropeForward(float *x, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim,
                           const float *cos, const float *sin) {
    const Timed timed(*this, __func__);
    const int half = rotaryDim / 2;
    if (rows == 0 || half == 0)
        return;
    ropeKernel<<<blocksFor(rows * heads * half), kThreads>>>(x, rows, seq, heads, headDim, half, cos, sin, 1.0f);
    checkLaunch();
}

// The rotation is orthogonal: its gradient is the rotation by the opposite angle.
void TrainOps::ropeBackward(float *dx, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim,
                            const float *cos, const float *sin) {
    const Timed timed(*this, __func__);
    const int half = rotaryDim / 2;
    if (rows == 0 || half == 0)
        return;
    ropeKernel<<<blocksFor(rows * heads * half), kThreads>>>(dx, rows, seq, heads, headDim, half, cos, sin, -1.0f);
    checkLaunch();
}

// ---- attention ----
//
// Whole (seq x seq) score matrices per head (the causal half above the diagonal is computed and zeroed: products
// per query tile that skip it, measured on an H200, did not change the step time, which the softmax's passes over
// the squares and the launches set), for as many sequences at a time as train::attentionSequencesPerCall allows.
// The products run in the object's precision: pedantic fp32, or bf16 copies of q, k, v and the output gradient with
// fp32 accumulation. Scores and the softmax (and its backward) are fp32; with bf16 products the softmax rounds the
// probabilities once into the saved buffer, which holds them in bf16 (half its floats), and the backward writes
// the score gradient straight into its bf16 operand.
// Each product is one batched cuBLAS call over every (sequence, head) pair of the chunk, through device arrays of
// pointers (headGemm): one launch where a loop over sequences and group positions took 3 B. cuBLAS sees row-major
// (seq x width) activations as column-major (width x seq): a head's slice is a (d x seq) matrix with leading
// dimension width, and a row-major (queries x keys) score block is a column-major (keys x queries) one. Head h
// reads key/value group h / (heads / kvHeads).

namespace {

// Where entry i = s * perSeq + j of a batched product finds an operand: base + s * seqStride + (j / div) *
// headStride elements of `elementBytes` each.
struct HeadSpan {
    const char *base;
    int64_t seqStride, headStride, div, elementBytes;
};

__global__ void headPointersKernel(HeadSpan a, HeadSpan b, HeadSpan c, int64_t perSeq, int64_t count, void **out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    const int64_t s = i / perSeq, j = i % perSeq;
    const HeadSpan spans[3] = {a, b, c};
    for (int x = 0; x < 3; ++x)
        out[x * count + i] = const_cast<char *>(spans[x].base) +
                             (s * spans[x].seqStride + (j / spans[x].div) * spans[x].headStride) * spans[x].elementBytes;
}

} // namespace

// Column-major C = alpha op(A) op(B) + beta C for every (sequence, head) entry of seqs x perSeq, the operands'
// addresses from their HeadSpans (A and B of the object's precision, C fp32).
void TrainOps::headGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const Operand &a,
                        int64_t aOffset, int64_t aSeq, int64_t aHead, int64_t aDiv, int64_t lda, const Operand &b,
                        int64_t bOffset, int64_t bSeq, int64_t bHead, int64_t bDiv, int64_t ldb, float beta, float *c,
                        int64_t cSeq, int64_t cHead, int64_t ldc, int64_t seqs, int64_t perSeq) {
    const int64_t count = seqs * perSeq;
    m_pointers.ensure(size_t(3 * count) * sizeof(void *));
    void **ptrs = m_pointers.as<void *>();
    const HeadSpan A{static_cast<const char *>(a.at(aOffset)), aSeq, aHead, aDiv, int64_t(a.elementBytes)},
        B{static_cast<const char *>(b.at(bOffset)), bSeq, bHead, bDiv, int64_t(b.elementBytes)},
        C{reinterpret_cast<const char *>(c), cSeq, cHead, 1, int64_t(sizeof(float))};
    headPointersKernel<<<blocksFor(count), kThreads>>>(A, B, C, perSeq, count, ptrs);
    checkLaunch();
    const cudaDataType_t type = m_precision == ComputePrecision::Fp32 ? CUDA_R_32F : CUDA_R_16BF;
    LATHE_CUDA_CHECK(cublasGemmBatchedEx(m_blas, transA ? CUBLAS_OP_T : CUBLAS_OP_N, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         int(m), int(n), int(k), &alpha, ptrs, type, int(lda), ptrs + count, type,
                                         int(ldb), &beta, ptrs + 2 * count,
                                         CUDA_R_32F, int(ldc), int(count), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void TrainOps::attentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d,
                                float *ctx, float *probs) {
    const Timed timed(*this, __func__);
    const int64_t S = d.seq, D = d.headDim, H = d.heads, KVH = d.kvHeads, group = H / KVH;
    const int64_t qw = H * D, kw = KVH * D, rows = d.batch * S, SS = S * S;
    assert(H % KVH == 0);
    if (!rows)
        return;
    const Operand Q = operand(q, rows * qw, m_attnA), K = operand(k, rows * kw, m_attnB),
                  V = operand(v, rows * kw, m_attnC);
    const int64_t chunk = train::attentionSequencesPerCall(d.batch, d.heads, d.seq);
    const bool bf16 = m_precision != ComputePrecision::Fp32;
    if (bf16)
        m_dP.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(float));
    for (int64_t b0 = 0; b0 < d.batch; b0 += chunk) {
        const int64_t n = std::min(chunk, d.batch - b0);
        // fp32: the scores and then the probabilities in place in `probs`; bf16: the scores in scratch, the
        // probabilities rounded once into `probs` (bf16), which the products and the backward read.
        float *scores = bf16 ? m_dP.as<float>() : probs + b0 * H * SS;
        // P[h][i][j] = scale q_i . k_j: column-major (keys x queries) = K^T Q.
        headGemm(true, false, S, S, D, float(d.scale), K, b0 * S * kw, S * kw, D, group, kw, Q, b0 * S * qw, S * qw,
                 D, 1, qw, 0.0f, scores, H * SS, SS, S, n, H);
        Operand P{scores, sizeof(float)};
        if (bf16) {
            __nv_bfloat16 *pb = reinterpret_cast<__nv_bfloat16 *>(probs) + b0 * H * SS;
            softmaxKernel<__nv_bfloat16><<<unsigned(n * H * S), kRowThreads>>>(scores, S, S, 0, d.causal, pb);
            P = {pb, sizeof(__nv_bfloat16)};
        } else {
            softmaxKernel<float><<<unsigned(n * H * S), kRowThreads>>>(scores, S, S, 0, d.causal, scores);
        }
        checkLaunch();
        // ctx_i = sum_j P[i][j] v_j: column-major (d x queries) = V (d x keys) P (keys x queries).
        headGemm(false, false, D, S, S, 1.0f, V, b0 * S * kw, S * kw, D, group, kw, P, 0, H * SS, SS, 1, S, 0.0f,
                 ctx + b0 * S * qw, S * qw, D, qw, n, H);
    }
}

// dP = dO V^T; dS = P (dP - rowsum(dP P)) scale; dQ += dS K; dK += dS^T Q; dV += P^T dO. The group's heads add into
// their shared dK and dV one position g after another (one batched call each), so the sum's order is fixed.
void TrainOps::attentionBackward(const float *dctx, const float *q, const float *k, const float *v,
                                 const train::AttentionDims &d, const float *probs, float *dq, float *dk, float *dv) {
    const Timed timed(*this, __func__);
    const int64_t S = d.seq, D = d.headDim, H = d.heads, KVH = d.kvHeads, group = H / KVH;
    const int64_t qw = H * D, kw = KVH * D, rows = d.batch * S, SS = S * S;
    if (!rows)
        return;
    const int64_t chunk = train::attentionSequencesPerCall(d.batch, d.heads, d.seq);
    m_dP.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(float));
    float *dS = m_dP.as<float>();
    const Operand Q = operand(q, rows * qw, m_attnA), K = operand(k, rows * kw, m_attnB),
                  V = operand(v, rows * kw, m_attnC), O = operand(dctx, rows * qw, m_attnE);
    const bool bf16 = m_precision != ComputePrecision::Fp32;
    if (bf16)
        m_attnD.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(__nv_bfloat16));
    for (int64_t b0 = 0; b0 < d.batch; b0 += chunk) {
        const int64_t n = std::min(chunk, d.batch - b0);
        // dP[i][j] = dO_i . v_j: column-major (keys x queries) = V^T dO.
        headGemm(true, false, S, S, D, 1.0f, V, b0 * S * kw, S * kw, D, group, kw, O, b0 * S * qw, S * qw, D, 1, qw,
                 0.0f, dS, H * SS, SS, S, n, H);
        // dS from the saved probabilities: in place in fp32; with bf16 products straight into the bf16 operand.
        Operand dSo{dS, sizeof(float)}, P{probs + b0 * H * SS, sizeof(float)};
        if (bf16) {
            const __nv_bfloat16 *pb = reinterpret_cast<const __nv_bfloat16 *>(probs) + b0 * H * SS;
            softmaxBackwardKernel<<<unsigned(n * H * S), kRowThreads>>>(pb, dS, m_attnD.as<__nv_bfloat16>(), S,
                                                                        d.causal, float(d.scale));
            dSo = {m_attnD.as(), sizeof(__nv_bfloat16)};
            P = {pb, sizeof(__nv_bfloat16)};
        } else {
            softmaxBackwardKernel<<<unsigned(n * H * S), kRowThreads>>>(probs + b0 * H * SS, dS, dS, S, d.causal,
                                                                        float(d.scale));
        }
        checkLaunch();
        // dq_i += sum_j dS[i][j] k_j: column-major (d x queries) += K (d x keys) dS (keys x queries).
        headGemm(false, false, D, S, S, 1.0f, K, b0 * S * kw, S * kw, D, group, kw, dSo, 0, H * SS, SS, 1, S, 1.0f,
                 dq + b0 * S * qw, S * qw, D, qw, n, H);
        for (int64_t g = 0; g < group; ++g) {
            // dk_j += sum_i dS[i][j] q_i: column-major (d x keys) += Q (d x queries) dS^T (queries x keys), for the
            // heads kvh * group + g.
            headGemm(false, true, D, S, S, 1.0f, Q, b0 * S * qw + g * D, S * qw, group * D, 1, qw, dSo, g * SS,
                     H * SS, group * SS, 1, S, 1.0f, dk + b0 * S * kw, S * kw, D, kw, n, KVH);
            // dv_j += sum_i P[i][j] dO_i.
            headGemm(false, true, D, S, S, 1.0f, O, b0 * S * qw + g * D, S * qw, group * D, 1, qw, P, g * SS, H * SS,
                     group * SS, 1, S, 1.0f, dv + b0 * S * kw, S * kw, D, kw, n, KVH);
        }
    }
}

// ---- element-wise ----

void TrainOps::add(const float *a, const float *b, int64_t n, float *out) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    addKernel<<<blocksFor(n), kThreads>>>(a, b, n, out);
    checkLaunch();
}

void TrainOps::swigluForward(const float *gate, const float *up, int64_t n, float *mid) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    swigluForwardKernel<<<blocksFor(n), kThreads>>>(gate, up, n, mid);
    checkLaunch();
}

void TrainOps::swigluBackward(const float *dmid, const float *gate, const float *up, int64_t n, float *dgate,
                              float *dup) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    swigluBackwardKernel<<<blocksFor(n), kThreads>>>(dmid, gate, up, n, dgate, dup);
    checkLaunch();
}

void TrainOps::geluForward(train::Gelu kind, const float *x, int64_t n, float *y) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    geluForwardKernel<<<blocksFor(n), kThreads>>>(kind == train::Gelu::Tanh, x, n, y);
    checkLaunch();
}

void TrainOps::geluBackward(train::Gelu kind, const float *dy, const float *x, int64_t n, float *dx) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    geluBackwardKernel<<<blocksFor(n), kThreads>>>(kind == train::Gelu::Tanh, dy, x, n, dx);
    checkLaunch();
}

void TrainOps::maskedAdd(float *dw, const float *g, const uint8_t *mask, int64_t n) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    maskedAddKernel<<<blocksFor(n), kThreads>>>(dw, g, mask, n);
    checkLaunch();
}

void TrainOps::rowMaskedAdd(float *dst, const float *src, const uint8_t *rowMask, int64_t rows, int64_t cols) {
    const Timed timed(*this, __func__);
    if (!rows || !cols)
        return;
    rowMaskedAddKernel<<<blocksFor(rows * cols), kThreads>>>(dst, src, rowMask, rows, cols);
    checkLaunch();
}

// ---- LoSparse ----

void TrainOps::rowAbsProductSums(const float *v, const float *g, int64_t rows, int64_t cols, float *out) {
    const Timed timed(*this, __func__);
    if (!rows)
        return;
    rowTotalsKernel<<<unsigned(rows), kThreads>>>(AbsProduct{v, g}, cols, 1.0f, false, out);
    checkLaunch();
}

void TrainOps::zeroRows(float *x, const uint8_t *keep, int64_t rows, int64_t cols) {
    const Timed timed(*this, __func__);
    if (!rows || !cols)
        return;
    zeroRowsKernel<<<blocksFor(rows * cols), kThreads>>>(x, keep, rows, cols);
    checkLaunch();
}

// ---- gathered linears (SAT) ----

void TrainOps::gather(float *to, const float *from, int64_t fromCols, const int32_t *rows, int64_t nRows,
                      const int32_t *cols, int64_t nCols) {
    const Timed timed(*this, __func__);
    if (nRows * nCols == 0)
        return;
    gatherKernel<<<blocksFor(nRows * nCols), kThreads>>>(to, from, fromCols, rows, nRows, cols, nCols);
    checkLaunch();
}

void TrainOps::scatterAdd(float *to, int64_t toCols, const float *from, const int32_t *rows, int64_t nRows,
                          const int32_t *cols, int64_t nCols) {
    const Timed timed(*this, __func__);
    if (nRows * nCols == 0)
        return;
    scatterAddKernel<<<blocksFor(nRows * nCols), kThreads>>>(to, toCols, from, rows, nRows, cols, nCols);
    checkLaunch();
}

void TrainOps::adamwSome(float *w, float *m, float *v, const float *g, int64_t cols, const int32_t *rows,
                         int64_t nRows, const int32_t *activeCols, int64_t nCols, const cpu::AdamWConstants &k) {
    const Timed timed(*this, __func__);
    if (nRows * nCols == 0)
        return;
    adamwSomeKernel<<<blocksFor(nRows * nCols), kThreads>>>(w, m, v, g, cols, rows, nRows, activeCols, nCols, k);
    checkLaunch();
}

void TrainOps::activationNorms(const float *act, int64_t rows, int64_t channels, const float *ctx, int groups,
                               int64_t groupWidth, float *out) {
    const Timed timed(*this, __func__);
    LATHE_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(channels) * sizeof(float)));
    columnSums(rows, channels, SquaredValue{act}, out);
    if (channels) {
        sqrtKernel<<<blocksFor(channels), kThreads>>>(out, channels);
        checkLaunch();
    }
    if (groups > 0) {
        groupNormsKernel<<<unsigned(groups), kThreads>>>(ctx, rows, groupWidth, int64_t(groups) * groupWidth,
                                                         out + channels);
        checkLaunch();
    }
}

// ---- PST ----

void TrainOps::pstAdapted(const float *w, const train::PstFactors<float> &f, const train::PstDims &d, float *adapted) {
    const Timed timed(*this, __func__);
    const int64_t n = d.out * d.in, rank = d.options.rank;
    if (!n)
        return;
    LATHE_CUDA_CHECK(cudaMemcpyAsync(adapted, w, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice));
    gemm(false, false, d.out, d.in, rank, float(d.options.beta), f.u, rank, f.v, d.in, 1.0f, adapted, d.in);
}

void TrainOps::pstScores(const float *adapted, const train::PstFactors<float> &f, const train::PstDims &d,
                         float *scores) {
    const Timed timed(*this, __func__);
    const int64_t n = d.out * d.in, rank = d.options.maskRank;
    if (!n)
        return;
    gemm(false, false, d.out, d.in, rank, float(d.options.alpha1), f.a, rank, f.b, d.in, 0.0f, scores, d.in);
    pstScoresKernel<<<blocksFor(n), kThreads>>>(adapted, f.r, f.c, d.out, d.in, float(d.options.alpha2), scores);
    checkLaunch();
}

void TrainOps::pruneSmallest(const float *scores, int64_t n, int64_t prune, uint8_t *mask) {
    const Timed timed(*this, __func__);
    if (n <= 0)
        return;
    if (prune <= 0 || prune >= n) { // nothing, or everything
        LATHE_CUDA_CHECK(cudaMemsetAsync(mask, prune <= 0 ? 1 : 0, size_t(n)));
        return;
    }
    const int64_t chunks = (n + kTieChunk - 1) / kTieChunk;
    const size_t stateBytes = 64, histBytes = kDigitBins * sizeof(unsigned long long);
    m_select.ensure(stateBytes + histBytes + size_t(chunks) * sizeof(unsigned long long));
    auto *base = static_cast<char *>(m_select.as());
    auto *state = reinterpret_cast<SelectState *>(base);
    auto *hist = reinterpret_cast<unsigned long long *>(base + stateBytes);
    auto *counts = reinterpret_cast<unsigned long long *>(base + stateBytes + histBytes);
    selectInitKernel<<<1, kDigitBins>>>(state, static_cast<long long>(prune - 1), hist);
    checkLaunch();
    const unsigned grid = std::min<unsigned>(blocksFor(n), 1024);
    for (int shift = 24; shift >= 0; shift -= 8) {
        selectHistogramKernel<<<grid, kDigitBins>>>(scores, n, state, shift, hist);
        checkLaunch();
        selectPickKernel<<<1, 1>>>(state, shift, hist);
        checkLaunch();
    }
    tieCountKernel<<<unsigned(chunks), kThreads>>>(scores, n, state, counts);
    checkLaunch();
    tieScanKernel<<<1, 1>>>(counts, chunks);
    checkLaunch();
    selectMaskKernel<<<unsigned(chunks), kThreads>>>(scores, n, state, counts, mask);
    checkLaunch();
}

void TrainOps::pstBackward(const float *g, const float *adapted, const uint8_t *mask, const train::PstFactors<float> &f,
                           const train::PstDims &d, const train::PstGradients<float> &grads, float *dScores,
                           float *dAdapted) {
    const Timed timed(*this, __func__);
    const int64_t out = d.out, in = d.in, n = out * in, rank = d.options.rank, maskRank = d.options.maskRank;
    if (!n)
        return;
    const float beta = float(d.options.beta), a1 = float(d.options.alpha1), a2 = float(d.options.alpha2);
    pstGradKernel<<<blocksFor(n), kThreads>>>(g, adapted, mask, n, dScores, dAdapted, grads.w);
    checkLaunch();
    if (grads.u)
        gemm(false, true, out, rank, in, beta, dAdapted, in, f.v, in, 1.0f, grads.u, rank);
    if (grads.v)
        gemm(true, false, rank, in, out, beta, f.u, rank, dAdapted, in, 1.0f, grads.v, in);
    if (grads.a)
        gemm(false, true, out, maskRank, in, a1, dScores, in, f.b, in, 1.0f, grads.a, maskRank);
    if (grads.b)
        gemm(true, false, maskRank, in, out, a1, f.a, maskRank, dScores, in, 1.0f, grads.b, in);
    if (grads.r) {
        rowTotalsKernel<<<unsigned(out), kThreads>>>(PlainValue{dScores}, in, a2, true, grads.r);
        checkLaunch();
    }
    if (grads.c)
        columnSums(out, in, ScaledValue{dScores, a2}, grads.c);
}

void TrainOps::reluForward(const float *x, int64_t n, float *y) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    reluForwardKernel<<<blocksFor(n), kThreads>>>(x, n, y);
    checkLaunch();
}

void TrainOps::reluBackward(const float *dy, const float *x, int64_t n, float *dx) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    reluBackwardKernel<<<blocksFor(n), kThreads>>>(dy, x, n, dx);
    checkLaunch();
}

// ---- cross-entropy ----

// logits (rows x n) = H W_c^T (+ b_c) for the vocabulary rows [c0, c0 + n); returns W_c as the product read it.
TrainOps::Operand TrainOps::chunkLogits(const Operand &h, const float *w, const float *b, int64_t rows, int64_t width,
                                        int64_t c0, int64_t n, float *logits) {
    const Operand W = operand(w + c0 * width, n * width, m_bf16b);
    gemmOperands(false, true, rows, n, width, 1.0f, h, width, W, width, 0.0f, logits, n);
    if (b && rows) {
        addRowVectorKernel<<<blocksFor(rows * n), kThreads>>>(logits, b + c0, rows, n);
        checkLaunch();
    }
    return W;
}

float TrainOps::crossEntropyForward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                                    int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk, float *lse,
                                    int64_t *count) {
    const Timed timed(*this, __func__);
    require(int64_t(targets.size()) == rows && chunk > 0, "cross-entropy", "one target per row and a chunk size");
    for (const int32_t t : targets)
        require(t < vocab, "cross-entropy", "target id " + std::to_string(t) + " is outside the vocabulary");
    *count = 0;
    if (!rows)
        return 0.0f;
    const int32_t *dTargets = uploadIds(targets, m_ids);
    // [lse accumulators (rows doubles)] [target logits (rows floats)]
    m_reduce.ensure(size_t(rows) * (sizeof(double) + sizeof(float)));
    double *acc = m_reduce.as<double>();
    float *target = reinterpret_cast<float *>(acc + rows);
    fillKernel<<<blocksFor(rows), kThreads>>>(acc, rows, -INFINITY);
    checkLaunch();
    LATHE_CUDA_CHECK(cudaMemset(target, 0, size_t(rows) * sizeof(float)));
    m_logits.ensure(size_t(rows * std::min(chunk, vocab)) * sizeof(float));
    float *logits = m_logits.as<float>();
    const Operand H = operand(h, rows * width, m_headH); // rounded once for every chunk
    for (int64_t c0 = 0; c0 < vocab; c0 += chunk) {
        const int64_t n = std::min(chunk, vocab - c0);
        chunkLogits(H, w, b, rows, width, c0, n, logits);
        crossEntropyChunkKernel<<<unsigned(rows), kRowThreads>>>(logits, n, c0, dTargets, acc, target);
        checkLaunch();
    }
    // The loss on the host in the CPU's order: the fp64 log-normalizers rounded to fp32, summed in fp32.
    std::vector<double> hostLse(static_cast<size_t>(rows));
    std::vector<float> hostTarget(static_cast<size_t>(rows)), lseF(static_cast<size_t>(rows));
    LATHE_CUDA_CHECK(cudaMemcpy(hostLse.data(), acc, size_t(rows) * sizeof(double), cudaMemcpyDeviceToHost));
    LATHE_CUDA_CHECK(cudaMemcpy(hostTarget.data(), target, size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost));
    float loss = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
        lseF[size_t(r)] = float(hostLse[size_t(r)]);
        if (targets[size_t(r)] < 0)
            continue;
        loss += lseF[size_t(r)] - hostTarget[size_t(r)];
        ++*count;
    }
    LATHE_CUDA_CHECK(cudaMemcpy(lse, lseF.data(), size_t(rows) * sizeof(float), cudaMemcpyHostToDevice));
    return *count ? loss / float(*count) : 0.0f;
}

// Each chunk's logits are recomputed and turned into (softmax - onehot) scale / count in place, then
// dh += G W_c, dW_c += G^T h, db_c += column sums of G.
void TrainOps::crossEntropyBackward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                                    int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk,
                                    const float *lse, int64_t count, float scale, float *dh, float *dw, float *db) {
    const Timed timed(*this, __func__);
    if (!count || !rows)
        return;
    const float norm = scale / float(count);
    const int32_t *dTargets = uploadIds(targets, m_ids);
    const int64_t most = std::min(chunk, vocab);
    m_logits.ensure(size_t(rows * most) * sizeof(float));
    float *g = m_logits.as<float>();
    const bool bf16 = m_precision != ComputePrecision::Fp32;
    if (bf16)
        m_headG.ensure(size_t(rows * most) * sizeof(__nv_bfloat16));
    const Operand H = operand(h, rows * width, m_headH);
    for (int64_t c0 = 0; c0 < vocab; c0 += chunk) {
        const int64_t n = std::min(chunk, vocab - c0);
        const Operand W = chunkLogits(H, w, b, rows, width, c0, n, g);
        // G = (softmax - onehot) norm, rounded by the same kernel with bf16 products (no separate pass).
        crossEntropyGradKernel<<<unsigned(rows), kRowThreads>>>(g, n, c0, dTargets, lse, norm,
                                                                bf16 ? m_headG.as<__nv_bfloat16>() : nullptr);
        checkLaunch();
        const Operand G = bf16 ? Operand{m_headG.as(), sizeof(__nv_bfloat16)} : Operand{g, sizeof(float)};
        gemmOperands(false, false, rows, width, n, 1.0f, G, n, W, width, 1.0f, dh, width); // dh += G W_c
        if (dw)
            gemmOperands(true, false, n, width, rows, 1.0f, G, n, H, width, 1.0f, dw + c0 * width, width);
        if (db)
            columnSums(rows, n, PlainValue{g}, db + c0);
    }
}

// ---- optimizer ----

void TrainOps::adamw(float *w, float *m, float *v, const float *g, int64_t n, const cpu::AdamWConstants &k) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    adamwKernel<<<blocksFor(n), kThreads>>>(w, m, v, g, n, k);
    checkLaunch();
}

double TrainOps::sumOfSquares(const std::vector<std::pair<const float *, int64_t>> &buffers) {
    const Timed timed(*this, __func__);
    // Every buffer's block partials side by side, one copy back, summed on the host buffer by buffer in block
    // order (the order a copy per buffer gave).
    const size_t n = buffers.size() * kReduceBlocks;
    if (!n)
        return 0.0;
    m_reduce.ensure(n * sizeof(double));
    LATHE_CUDA_CHECK(cudaMemsetAsync(m_reduce.as(), 0, n * sizeof(double)));
    for (size_t i = 0; i < buffers.size(); ++i)
        if (buffers[i].second) {
            sumOfSquaresKernel<<<kReduceBlocks, kThreads>>>(buffers[i].first, buffers[i].second,
                                                            m_reduce.as<double>() + i * kReduceBlocks);
            checkLaunch();
        }
    std::vector<double> partials(n);
    LATHE_CUDA_CHECK(cudaMemcpy(partials.data(), m_reduce.as(), n * sizeof(double), cudaMemcpyDeviceToHost));
    double total = 0.0;
    for (const double p : partials)
        total += p;
    return total;
}

void TrainOps::scale(float *x, int64_t n, float factor) {
    const Timed timed(*this, __func__);
    if (!n)
        return;
    scaleKernel<<<blocksFor(n), kThreads>>>(x, n, factor);
    checkLaunch();
}

} // namespace lathe::gpu
