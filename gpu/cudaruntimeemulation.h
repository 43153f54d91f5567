#pragma once

// The CUDA runtime, cuBLAS and cuSOLVER calls the GPU trainer makes, emulated on the host for tests on machines
// without a GPU (tests/tst_gputrainer.cpp; the kernels run through cudaemulation.h). The "device" is host memory:
// cudaMalloc is an aligned allocation and every copy a memcpy; work runs when it is launched, so synchronizing waits
// for nothing and events hold host times. cuBLAS's GEMMs are column-major reference loops accumulating in double
// (cuBLAS accumulates in fp32: the checks' tolerances cover either) over fp32 or bf16 operands, with cuBLAS's
// argument checks. cuSOLVER is only a handle (the trainer does not use it). Included through emulation/'s
// cuda_runtime.h, cublas_v2.h and cusolverDn.h, which stand in for the toolkit's in that test only.

#include "cudaemulation.h"

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

inline float elementOf(const void *base, cudaDataType_t type, int64_t i) {
    if (type == CUDA_R_16BF)
        return emulatedBf16ToFloat(static_cast<const __nv_bfloat16 *>(base)[i]);
    return static_cast<const float *>(base)[i];
}

// C = alpha op(A) op(B) + beta C, column-major, as cublasGemmEx with fp32 C and compute; beta = 0 ignores C's
// values (NaN included), as cuBLAS does. The argument checks are cuBLAS's: leading dimensions at least the rows
// stored.
inline cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *alpha,
                           const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb,
                           const float *beta, void *C, cudaDataType_t ct, int ldc) {
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
        ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (ct != CUDA_R_32F || (at != CUDA_R_32F && at != CUDA_R_16BF) || bt != at)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    // op(A)'s rows and op(B)'s columns gathered into contiguous fp32 (k values each), so that every output is a
    // dot product of two contiguous rows.
    std::vector<float> a(size_t(m) * size_t(k)), b(size_t(n) * size_t(k));
    for (int i = 0; i < m; ++i)
        for (int l = 0; l < k; ++l)
            a[size_t(i) * k + l] = elementOf(A, at, ta == CUBLAS_OP_N ? i + int64_t(l) * lda : l + int64_t(i) * lda);
    for (int j = 0; j < n; ++j)
        for (int l = 0; l < k; ++l)
            b[size_t(j) * k + l] = elementOf(B, bt, tb == CUBLAS_OP_N ? l + int64_t(j) * ldb : j + int64_t(l) * ldb);
    float *c = static_cast<float *>(C);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            const float *x = a.data() + size_t(i) * k, *y = b.data() + size_t(j) * k;
            double s = 0;
            for (int l = 0; l < k; ++l)
                s += double(x[l]) * double(y[l]);
            float &out = c[i + int64_t(j) * ldc];
            out = float(double(*alpha) * s + (*beta == 0.0f ? 0.0 : double(*beta) * double(out)));
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
    return lathe::emu::gemm(ta, tb, m, n, k, static_cast<const float *>(alpha), A, at, lda, B, bt, ldb,
                            static_cast<const float *>(beta), C, ct, ldc);
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

// ---- cuSOLVER: a handle only ----

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
