#pragma once

// One checking macro for every CUDA runtime / cuBLAS / cuSOLVER call: a failure throws LatheError with the call,
// the error's name and file:line. Only included by .cu files in gpu/.

#include "../core/error.h"

#include <cuda_runtime.h>

#include <string>

namespace lathe::gpu {

[[noreturn]] inline void throwCudaError(const char *call, const char *what, const char *file, int line) {
    throw LatheError(std::string("CUDA call ") + call + " failed: " + what + " at " + file + ":" + std::to_string(line),
                     "check the GPU driver and free GPU memory, or run with --device cpu");
}

inline const char *statusString(cudaError_t e) { return cudaGetErrorString(e); }

} // namespace lathe::gpu

#define LATHE_CUDA_CHECK(call)                                                                                         \
    do {                                                                                                               \
        const auto lathe_status_ = (call);                                                                             \
        if (lathe_status_ != decltype(lathe_status_)(0))                                                               \
            ::lathe::gpu::throwCudaError(#call, ::lathe::gpu::statusString(lathe_status_), __FILE__, __LINE__);        \
    } while (0)
