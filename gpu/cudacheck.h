#pragma once

// One checking macro for every CUDA runtime / cuBLAS / cuSOLVER call: a failure throws LatheError with the call,
// the error's name and file:line (statusString has one overload per library's status type). Only included by .cu files in gpu/.

#include "base/error.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <string>

namespace lathe::gpu {

[[noreturn]] inline void throwCudaError(const char *call, const char *what, const char *file, int line) {
    throw LatheError(std::string("CUDA call ") + call + " failed: " + what + " at " + file + ":" + std::to_string(line),
                     "check the GPU driver and free GPU memory, or run with --device cpu");
}

inline const char *statusString(cudaError_t e) { return cudaGetErrorString(e); }
inline const char *statusString(cublasStatus_t e) { return cublasGetStatusString(e); }
inline const char *statusString(cusolverStatus_t e) {
    switch (e) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED (out of GPU memory)";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
    }
}

} // namespace lathe::gpu

#define LATHE_CUDA_CHECK(call)                                                                                         \
    do {                                                                                                               \
        const auto lathe_status_ = (call);                                                                             \
        if (lathe_status_ != decltype(lathe_status_)(0))                                                               \
            ::lathe::gpu::throwCudaError(#call, ::lathe::gpu::statusString(lathe_status_), __FILE__, __LINE__);        \
    } while (0)
