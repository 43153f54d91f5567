#pragma once

// The CUDA runtime, cuBLAS and cuSOLVER calls of the GPU backend (gpu/*.cu: the forward pass, SliceGPT, the trainer),
// emulated on the host for tests on machines without a GPU (tests/tst_emulatedgpu.cpp; the kernels run through
// cudaemulation.h). The "device" is host memory: cudaMalloc is an aligned allocation and every copy a memcpy; work
// runs when it is launched, so synchronizing waits for nothing and events hold host times. cuBLAS's products are
// column-major reference loops accumulating in double (cuBLAS accumulates in fp32 or fp64: the checks' tolerances
// cover either) over fp32, bf16, fp16 or fp64 operands, with cuBLAS's argument checks; cuSOLVER's eigensolver and
// SVD are Eigen's in double. Included through emulation/'s cuda_runtime.h, cublas_v2.h and cusolverDn.h, which
// stand in for the toolkit's in that test only.

#include "cudaemulation.h"

#include <Eigen/Dense>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

// ---- runtime ----

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
};
inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulated)";
    }
    return "unknown error (emulated)";
}
// A launch's configuration error (lathe::emu::launch), reported once.
inline cudaError_t cudaGetLastError() {
    const int e = lathe::emu::t_launchError;
    lathe::emu::t_launchError = 0;
    return cudaError_t(e);
}

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
using cudaStream_t = void *;

namespace lathe::emu {
inline constexpr uint64_t kDeviceBytes = uint64_t(16) << 30; // the emulated device's memory
} // namespace lathe::emu

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
};

inline cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device != 0)
        return cudaErrorInvalidDevice;
    *p = {};
    std::strncpy(p->name, "CUDA emulation", sizeof p->name - 1);
    p->totalGlobalMem = lathe::emu::kDeviceBytes;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

namespace lathe::emu {

// The emulated device's memory in use and its peak since resetPeak (what a test holds a memory formula to): every
// cudaMalloc'd byte (pinned host memory is not device memory).
struct DeviceMemory {
    std::mutex mutex;
    std::unordered_map<const void *, size_t> sizes;
    uint64_t current = 0, peak = 0;
    uint64_t limit = kDeviceBytes; // cudaMalloc fails beyond it (ScopedDeviceLimit lowers it)
};
inline DeviceMemory &deviceMemory() {
    static DeviceMemory m;
    return m;
}
inline uint64_t deviceBytesInUse() {
    DeviceMemory &m = deviceMemory();
    std::lock_guard<std::mutex> lock(m.mutex);
    return m.current;
}
inline uint64_t devicePeakBytes() {
    DeviceMemory &m = deviceMemory();
    std::lock_guard<std::mutex> lock(m.mutex);
    return m.peak;
}
inline void resetDevicePeak() {
    DeviceMemory &m = deviceMemory();
    std::lock_guard<std::mutex> lock(m.mutex);
    m.peak = m.current;
}
// A smaller device for a scope (a test of running out of memory): `bytes` more than are in use now.
class ScopedDeviceLimit {
public:
    explicit ScopedDeviceLimit(uint64_t bytes) { set(deviceBytesInUse() + bytes); }
    ~ScopedDeviceLimit() { set(kDeviceBytes); }
    ScopedDeviceLimit(const ScopedDeviceLimit &) = delete;
    ScopedDeviceLimit &operator=(const ScopedDeviceLimit &) = delete;

private:
    static void set(uint64_t limit) {
        DeviceMemory &m = deviceMemory();
        std::lock_guard<std::mutex> lock(m.mutex);
        m.limit = limit;
    }
};

// cudaMalloc's and cudaMallocHost's memory: 256-byte aligned, as the driver's.
inline void *allocateAligned(size_t bytes) {
    return ::operator new(bytes ? bytes : 1, std::align_val_t(256), std::nothrow);
}
inline void freeAligned(void *p) { ::operator delete(p, std::align_val_t(256)); }

} // namespace lathe::emu

inline cudaError_t cudaMemGetInfo(size_t *free, size_t *total) {
    lathe::emu::DeviceMemory &m = lathe::emu::deviceMemory();
    std::lock_guard<std::mutex> lock(m.mutex);
    *total = m.limit;
    *free = m.limit - std::min(m.limit, m.current);
    return cudaSuccess;
}

inline cudaError_t cudaMalloc(void **p, size_t bytes) {
    lathe::emu::DeviceMemory &m = lathe::emu::deviceMemory();
    std::lock_guard<std::mutex> lock(m.mutex);
    *p = nullptr;
    if (m.current + bytes > m.limit)
        return cudaErrorMemoryAllocation;
    *p = lathe::emu::allocateAligned(bytes);
    if (!*p)
        return cudaErrorMemoryAllocation;
    m.sizes[*p] = bytes;
    m.current += bytes;
    m.peak = std::max(m.peak, m.current);
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) {
    if (!p)
        return cudaSuccess;
    {
        lathe::emu::DeviceMemory &m = lathe::emu::deviceMemory();
        std::lock_guard<std::mutex> lock(m.mutex);
        const auto it = m.sizes.find(p);
        if (it == m.sizes.end())
            return cudaErrorInvalidValue;
        m.current -= it->second;
        m.sizes.erase(it);
    }
    lathe::emu::freeAligned(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = lathe::emu::allocateAligned(bytes);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeHost(void *p) {
    if (p)
        lathe::emu::freeAligned(p);
    return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void *to, const void *from, size_t bytes, cudaMemcpyKind) {
    if (bytes)
        std::memmove(to, from, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *to, const void *from, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
    return cudaMemcpy(to, from, bytes, kind);
}
inline cudaError_t cudaMemcpy2DAsync(void *to, size_t toPitch, const void *from, size_t fromPitch, size_t width,
                                     size_t height, cudaMemcpyKind, cudaStream_t = nullptr) {
    if (width > toPitch || width > fromPitch)
        return cudaErrorInvalidValue;
    for (size_t r = 0; r < height; ++r)
        std::memmove(static_cast<char *>(to) + r * toPitch, static_cast<const char *>(from) + r * fromPitch, width);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    if (bytes)
        std::memset(p, value, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t = nullptr) {
    return cudaMemset(p, value, bytes);
}

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
// Up to 227 KiB, the most a block may have (sm_90).
template <class K> cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int value) {
    return value >= 0 && value <= 227 * 1024 ? cudaSuccess : cudaErrorInvalidValue;
}

struct CUevent_emulated {
    std::chrono::steady_clock::time_point at;
};
using cudaEvent_t = CUevent_emulated *;
inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_emulated;
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
    e->at = std::chrono::steady_clock::now();
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t stop) {
    *ms = std::chrono::duration<float, std::milli>(stop->at - start->at).count();
    return cudaSuccess;
}

// ---- cuBLAS ----

enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
inline const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (emulated)";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (emulated)";
    }
    return "cuBLAS error (emulated)";
}
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0 };
struct cublasContext {
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
using cublasHandle_t = cublasContext *;
inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}

namespace lathe::emu {

// Where element (row, col) of op(X) lies in the column-major X with leading dimension ld.
inline int64_t opAt(cublasOperation_t op, int64_t row, int64_t col, int ld) {
    return op == CUBLAS_OP_N ? row + col * ld : col + row * ld;
}

inline double elementOf(const void *base, cudaDataType_t type, int64_t i) {
    switch (type) {
    case CUDA_R_16BF: return emulatedBf16ToFloat(static_cast<const __nv_bfloat16 *>(base)[i]);
    case CUDA_R_16F: return double(static_cast<const __half *>(base)[i].value);
    case CUDA_R_64F: return static_cast<const double *>(base)[i];
    case CUDA_R_32F: break;
    }
    return static_cast<const float *>(base)[i];
}

// C = alpha op(A) op(B) + beta C, column-major, as cuBLAS: fp32, bf16 or fp16 operands into fp32 C or C of their own
// type (cublasGemmEx with fp32 compute, cublasSgemm), or all fp64 (cublasDgemm); beta = 0 ignores C's values (NaN
// included), as cuBLAS does. The argument checks are cuBLAS's: leading dimensions at least the rows stored.
inline cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, double alpha,
                           const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb,
                           double beta, void *C, cudaDataType_t ct, int ldc) {
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
        ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    const bool fp64 = at == CUDA_R_64F && bt == at && ct == at;
    if (!fp64 && ((ct != CUDA_R_32F && ct != at) || at == CUDA_R_64F || bt != at))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    // op(A)'s rows and op(B)'s columns gathered into contiguous doubles (k values each), so that every output is a
    // dot product of two contiguous rows.
    std::vector<double> a(size_t(m) * size_t(k)), b(size_t(n) * size_t(k));
    for (int i = 0; i < m; ++i)
        for (int l = 0; l < k; ++l)
            a[size_t(i) * k + l] = elementOf(A, at, opAt(ta, i, l, lda));
    for (int j = 0; j < n; ++j)
        for (int l = 0; l < k; ++l)
            b[size_t(j) * k + l] = elementOf(B, bt, opAt(tb, l, j, ldb));
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            const double *x = a.data() + size_t(i) * k, *y = b.data() + size_t(j) * k;
            double s = 0;
            for (int l = 0; l < k; ++l)
                s += x[l] * y[l];
            const int64_t c = i + int64_t(j) * ldc;
            const double v = alpha * s + (beta == 0.0 ? 0.0 : beta * elementOf(C, ct, c));
            switch (ct) {
            case CUDA_R_64F: static_cast<double *>(C)[c] = v; break;
            case CUDA_R_16BF: static_cast<__nv_bfloat16 *>(C)[c] = __float2bfloat16_rn(float(v)); break;
            case CUDA_R_16F: static_cast<__half *>(C)[c] = __float2half_rn(float(v)); break;
            case CUDA_R_32F: static_cast<float *>(C)[c] = float(v); break;
            }
        }
    return CUBLAS_STATUS_SUCCESS;
}

inline size_t elementBytes(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_16F ? 2 : 4; }

} // namespace lathe::emu

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                                   cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                                   cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (compute != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return lathe::emu::gemm(ta, tb, m, n, k, *static_cast<const float *>(alpha), A, at, lda, B, bt, ldb,
                            *static_cast<const float *>(beta), C, ct, ldc);
}
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                                                 int lda, long long strideA, const void *B, cudaDataType_t bt, int ldb,
                                                 long long strideB, const void *beta, void *C, cudaDataType_t ct,
                                                 int ldc, long long strideC, int count, cublasComputeType_t compute,
                                                 cublasGemmAlgo_t algo) {
    if (count < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    using lathe::emu::elementBytes;
    for (int i = 0; i < count; ++i) {
        const cublasStatus_t s = cublasGemmEx(
            h, ta, tb, m, n, k, alpha, static_cast<const char *>(A) + i * strideA * elementBytes(at), at, lda,
            static_cast<const char *>(B) + i * strideB * elementBytes(bt), bt, ldb, beta,
            static_cast<char *>(C) + i * strideC * elementBytes(ct), ct, ldc, compute, algo);
        if (s != CUBLAS_STATUS_SUCCESS)
            return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *const A[], cudaDataType_t at, int lda,
                                          const void *const B[], cudaDataType_t bt, int ldb, const void *beta,
                                          void *const C[], cudaDataType_t ct, int ldc, int count,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (count < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < count; ++i) {
        const cublasStatus_t s =
            cublasGemmEx(h, ta, tb, m, n, k, alpha, A[i], at, lda, B[i], bt, ldb, beta, C[i], ct, ldc, compute, algo);
        if (s != CUBLAS_STATUS_SUCCESS)
            return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float *alpha, const float *A, int lda, const float *B, int ldb,
                                  const float *beta, float *C, int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    return lathe::emu::gemm(ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, CUDA_R_32F, ldc);
}
inline cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double *alpha, const double *A, int lda, const double *B, int ldb,
                                  const double *beta, double *C, int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    return lathe::emu::gemm(ta, tb, m, n, k, *alpha, A, CUDA_R_64F, lda, B, CUDA_R_64F, ldb, *beta, C, CUDA_R_64F, ldc);
}
// C = alpha op(A) + beta op(B), column-major (m x n); C may be B (then ldb = ldc and op(B) = B, as cuBLAS requires).
inline cublasStatus_t cublasSgeam(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                  const float *alpha, const float *A, int lda, const float *beta, const float *B,
                                  int ldb, float *C, int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || lda < std::max(1, ta == CUBLAS_OP_N ? m : n) ||
        ldb < std::max(1, tb == CUBLAS_OP_N ? m : n) || ldc < std::max(1, m) ||
        (C == B && (ldb != ldc || tb != CUBLAS_OP_N)))
        return CUBLAS_STATUS_INVALID_VALUE;
    std::vector<float> out(size_t(m) * size_t(n));
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i)
            out[size_t(i) + size_t(j) * m] = *alpha * A[lathe::emu::opAt(ta, i, j, lda)] +
                                             (*beta == 0.0f ? 0.0f : *beta * B[lathe::emu::opAt(tb, i, j, ldb)]);
    for (int j = 0; j < n; ++j)
        std::memcpy(C + int64_t(j) * ldc, out.data() + size_t(j) * m, size_t(m) * sizeof(float));
    return CUBLAS_STATUS_SUCCESS;
}
enum cublasFillMode_t { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 };
// C = alpha op(A) op(A)^T + beta C on C's `uplo` triangle only (n x n); op(A) is n x k (A itself k x n for OP_T).
inline cublasStatus_t cublasDsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                                  const double *alpha, const double *A, int lda, const double *beta, double *C,
                                  int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (n < 0 || k < 0 || lda < std::max(1, trans == CUBLAS_OP_N ? n : k) || ldc < std::max(1, n))
        return CUBLAS_STATUS_INVALID_VALUE;
    const auto a = [&](int i, int l) { return A[lathe::emu::opAt(trans, i, l, lda)]; };
    for (int j = 0; j < n; ++j)
        for (int i = uplo == CUBLAS_FILL_MODE_LOWER ? j : 0; i < (uplo == CUBLAS_FILL_MODE_LOWER ? n : j + 1); ++i) {
            double s = 0;
            for (int l = 0; l < k; ++l)
                s += a(i, l) * a(j, l);
            double &out = C[i + int64_t(j) * ldc];
            out = *alpha * s + (*beta == 0.0 ? 0.0 : *beta * out);
        }
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuSOLVER: the two solvers the backend calls, through Eigen in double ----

enum cusolverStatus_t {
    CUSOLVER_STATUS_SUCCESS = 0,
    CUSOLVER_STATUS_NOT_INITIALIZED = 1,
    CUSOLVER_STATUS_ALLOC_FAILED = 2,
    CUSOLVER_STATUS_INVALID_VALUE = 3,
    CUSOLVER_STATUS_ARCH_MISMATCH = 4,
    CUSOLVER_STATUS_EXECUTION_FAILED = 6,
    CUSOLVER_STATUS_INTERNAL_ERROR = 7,
    CUSOLVER_STATUS_NOT_SUPPORTED = 9,
};
struct cusolverDnContext {};
using cusolverDnHandle_t = cusolverDnContext *;
inline cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *h) {
    *h = new cusolverDnContext;
    return CUSOLVER_STATUS_SUCCESS;
}

enum cusolverEigMode_t { CUSOLVER_EIG_MODE_NOVECTOR = 0, CUSOLVER_EIG_MODE_VECTOR = 1 };
inline cusolverStatus_t cusolverDnDsyevd_bufferSize(cusolverDnHandle_t h, cusolverEigMode_t, cublasFillMode_t, int n,
                                                    const double *, int lda, const double *, int *lwork) {
    if (!h)
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (n < 0 || lda < std::max(1, n))
        return CUSOLVER_STATUS_INVALID_VALUE;
    *lwork = 1;
    return CUSOLVER_STATUS_SUCCESS;
}
// Eigenvalues of the symmetric (n x n) A, read from its `uplo` triangle, ascending into W; with vectors, A's columns
// become the eigenvectors (without, A is left overwritten, as cuSOLVER leaves it). *info: 0, or > 0 when the
// iteration did not converge.
inline cusolverStatus_t cusolverDnDsyevd(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,
                                         double *A, int lda, double *W, double *, int lwork, int *info) {
    if (!h)
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (n < 0 || lda < std::max(1, n) || lwork < 1)
        return CUSOLVER_STATUS_INVALID_VALUE;
    Eigen::MatrixXd a(n, n);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            const bool stored = uplo == CUBLAS_FILL_MODE_LOWER ? i >= j : i <= j;
            a(i, j) = stored ? A[i + int64_t(j) * lda] : A[j + int64_t(i) * lda];
        }
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(
        a, jobz == CUSOLVER_EIG_MODE_VECTOR ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
    *info = solver.info() == Eigen::Success ? 0 : 1;
    for (int i = 0; i < n; ++i)
        W[i] = solver.eigenvalues()[i];
    if (jobz == CUSOLVER_EIG_MODE_VECTOR)
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < n; ++i)
                A[i + int64_t(j) * lda] = solver.eigenvectors()(i, j);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnSgesvd_bufferSize(cusolverDnHandle_t h, int m, int n, int *lwork) {
    if (!h)
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (m < n || n < 0)
        return CUSOLVER_STATUS_INVALID_VALUE;
    *lwork = 1;
    return CUSOLVER_STATUS_SUCCESS;
}
// Singular values only (jobu = jobvt = 'N', all the backend asks for), descending into S; m >= n as cuSOLVER
// requires. Computed in double and rounded.
inline cusolverStatus_t cusolverDnSgesvd(cusolverDnHandle_t h, signed char jobu, signed char jobvt, int m, int n,
                                         float *A, int lda, float *S, float *, int, float *, int, float *, int lwork,
                                         float *, int *info) {
    if (!h)
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (jobu != 'N' || jobvt != 'N')
        return CUSOLVER_STATUS_NOT_SUPPORTED;
    if (m < n || n < 0 || lda < std::max(1, m) || lwork < 1)
        return CUSOLVER_STATUS_INVALID_VALUE;
    Eigen::MatrixXd a(m, n);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i)
            a(i, j) = A[i + int64_t(j) * lda];
    const Eigen::BDCSVD<Eigen::MatrixXd> svd(a);
    *info = svd.info() == Eigen::Success ? 0 : 1;
    for (int i = 0; i < n; ++i)
        S[i] = float(svd.singularValues()[i]);
    return CUSOLVER_STATUS_SUCCESS;
}
