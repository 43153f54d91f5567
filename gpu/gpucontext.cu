#include "gpucontext.h"

#include <memory>
#include <vector>

namespace lathe::gpu {

GpuContext &GpuContext::forDevice(int index) {
    static std::mutex mutex;
    // Never freed, nor the map (so the contexts stay reachable until the process ends): see ~GpuContext.
    static auto *contexts = new std::map<int, GpuContext *>;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = contexts->find(index);
    if (it != contexts->end())
        return *it->second;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || index < 0 || index >= count) {
        cudaGetLastError(); // clear the sticky error so later calls are not confused
        throw LatheError("there is no usable CUDA device " + std::to_string(index) +
                             (e != cudaSuccess ? std::string(" (") + cudaGetErrorString(e) + ")"
                                               : " (" + std::to_string(count) + " present)"),
                         "lathe-cli devices lists the GPUs; or run with --device cpu");
    }
    auto *ctx = new GpuContext(index);
    contexts->emplace(index, ctx);
    return *ctx;
}

GpuContext::GpuContext(int device) : m_device(device) {
    LATHE_CUDA_CHECK(cudaGetDeviceProperties(&m_props, device));
}

DeviceInfo GpuContext::info() const {
    DeviceInfo d;
    d.name = m_props.name;
    d.totalMemory = uint64_t(m_props.totalGlobalMem);
    d.computeMajor = m_props.major;
    d.computeMinor = m_props.minor;
    d.index = m_device;
    return d;
}

void GpuContext::activate() const { LATHE_CUDA_CHECK(cudaSetDevice(m_device)); }

cublasHandle_t GpuContext::blas() {
    activate();
    std::lock_guard<std::mutex> lock(m_mutex);
    cublasHandle_t &h = m_blas[std::this_thread::get_id()];
    if (!h) {
        LATHE_CUDA_CHECK(cublasCreate(&h));
        LATHE_CUDA_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    }
    return h;
}

cusolverDnHandle_t GpuContext::solver() {
    activate();
    std::lock_guard<std::mutex> lock(m_mutex);
    cusolverDnHandle_t &h = m_solver[std::this_thread::get_id()];
    if (!h)
        LATHE_CUDA_CHECK(cusolverDnCreate(&h));
    return h;
}

} // namespace lathe::gpu
