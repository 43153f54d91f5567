#pragma once

// What the training ops' three .cu files share (gpu/trainops.cu: the model's ops, the products, the loss and the
// optimizer; gpu/trainattention.cu: attention; gpu/trainmethodops.cu: the methods' linears, LoSparse's, SAT's and
// PST's ops): launch constants and checks, fixed-order column and row sums (each total's order is fixed, so a step's
// bits do not depend on scheduling: no atomics), a product's operand, and the profiler's events around an op.
// Included by those files only; its kernels have internal linkage (each file its own copy).

#include "trainops.h"

#include "cudacheck.h"
#include "forwardkernels.cuh"

#include <cuda_bf16.h>

#include <cstdint>

namespace lathe::gpu {

namespace {

constexpr int kThreads = 256;
// Rows per partial in the column sums: (rows / 64) x cols partials, then one pass over them per column.
constexpr int64_t kRowsPerPartial = 64;

void checkLaunch() { LATHE_CUDA_CHECK(cudaGetLastError()); }

inline unsigned blocksFor(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

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

// AdamW's update of entry i (train::AdamW's arithmetic in fp32): the whole-buffer and the some-rows kernels'.
__device__ inline void adamwOne(float *w, float *m, float *v, const float *g, int64_t i, const cpu::AdamWConstants &k) {
    const float gi = g[i];
    const float mi = k.b1 * m[i] + (1.0f - k.b1) * gi;
    const float vi = k.b2 * v[i] + (1.0f - k.b2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * k.shrink - k.stepSize * mi / (sqrtf(vi) / k.rootC2 + k.eps);
}

} // namespace


// Events around the outermost op in progress (Op), and around a part worth seeing on its own (Part: the bf16
// rounding of the products' operands) wherever it runs; inside an op, a part's time is that op's too
// (train::OpTime::nested). Never throws: an event that cannot be had drops the span.
class TrainOps::Timed {
public:
    enum Kind { Op, Part };
    Timed(TrainOps &ops, const char *op, Kind kind = Op)
        : m_profile(ops.m_profile.on ? &ops.m_profile : nullptr), m_op(op), m_part(kind == Part) {
        if (!m_profile)
            return;
        if (m_part) {
            m_nested = m_profile->depth > 0;
            m_start = m_profile->event();
        } else if (m_profile->depth++ == 0) {
            m_start = m_profile->event();
        }
    }
    ~Timed() {
        if (!m_profile || (!m_part && --m_profile->depth > 0) || !m_start)
            return;
        if (cudaEvent_t stop = m_profile->event())
            m_profile->pending.push_back({m_op, m_start, stop, m_nested});
        else
            m_profile->spare.push_back(m_start);
    }
    Timed(const Timed &) = delete;
    Timed &operator=(const Timed &) = delete;

private:
    Profile *m_profile;
    const char *m_op;
    bool m_part, m_nested = false;
    cudaEvent_t m_start = nullptr;
};

// An operand of a product: fp32 as given, or in Bf16 mode a bf16 copy of its first n values in `scratch`; `at(i)`
// is the address of element i in whichever it is.
struct TrainOps::Operand {
    const void *base;
    size_t elementBytes;
    const void *at(int64_t i) const { return static_cast<const char *>(base) + size_t(i) * elementBytes; }
};

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

} // namespace lathe::gpu
