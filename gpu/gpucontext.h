#pragma once

// One context per GPU for the whole process: the device's properties and one cuBLAS and one cuSOLVER handle per
// thread that uses the device, created on first use. Every user of a device (the backend's solvers and
// dequantization, the forward pass, SliceGPT's engine) takes its handles here, so a process holds one set per
// device and thread instead of one per object. Included by .cu files only.

#include "cudacheck.h"

#include "numeric/backend.h"

#include <map>
#include <mutex>
#include <thread>

namespace lathe::gpu {

class GpuContext {
public:
    // The context of GPU `index` (created on first use); LatheError when there is no such device.
    static GpuContext &forDevice(int index);

    int device() const { return m_device; }
    const cudaDeviceProp &properties() const { return m_props; }
    DeviceInfo info() const;
    // Makes the device current on the calling thread (every entry point that launches work calls it).
    void activate() const;
    // The calling thread's handles for this device. cuBLAS runs in the default (pedantic fp32, no TF32) math mode,
    // so fp32 results can be checked tightly against the CPU.
    cublasHandle_t blas();
    cusolverDnHandle_t solver();

    GpuContext(const GpuContext &) = delete;
    GpuContext &operator=(const GpuContext &) = delete;

private:
    explicit GpuContext(int device);
    // Contexts live until the process ends and their handles are not destroyed: at exit the CUDA runtime may
    // already be torn down, and destroying handles then can crash.
    ~GpuContext() = default;

    int m_device;
    cudaDeviceProp m_props{};
    std::mutex m_mutex;
    std::map<std::thread::id, cublasHandle_t> m_blas;
    std::map<std::thread::id, cusolverDnHandle_t> m_solver;
};

} // namespace lathe::gpu
