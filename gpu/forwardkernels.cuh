#pragma once

// Element-wise and row kernels of the GPU forward pass. Each one mirrors a CPU function of core/blockops.h (named
// beside it) on the same row-major (rows x width) layouts, one token per row. Inputs that come out of a GEMM are
// fp32; outputs that feed the next GEMM are in the compute type T (float, __nv_bfloat16 or __half). Row kernels
// run one thread block of kRowThreads per row.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace lathe::gpu {

constexpr int kRowThreads = 256;

__device__ inline float toFloat(float v) { return v; }
__device__ inline float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float toFloat(__half v) { return __half2float(v); }

template <typename T> __device__ inline T fromFloat(float v);
template <> __device__ inline float fromFloat<float>(float v) { return v; }
template <> __device__ inline __nv_bfloat16 fromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ inline __half fromFloat<__half>(float v) { return __float2half_rn(v); }
template <> __device__ inline double fromFloat<double>(float v) { return double(v); }

// Sum / max of one value per thread over the whole thread block (blockDim.x a multiple of 32, at most 1024); every
// thread receives the result. Safe to call repeatedly in one kernel.
__device__ inline float blockReduce(float v, bool isMax) {
    __shared__ float partial[32];
    __shared__ float result;
    for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, v, o);
        v = isMax ? fmaxf(v, other) : v + other;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int warps = int(blockDim.x) >> 5;
        v = lane < warps ? partial[lane] : (isMax ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            const float other = __shfl_xor_sync(0xffffffffu, v, o);
            v = isMax ? fmaxf(v, other) : v + other;
        }
        if (lane == 0)
            result = v;
    }
    __syncthreads();
    const float r = result;
    __syncthreads();
    return r;
}

// Transformer::embed: h[r] = token[ids[r]] (+ position[r % seq + positionOffset]). Ids are checked on the host.
static __global__ void embedKernel(const int32_t *ids, const float *token, const float *position, int64_t seq,
                            int positionOffset, int64_t width, float *h) {
    const int64_t r = blockIdx.x;
    const float *t = token + int64_t(ids[r]) * width;
    const float *p = position ? position + (r % seq + positionOffset) * width : nullptr;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
        h[r * width + c] = t[c] + (p ? p[c] : 0.0f);
}

// cpu::rmsNormForward / rmsNormWeightless / layerNormForward. RMS: y = x / sqrt(sum(x^2) / divisor + eps) * w
// (w null = 1; divisor = width, or the original width of a sliced model). LayerNorm: y = (x - mean) /
// sqrt(var + eps) * w + b with the biased variance (b null = 0). meanOut / rstdOut, when not null, receive the row's
// mean (LayerNorm) and 1 / sqrt(... + eps) (what training's backward needs).
template <typename T>
static __global__ void normKernel(const float *x, int64_t width, bool layerNorm, float divisor, float eps, const float *w,
                           const float *b, T *y, float *meanOut, float *rstdOut) {
    const int64_t r = blockIdx.x;
    const float *in = x + r * width;
    T *out = y + r * width;
    float mean = 0.0f;
    if (layerNorm) {
        float s = 0.0f;
        for (int64_t c = threadIdx.x; c < width; c += blockDim.x)
            s += in[c];
        mean = blockReduce(s, false) / float(width);
    }
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        const float d = in[c] - mean;
        ss += d * d;
    }
    ss = blockReduce(ss, false);
    const float inv = rsqrtf(ss / (layerNorm ? float(width) : divisor) + eps);
    if (threadIdx.x == 0) {
        if (rstdOut)
            rstdOut[r] = inv;
        if (meanOut)
            meanOut[r] = mean;
    }
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        float v = (in[c] - mean) * inv;
        if (w)
            v *= w[c];
        if (b)
            v += b[c];
        out[c] = fromFloat<T>(v);
    }
}

// y[r][c] += bias[c] (fp32, after a GEMM).
static __global__ void addBiasKernel(float *y, const float *bias, int64_t rows, int64_t cols) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < rows * cols)
        y[i] += bias[i % cols];
}

// cpu::ropeForward followed by conversion to T: rotate-half RoPE on the first 2*half dimensions of every head of
// row r (position r % seq), the other dimensions copied. half = 0 converts only. One thread block per row.
template <typename T>
static __global__ void ropeConvertKernel(const float *x, int heads, int headDim, int64_t seq, const float *cosTable,
                                  const float *sinTable, int half, T *y) {
    const int64_t r = blockIdx.x;
    const int64_t width = int64_t(heads) * headDim;
    const float *in = x + r * width;
    T *out = y + r * width;
    const int64_t pos = r % seq;
    for (int64_t idx = threadIdx.x; idx < width; idx += blockDim.x) {
        const int i = int(idx % headDim);
        const float v = in[idx];
        float o = v;
        if (i < half) {
            const float c = cosTable[pos * half + i], s = sinTable[pos * half + i];
            o = v * c - in[idx + half] * s;
        } else if (i < 2 * half) {
            const int j = i - half;
            const float c = cosTable[pos * half + j], s = sinTable[pos * half + j];
            o = v * c + in[idx - half] * s;
        }
        out[idx] = fromFloat<T>(o);
    }
}

// The maximum of x[0..n) and the sum of exp(x[j] - maximum), over the thread block (every thread gets both).
__device__ inline float2 rowMaxExpSum(const float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        mx = fmaxf(mx, x[j]);
    mx = blockReduce(mx, true);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        sum += expf(x[j] - mx);
    return make_float2(mx, blockReduce(sum, false));
}

// Row-wise softmax of attention scores (already scaled) into probabilities in T. Rows are (head, query) pairs of one
// query block: `rowsPerHead` queries starting at position `queryOffset`, each row `keys` wide; a causal row for query
// i keeps keys 0..i and writes zeros after them.
template <typename T>
__global__ void softmaxKernel(const float *scores, int64_t keys, int64_t rowsPerHead, int64_t queryOffset, bool causal,
                              T *probs) {
    const int64_t row = blockIdx.x;
    const int64_t i = queryOffset + row % rowsPerHead;
    const float *s = scores + row * keys;
    T *p = probs + row * keys;
    const int64_t limit = causal ? i + 1 : keys;
    const float2 ms = rowMaxExpSum(s, limit);
    const float mx = ms.x, inv = 1.0f / ms.y;
    for (int64_t j = threadIdx.x; j < keys; j += blockDim.x)
        p[j] = fromFloat<T>(j < limit ? expf(s[j] - mx) * inv : 0.0f);
}

enum class DeviceActivation : int { Silu, Relu, GeluTanh, GeluErf };

__device__ inline float activate(DeviceActivation a, float v) {
    switch (a) {
    case DeviceActivation::Silu: return v / (1.0f + __expf(-v));
    case DeviceActivation::Relu: return fmaxf(v, 0.0f);
    case DeviceActivation::GeluTanh: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case DeviceActivation::GeluErf: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
    return v;
}

// cpu::activationForward (gate null) or cpu::swigluForward (out = silu(gate) * up), into T.
template <typename T>
static __global__ void activationKernel(DeviceActivation a, const float *up, const float *gate, int64_t n, T *out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    out[i] = fromFloat<T>(gate ? activate(DeviceActivation::Silu, gate[i]) * up[i] : activate(a, up[i]));
}

template <typename T> __global__ void convertKernel(const float *in, int64_t n, T *out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = fromFloat<T>(in[i]);
}

// h += a (+ b): the residual additions.
static __global__ void residualKernel(float *h, const float *a, const float *b, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        h[i] += a[i] + (b ? b[i] : 0.0f);
}

// -log softmax(logits[r])[target[r]] per row, in fp64 for the sum the caller makes (evaluation.cpp's addNll).
static __global__ void nllKernel(const float *logits, int64_t vocab, const int32_t *targets, double *out) {
    const int64_t r = blockIdx.x;
    const float *row = logits + r * vocab;
    const float2 ms = rowMaxExpSum(row, vocab);
    if (threadIdx.x == 0)
        out[r] = double(logf(ms.y)) + double(ms.x) - double(row[targets[r]]);
}

inline unsigned gridFor(int64_t n, int threads = 256) { return unsigned((n + threads - 1) / threads); }

} // namespace lathe::gpu
