// The training ops (gpu/trainops.h) of the model itself: embedding, norms, products and linears, RoPE, the
// element-wise ops, the fused LM head and cross-entropy, and the optimizer; the profiler's bookkeeping. Attention
// is in trainattention.cu, the methods' ops in trainmethodops.cu.

#include "trainopskernels.cuh"

#include "base/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace lathe::gpu {

namespace {

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

__global__ void adamwKernel(float *w, float *m, float *v, const float *g, int64_t n, cpu::AdamWConstants k) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        adamwOne(w, m, v, g, i, k);
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
} // namespace

// ---- profiling ----

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
        auto it = std::find_if(out.begin(), out.end(),
                               [&](const train::OpTime &t) { return t.op == s.op && t.nested == s.nested; });
        if (it == out.end())
            it = out.insert(out.end(), train::OpTime{s.op, 0.0, 0, s.nested});
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

TrainOps::TrainOps(cublasHandle_t blas, ComputePrecision precision, train::AttentionStore store)
    : m_blas(blas), m_precision(precision), m_store(store) {
    require(precision != ComputePrecision::Fp16, "GPU training", "fp16 products are not supported for training",
            "use bf16 (the default) or fp32");
    require(store == train::AttentionStore::Probabilities || precision == ComputePrecision::Bf16, "GPU training",
            "the fused attention multiplies in bf16 only");
}

const int32_t *TrainOps::uploadIds(const std::vector<int32_t> &ids, DeviceMemory &to) {
    to.ensure(std::max<size_t>(1, ids.size()) * sizeof(int32_t));
    if (!ids.empty())
        LATHE_CUDA_CHECK(cudaMemcpy(to.as(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return to.as<int32_t>();
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

TrainOps::Operand TrainOps::operand(const float *x, int64_t n, DeviceMemory &scratch) {
    if (m_precision == ComputePrecision::Fp32)
        return {x, sizeof(float)};
    const Timed timed(*this, "bf16 rounding", Timed::Part);
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
    // A buffer smaller than the whole grid gets a block per kThreads values (its other partials stay 0): the
    // norm weights, biases and low-rank adapters need a block or a few, not kReduceBlocks of mostly idle threads.
    for (size_t i = 0; i < buffers.size(); ++i)
        if (buffers[i].second) {
            const unsigned blocks = std::min<unsigned>(kReduceBlocks, blocksFor(buffers[i].second));
            sumOfSquaresKernel<<<blocks, kThreads>>>(buffers[i].first, buffers[i].second,
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
