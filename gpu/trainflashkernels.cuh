#pragma once

// The training attention's fused kernels (gpu/trainops.h with train::AttentionStore::LogSumExp): attention computed
// tile by tile in shared memory, never writing a (seq x seq) score block to global memory, in the manner of Dao et
// al.'s FlashAttention-2 forward (an online softmax over key tiles, each row's log-sum-exp saved for the backward).
// Where we differ from FlashAttention-2's backward: it is split in two kernels, one per key tile for dK and dV
// (looping over the group's heads and the query tiles) and one per query tile for dQ (looping over the key tiles),
// so that every gradient entry is summed by one thread block in a fixed order, without atomics (a step's bits do not
// depend on scheduling, as everywhere in the training ops); the price is that the probabilities and their
// gradient are recomputed in both, seven tile products where FlashAttention-2 has five.
//
// Products: bf16 operands, rounded from the fp32 activations as a tile is loaded into shared memory, fp32
// accumulation on the tensor cores (nvcuda::wmma 16x16x16 fragments); scores, softmax and the gradients' sums fp32.
// A block is four warps; a tile is 64 queries or keys, 16 rows per warp. Head widths up to 96
// (train::fusedAttentionRuns): the tiles have D columns, the head width rounded up to a multiple of 16 (the tensor
// cores' fragment), instantiated one by one; the columns beyond the head width are zero, so they change no product
// (the 8-wide heads of the test fixtures and the demo model run at D = 16). Shared memory per block: 3 x 64 x (D + 8)
// bf16 tiles plus each warp's scores (16 x 68 fp32), probabilities (16 x 72 bf16) and output (16 x (D + 4) fp32) in
// the forward: 70 KiB at D = 64, 90 KiB at D = 96 (under the 99 KiB a block may have on sm_86/89).
//
// Layouts (as the blocks path's, gpu/trainattention.cu): q and ctx (rows x heads*D), k and v (rows x kvHeads*D),
// row = b * seq + t; head h reads KV head h / (heads / kvHeads); lse and the backward's delta = dO . O are
// [batch][head][query] floats.

// This header holds the kernels, their tile helpers and launch geometry; gpu/trainflashattention.cu launches them
// for gpu::TrainOps, and tests/tst_flashattention.cpp runs them unchanged on the CPU through a CUDA emulation
// (gpu/cudaemulation.h, defining LATHE_CUDA_EMULATION), against core/train/ops.h.

#ifdef LATHE_CUDA_EMULATION
#include "cudaemulation.h"
#else
#include <cuda_bf16.h>
#include <mma.h>
#define LATHE_SHARED_BYTES(name) extern __shared__ __align__(128) unsigned char name[]
#endif

#include "base/error.h"
#include "train/devicetraining.h"
#include "train/ops.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace lathe::gpu {

namespace {

using namespace nvcuda;
using Bf16 = __nv_bfloat16;

constexpr int kTile = 64;               // queries or keys per tile
constexpr int kWarps = 4;               // each owns 16 rows of its block's tile
constexpr int kFlashThreads = 32 * kWarps;
constexpr int kPad = 8;                 // bf16 tile rows of D + 8 (wmma's 32-byte alignment; spreads the banks)
constexpr int kScoreLd = kTile + 4;     // a warp's fp32 (16 x 64) scores
constexpr int kProbLd = kTile + 8;      // a warp's bf16 (16 x 64) probabilities or their gradient

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, Bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, Bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, Bf16, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

struct FlashDims {
    int64_t batch, seq, qw, kw; // qw, kw: the row widths of q/ctx and k/v
    int heads, kvHeads, group, dh; // dh: the head width (the tiles' D columns are it rounded up to 16)
    float scale;
    bool causal;
};

__host__ __device__ constexpr int64_t tilesOf(int64_t seq) { return (seq + kTile - 1) / kTile; }

// dst (kTile x (D + kPad) bf16) = rows [row0, row0 + kTile) of src (fp32, `width` floats a row), columns
// [col0, col0 + dh), rounded; rows from `valid` on and columns from dh on are zero.
template <int D>
__device__ void loadTile(Bf16 *dst, const float *src, int64_t width, int64_t row0, int64_t valid, int64_t col0,
                         int dh) {
    constexpr int ld = D + kPad;
    for (int i = threadIdx.x; i < kTile * D; i += kFlashThreads) {
        const int r = i / D, c = i % D;
        dst[r * ld + c] = __float2bfloat16(r < valid && c < dh ? src[(row0 + r) * width + col0 + c] : 0.0f);
    }
}

// out (16 x 64 fp32, ld kScoreLd) = A (16 x D, row-major, ld) . B^T, B (64 x D, row-major, ld): a warp's scores
// against a tile, or its dP against the values.
template <int D> __device__ void productRowsByTile(const Bf16 *a, const Bf16 *b, float *out) {
    constexpr int ld = D + kPad;
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) {
        FragAcc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            FragA fa;
            FragBCol fb; // B^T's (D x 16) block: column-major over B's rows
            wmma::load_matrix_sync(fa, a + kk * 16, ld);
            wmma::load_matrix_sync(fb, b + n * 16 * ld + kk * 16, ld);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(out + n * 16, acc, kScoreLd, wmma::mem_row_major);
    }
}

// acc[n] += P (16 x 64 bf16, ld kProbLd) . B (64 x D, row-major, ld), for the D / 16 column blocks n of B.
template <int D> __device__ void accumulateTileProduct(FragAcc *acc, const Bf16 *p, const Bf16 *b) {
    constexpr int ld = D + kPad;
#pragma unroll
    for (int n = 0; n < D / 16; ++n)
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) {
            FragA fa;
            FragBRow fb;
            wmma::load_matrix_sync(fa, p + kk * 16, kProbLd);
            wmma::load_matrix_sync(fb, b + kk * 16 * ld + n * 16, ld);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
}

// dst[rows of the warp's 16, dh columns] += acc: each fragment through the warp's score scratch, rows from
// `valid` on and the padding columns skipped. dst's row r is dst + r * width.
template <int D>
__device__ void addFragments(const FragAcc *acc, float *scratch, float *dst, int64_t width, int64_t valid, int dh) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
        __syncwarp();
        wmma::store_matrix_sync(scratch, acc[n], kScoreLd, wmma::mem_row_major);
        __syncwarp();
        for (int i = lane; i < 256; i += 32) {
            const int r = i / 16, c = i % 16;
            if (r < valid && n * 16 + c < dh)
                dst[r * width + n * 16 + c] += scratch[r * kScoreLd + c];
        }
    }
}

template <int D> constexpr size_t forwardSharedBytes() {
    return size_t(3 * kTile * (D + kPad)) * sizeof(Bf16) + size_t(kWarps * 16 * kScoreLd) * sizeof(float) +
           size_t(kWarps * 16 * kProbLd) * sizeof(Bf16) + size_t(kWarps * 16 * (D + 4)) * sizeof(float);
}
template <int D> constexpr size_t backwardSharedBytes() {
    return size_t(4 * kTile * (D + kPad)) * sizeof(Bf16) + size_t(2 * kTile) * sizeof(float) +
           size_t(kWarps * 16 * kScoreLd) * sizeof(float) + size_t(2 * kWarps * 16 * kProbLd) * sizeof(Bf16);
}
// The most dynamic shared memory a block may have on sm_86 and sm_89 (99 KiB; sm_80 163 KiB, sm_90 227 KiB).
constexpr size_t kMaxSharedBytes = 99 * 1024;
static_assert(forwardSharedBytes<96>() <= kMaxSharedBytes && backwardSharedBytes<96>() <= kMaxSharedBytes,
              "the widest tiles must fit every supported GPU's shared memory");

// ---- forward: one block per (query tile, sequence x head) ----
// Each lane owns half a row of its warp's 16: row lane / 2, columns [32 (lane % 2), +32) of a key tile, and the
// same half of the row's D output columns. The running maximum m and sum l of each row live in its two lanes.
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    flashForwardKernel(const float *q, const float *k, const float *v, FlashDims d, float *ctx, float *lse) {
    constexpr int ld = D + kPad, ldo = D + 4;
    LATHE_SHARED_BYTES(shared);
    Bf16 *sQ = reinterpret_cast<Bf16 *>(shared);
    Bf16 *sK = sQ + kTile * ld;
    Bf16 *sV = sK + kTile * ld;
    float *sS = reinterpret_cast<float *>(sV + kTile * ld);
    Bf16 *sP = reinterpret_cast<Bf16 *>(sS + kWarps * 16 * kScoreLd);
    float *sO = reinterpret_cast<float *>(sP + kWarps * 16 * kProbLd);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    const int64_t b = blockIdx.z, S = d.seq, q0 = int64_t(blockIdx.x) * kTile;
    const int h = int(blockIdx.y), kvh = h / d.group;
    float *wS = sS + warp * 16 * kScoreLd, *wO = sO + warp * 16 * ldo;
    Bf16 *wP = sP + warp * 16 * kProbLd;
    loadTile<D>(sQ, q, d.qw, b * S + q0, min(int64_t(kTile), S - q0), int64_t(h) * d.dh, d.dh);
    for (int i = lane; i < 16 * ldo; i += 32)
        wO[i] = 0.0f;
    const int64_t qi = q0 + warp * 16 + r; // this lane's query
    float m = -INFINITY, l = 0.0f;
    const int64_t keyTiles = d.causal ? min(tilesOf(S), int64_t(blockIdx.x) + 1) : tilesOf(S);
    for (int64_t kt = 0; kt < keyTiles; ++kt) {
        const int64_t k0 = kt * kTile;
        __syncthreads(); // the previous tile's keys and values are used up
        loadTile<D>(sK, k, d.kw, b * S + k0, min(int64_t(kTile), S - k0), int64_t(kvh) * d.dh, d.dh);
        loadTile<D>(sV, v, d.kw, b * S + k0, min(int64_t(kTile), S - k0), int64_t(kvh) * d.dh, d.dh);
        __syncthreads();
        productRowsByTile<D>(sQ + warp * 16 * ld, sK, wS);
        __syncwarp();
        float s[32], top = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            const int64_t kj = k0 + half * 32 + c;
            const bool on = qi < S && kj < S && (!d.causal || kj <= qi);
            s[c] = on ? wS[r * kScoreLd + half * 32 + c] * d.scale : -INFINITY;
            top = fmaxf(top, s[c]);
        }
        top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 1));
        const float mNew = fmaxf(m, top);
        const float base = mNew == -INFINITY ? 0.0f : mNew; // a row with no key yet (beyond the sequence)
        const float alpha = __expf(m - base);
        float sum = 0.0f;
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            const float p = __expf(s[c] - base);
            sum += p;
            wP[r * kProbLd + half * 32 + c] = __float2bfloat16(p);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * alpha + sum;
        m = mNew;
        for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c)
            wO[r * ldo + c] *= alpha;
        __syncwarp();
        // O += P V, the accumulators loaded from and stored to the warp's rows of O.
        FragAcc acc[D / 16];
#pragma unroll
        for (int n = 0; n < D / 16; ++n)
            wmma::load_matrix_sync(acc[n], wO + n * 16, ldo, wmma::mem_row_major);
        accumulateTileProduct<D>(acc, wP, sV);
#pragma unroll
        for (int n = 0; n < D / 16; ++n)
            wmma::store_matrix_sync(wO + n * 16, acc[n], ldo, wmma::mem_row_major);
        __syncwarp();
    }
    if (qi < S) {
        const float inv = 1.0f / l;
        float *out = ctx + (b * S + qi) * d.qw + int64_t(h) * d.dh;
        for (int c = half * (D / 2); c < min((half + 1) * (D / 2), d.dh); ++c)
            out[c] = wO[r * ldo + c] * inv;
        if (half == 0)
            lse[(b * d.heads + h) * S + qi] = m + logf(l);
    }
}

// delta[(b, h, t)] = dO . O over the head's D columns: one warp per (row, head), a fixed shuffle order.
__global__ void flashDeltaKernel(const float *dctx, const float *ctx, FlashDims d, float *delta) {
    const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (w >= d.batch * d.seq * d.heads)
        return;
    const int64_t row = w / d.heads;
    const int h = int(w % d.heads);
    const float *a = dctx + row * d.qw + int64_t(h) * d.dh, *o = ctx + row * d.qw + int64_t(h) * d.dh;
    float sum = 0.0f;
    for (int c = lane; c < d.dh; c += 32)
        sum += a[c] * o[c];
    for (int off = 16; off > 0; off /= 2)
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0)
        delta[((row / d.seq) * d.heads + h) * d.seq + row % d.seq] = sum;
}

// A warp's probabilities of one (16 x 64) tile from its scores in wS and the rows' or columns' log-sum-exps:
// p[c] for this lane's 32, the bf16 copy into wP when asked. byKeys: the warp's rows are keys and its columns
// queries (the key-tile kernel's P^T).
struct TileRows {
    int64_t q0, k0; // the tile's first query and key
    int warpRow;    // the warp's first row in the tile
};
__device__ inline void tileProbabilities(const float *wS, const float *lseOf, bool byKeys, const TileRows &t,
                                         const FlashDims &d, float *p, Bf16 *wP) {
    const int lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        const int64_t row = t.warpRow + r;
        const int64_t qi = byKeys ? t.q0 + col : t.q0 + row, kj = byKeys ? t.k0 + row : t.k0 + col;
        const bool on = qi < d.seq && kj < d.seq && (!d.causal || kj <= qi);
        const float l = byKeys ? lseOf[col] : lseOf[row];
        p[c] = on ? __expf(wS[r * kScoreLd + col] * d.scale - l) : 0.0f;
        if (wP)
            wP[r * kProbLd + col] = __float2bfloat16(p[c]);
    }
}
// dS = P (dP - delta) scale into wdS (bf16), dP in wS.
__device__ inline void tileScoreGradient(const float *wS, const float *deltaOf, bool byKeys, const TileRows &t,
                                         const float *p, float scale, Bf16 *wdS) {
    const int lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        const float delta = byKeys ? deltaOf[col] : deltaOf[t.warpRow + r];
        wdS[r * kProbLd + col] = __float2bfloat16(p[c] * (wS[r * kScoreLd + col] - delta) * scale);
    }
}

// The backward kernels' shared memory (backwardSharedBytes): the query tile's q and dO and the key tile's k and v
// (bf16, 64 x (D + kPad) each), the query tile's log-sum-exps and deltas (64 floats each), and each warp's scores
// (16 x kScoreLd fp32), probabilities and score gradients (16 x kProbLd bf16 each; the query kernel uses no
// probabilities). Every part starts on a 32-byte boundary, as wmma needs.
template <int D> struct BackwardShared {
    __device__ explicit BackwardShared(unsigned char *shared) {
        constexpr int ld = D + kPad;
        q = reinterpret_cast<Bf16 *>(shared);
        dO = q + kTile * ld;
        k = dO + kTile * ld;
        v = k + kTile * ld;
        lse = reinterpret_cast<float *>(v + kTile * ld);
        delta = lse + kTile;
        scores = delta + kTile;
        probs = reinterpret_cast<Bf16 *>(scores + kWarps * 16 * kScoreLd);
        dScores = probs + kWarps * 16 * kProbLd;
    }
    Bf16 *q, *dO, *k, *v, *probs, *dScores;
    float *lse, *delta, *scores;
};

// Loads a query tile's rows of q and dO, and its log-sum-exps and deltas (zero beyond the sequence).
template <int D>
__device__ void loadQueryTile(const float *q, const float *dctx, const float *lse, const float *delta,
                              const FlashDims &d, int64_t b, int h, int64_t q0, Bf16 *sQ, Bf16 *sdO, float *sLse,
                              float *sDelta) {
    const int64_t S = d.seq, valid = min(int64_t(kTile), S - q0), bh = b * d.heads + h;
    loadTile<D>(sQ, q, d.qw, b * S + q0, valid, int64_t(h) * d.dh, d.dh);
    loadTile<D>(sdO, dctx, d.qw, b * S + q0, valid, int64_t(h) * d.dh, d.dh);
    for (int i = threadIdx.x; i < kTile; i += kFlashThreads) {
        sLse[i] = i < valid ? lse[bh * S + q0 + i] : 0.0f;
        sDelta[i] = i < valid ? delta[bh * S + q0 + i] : 0.0f;
    }
}

// ---- backward, keys: one block per (key tile, sequence x KV head); dK and dV of its 64 keys summed over the
// group's heads and the query tiles, in that order, in the warps' accumulators ----
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    flashBackwardKeysKernel(const float *q, const float *k, const float *v, const float *dctx, const float *lse,
                            const float *delta, FlashDims d, float *dk, float *dv) {
    constexpr int ld = D + kPad;
    LATHE_SHARED_BYTES(shared);
    const BackwardShared<D> sh(shared);
    Bf16 *sK = sh.k, *sV = sh.v, *sQ = sh.q, *sdO = sh.dO, *sP = sh.probs, *sdS = sh.dScores;
    float *sLse = sh.lse, *sDelta = sh.delta, *sS = sh.scores;

    const int warp = threadIdx.x / 32;
    const int64_t b = blockIdx.z, S = d.seq, k0 = int64_t(blockIdx.x) * kTile;
    const int kvh = int(blockIdx.y);
    float *wS = sS + warp * 16 * kScoreLd;
    Bf16 *wP = sP + warp * 16 * kProbLd, *wdS = sdS + warp * 16 * kProbLd;
    const int64_t keys = min(int64_t(kTile), S - k0);
    loadTile<D>(sK, k, d.kw, b * S + k0, keys, int64_t(kvh) * d.dh, d.dh);
    loadTile<D>(sV, v, d.kw, b * S + k0, keys, int64_t(kvh) * d.dh, d.dh);
    FragAcc dK[D / 16], dV[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
        wmma::fill_fragment(dK[n], 0.0f);
        wmma::fill_fragment(dV[n], 0.0f);
    }
    // Causal: query tiles before this key tile see none of its keys.
    const int64_t firstQueryTile = d.causal ? int64_t(blockIdx.x) : 0;
    for (int g = 0; g < d.group; ++g) {
        const int h = kvh * d.group + g;
        for (int64_t qt = firstQueryTile; qt < tilesOf(S); ++qt) {
            const TileRows t{qt * kTile, k0, warp * 16};
            __syncthreads(); // the previous query tile is used up
            loadQueryTile<D>(q, dctx, lse, delta, d, b, h, t.q0, sQ, sdO, sLse, sDelta);
            __syncthreads();
            float p[32];
            productRowsByTile<D>(sK + warp * 16 * ld, sQ, wS); // S^T: the warp's keys x the tile's queries
            __syncwarp();
            tileProbabilities(wS, sLse, true, t, d, p, wP);
            __syncwarp();
            productRowsByTile<D>(sV + warp * 16 * ld, sdO, wS); // dP^T = V dO^T
            __syncwarp();
            tileScoreGradient(wS, sDelta, true, t, p, d.scale, wdS);
            __syncwarp();
            accumulateTileProduct<D>(dV, wP, sdO); // dV += P^T dO
            accumulateTileProduct<D>(dK, wdS, sQ); // dK += dS^T Q (scale inside dS)
        }
    }
    const int64_t valid = keys - warp * 16;
    addFragments<D>(dK, wS, dk + (b * S + k0 + warp * 16) * d.kw + int64_t(kvh) * d.dh, d.kw, valid, d.dh);
    addFragments<D>(dV, wS, dv + (b * S + k0 + warp * 16) * d.kw + int64_t(kvh) * d.dh, d.kw, valid, d.dh);
}

// ---- backward, queries: one block per (query tile, sequence x head); dQ of its 64 queries summed over the key
// tiles in order ----
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    flashBackwardQueriesKernel(const float *q, const float *k, const float *v, const float *dctx, const float *lse,
                               const float *delta, FlashDims d, float *dq) {
    constexpr int ld = D + kPad;
    LATHE_SHARED_BYTES(shared);
    const BackwardShared<D> sh(shared);
    Bf16 *sQ = sh.q, *sdO = sh.dO, *sK = sh.k, *sV = sh.v, *sdS = sh.dScores;
    float *sLse = sh.lse, *sDelta = sh.delta, *sS = sh.scores;

    const int warp = threadIdx.x / 32;
    const int64_t b = blockIdx.z, S = d.seq, q0 = int64_t(blockIdx.x) * kTile;
    const int h = int(blockIdx.y), kvh = h / d.group;
    float *wS = sS + warp * 16 * kScoreLd;
    Bf16 *wdS = sdS + warp * 16 * kProbLd;
    loadQueryTile<D>(q, dctx, lse, delta, d, b, h, q0, sQ, sdO, sLse, sDelta);
    FragAcc dQ[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; ++n)
        wmma::fill_fragment(dQ[n], 0.0f);
    const int64_t keyTiles = d.causal ? min(tilesOf(S), int64_t(blockIdx.x) + 1) : tilesOf(S);
    for (int64_t kt = 0; kt < keyTiles; ++kt) {
        const TileRows t{q0, kt * kTile, warp * 16};
        __syncthreads(); // the previous key tile is used up (and, the first time, the query tile is loaded)
        loadTile<D>(sK, k, d.kw, b * S + t.k0, min(int64_t(kTile), S - t.k0), int64_t(kvh) * d.dh, d.dh);
        loadTile<D>(sV, v, d.kw, b * S + t.k0, min(int64_t(kTile), S - t.k0), int64_t(kvh) * d.dh, d.dh);
        __syncthreads();
        float p[32];
        productRowsByTile<D>(sQ + warp * 16 * ld, sK, wS); // S: the warp's queries x the tile's keys
        __syncwarp();
        tileProbabilities(wS, sLse, false, t, d, p, nullptr);
        __syncwarp();
        productRowsByTile<D>(sdO + warp * 16 * ld, sV, wS); // dP = dO V^T
        __syncwarp();
        tileScoreGradient(wS, sDelta, false, t, p, d.scale, wdS);
        __syncwarp();
        accumulateTileProduct<D>(dQ, wdS, sK); // dQ += dS K (scale inside dS)
    }
    addFragments<D>(dQ, wS, dq + (b * S + q0 + warp * 16) * d.qw + int64_t(h) * d.dh, d.qw,
                    min(int64_t(kTile), S - q0) - warp * 16, d.dh);
}

// Calls f(std::integral_constant<int, D>) for the tiles' width D: the head width rounded up to a multiple of 16,
// up to 96.
template <class F> void withHeadWidth(int headDim, F &&f) {
    switch ((headDim + 15) / 16 * 16) {
    case 16: return f(std::integral_constant<int, 16>());
    case 32: return f(std::integral_constant<int, 32>());
    case 48: return f(std::integral_constant<int, 48>());
    case 64: return f(std::integral_constant<int, 64>());
    case 80: return f(std::integral_constant<int, 80>());
    case 96: return f(std::integral_constant<int, 96>());
    default:
        require(false, "GPU training", "the fused attention has no kernel for head width " + std::to_string(headDim),
                "LATHE_GPU_TRAIN_ATTENTION=blocks runs it on whole score blocks");
    }
}

// The kernels' dims, checked: a head width the kernels have (bf16 products are the TrainOps constructor's check),
// whole KV groups, and the grids' y and z (heads, sequences) within CUDA's 65535.
FlashDims flashDims(const train::AttentionDims &d) {
    require(train::fusedAttentionRuns(ComputePrecision::Bf16, d.headDim), "GPU training",
            "the fused attention needs bf16 products and a head width of at most 96");
    require(d.kvHeads > 0 && d.heads % d.kvHeads == 0 && d.heads <= 65535, "GPU training",
            "the fused attention needs whole groups of query heads per KV head (" + std::to_string(d.heads) +
                " heads, " + std::to_string(d.kvHeads) + " KV heads)");
    require(d.batch <= 65535, "GPU training",
            "the fused attention takes at most 65535 sequences per call, not " + std::to_string(d.batch),
            "a smaller data.batch with optimizer.accumulate for the same step");
    return {d.batch, d.seq, int64_t(d.heads) * d.headDim, int64_t(d.kvHeads) * d.headDim, d.heads, d.kvHeads,
            d.heads / d.kvHeads, d.headDim, float(d.scale), d.causal};
}

// Launch geometry: the forward and the query-gradient kernel take one block per (query tile, sequence x head), the
// key/value-gradient kernel one per (key tile, sequence x KV head), the delta kernel one warp per (row, head).
// Grids: (tiles, heads, sequences) for the forward and dQ, (tiles, KV heads, sequences) for dK and dV.
inline dim3 queryTileGrid(const FlashDims &d) {
    return dim3(unsigned(tilesOf(d.seq)), unsigned(d.heads), unsigned(d.batch));
}
inline dim3 keyTileGrid(const FlashDims &d) {
    return dim3(unsigned(tilesOf(d.seq)), unsigned(d.kvHeads), unsigned(d.batch));
}
constexpr int kDeltaThreads = 256;
inline unsigned deltaBlocks(const FlashDims &d) {
    return unsigned((d.batch * d.seq * d.heads * 32 + kDeltaThreads - 1) / kDeltaThreads);
}

} // namespace

} // namespace lathe::gpu
