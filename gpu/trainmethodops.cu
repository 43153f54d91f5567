// The training ops of the methods' linears and per-step work (gpu/trainops.h): the masked and low-rank + sparse
// linears' adds, LoSparse's row importance and pruning, SAT's gathered linears, row-restricted AdamW and channel
// norms, PST's adapted weight, scores, mask selection (a radix select on the device) and backward.

#include "trainopskernels.cuh"

#include "base/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lathe::gpu {

namespace {

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

// The entries (rows[i], cols[j]) of a parameter with `cols` columns, i < nRows, j < nCols (null lists: all).
__global__ void adamwSomeKernel(float *w, float *m, float *v, const float *g, int64_t cols, const int32_t *rows,
                                int64_t nRows, const int32_t *activeCols, int64_t nCols, cpu::AdamWConstants k) {
    const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= nRows * nCols)
        return;
    const int64_t i = e / nCols, j = e % nCols;
    adamwOne(w, m, v, g, int64_t(rows ? rows[i] : i) * cols + (activeCols ? activeCols[j] : j), k);
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
} // namespace

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

} // namespace lathe::gpu
