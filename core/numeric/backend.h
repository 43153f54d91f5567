#pragma once

#include "base/dtype.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

struct DeviceInfo {
    std::string name;         // "CPU (2 threads)" or the GPU's name
    uint64_t totalMemory = 0; // bytes; 0 where unknown
    int computeMajor = 0;     // CUDA compute capability, 0 for the CPU
    int computeMinor = 0;
    int index = -1;           // the GPU's ordinal (cuda:N); -1 for the CPU
    std::string label() const; // "cuda:0 NVIDIA H200 (139.8 GiB)" or the CPU's name
};

// The engine's view of a compute device. core/ implements the CPU reference; gpu/ implements CUDA behind the same
// interface and registers its platform (GpuPlatform below) at program start, so core never includes CUDA.
// Grows with the engine (GEMM, norms, attention); every GPU operation has a CPU reference it is tested against.
// Higher layers reach device implementations of their own interfaces (the GPU forward pass, SliceGPT's GPU engine)
// through service(): they share the device's context (one set of library handles per device and thread).
class ComputeBackend {
public:
    virtual ~ComputeBackend() = default;
    virtual std::string name() const = 0; // "cpu" or "cuda"
    virtual DeviceInfo device() const = 0;
    // Converts `elems` elements stored as `type` (host memory) into fp32 (host memory). Same contract as
    // dequantizeCpu(); results are bit-identical to it.
    virtual void dequantize(DType type, const void *src, size_t elems, float *dst) = 0;
    // Same contract as lathe::symmetricEigen (core/linalg.h): eigenvalues descending, eigenvectors as the columns
    // of a row-major (n x n) matrix. CPU: LAPACK dsyevd; CUDA: cuSOLVER dsyevd. SliceGPT's PCA.
    virtual void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                                std::vector<double> *vectors) = 0;
    // Same contract as lathe::singularValues: min(rows, cols) singular values of a row-major fp32 matrix,
    // descending. CPU: LAPACK sgesdd; CUDA: cuSOLVER sgesvd. The spectra views.
    virtual std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) = 0;
    // The device's implementation of a higher layer's interface, by the key that interface declares
    // (kServiceKey); null when the device has none (the CPU has none). Use deviceService<T>().
    virtual void *service(const std::string &key) {
        (void)key;
        return nullptr;
    }
};

// The implementation of interface T (which declares `static constexpr const char *kServiceKey`) on `device`, or null.
template <class T> T *deviceService(ComputeBackend &device) { return static_cast<T *>(device.service(T::kServiceKey)); }

enum class DevicePreference { Auto, Cpu, Cuda };

// Where work runs, as the user names it: "auto" (a GPU when one is usable), "cpu", "cuda" (GPU 0), "cuda:N";
// "gpu" means "cuda".
struct DeviceChoice {
    DevicePreference preference = DevicePreference::Auto;
    int index = 0; // the GPU's ordinal for Cuda
    // LatheError naming the accepted forms.
    static DeviceChoice parse(const std::string &text);
    std::string text() const; // "auto", "cpu", "cuda:1"
};

// The GPU side as core sees it: one object, absent in a build without CUDA. It replaces per-feature factories: the
// forward pass and SliceGPT's engine are services of a GPU's backend. The CUDA backend is a plugin
// (liblathe_gpu.so, gpu/), loaded the first time a program asks about GPUs, so that a program that never asks
// (inspect, the CPU path, a call that fails at once) never maps the CUDA libraries, which cost ~250 MB of resident
// memory at load, and so that the programs run on machines without them. It is looked for in $LATHE_GPU_PLUGIN,
// beside the executable, and in ../lib/lathe/ from it; without the NVIDIA driver it is not loaded at all, unless
// $LATHE_GPU_PLUGIN names it (tst_emulatedgpu's plugin of an emulated device needs no driver). A program may instead
// register a platform linked in (registerGpuPlatform: the GPU test links the backend statically).
class GpuPlatform {
public:
    virtual ~GpuPlatform() = default;
    // The usable GPUs in ordinal order; empty, with the reason in `whyNone`, when there is none.
    virtual std::vector<DeviceInfo> devices(std::string *whyNone) const = 0;
    // The backend of GPU `index`. All backends of one device share its context (one set of cuBLAS/cuSOLVER
    // handles per thread). LatheError when there is no such usable device.
    virtual std::unique_ptr<ComputeBackend> backend(int index) const = 0;
};
void registerGpuPlatform(const GpuPlatform *platform);
// The plugin's entry points: `const GpuPlatform *lathe_gpu_platform(int abi, const std::shared_ptr<spdlog::logger>
// *logger)` (null when `abi` is not its kGpuPluginAbi; its log lines go to the program's logger, also where spdlog
// is header-only and the plugin has a registry of its own) and `void lathe_gpu_self_checks(const std::string *sourceDir, std::vector<GpuSelfCheck> *out)`.
// The ABI number changes with GpuPlatform, ComputeBackend, the services' interfaces or GpuSelfCheck.
constexpr int kGpuPluginAbi = 1;
// A GPU platform is there: registered, or its plugin found (not loaded: gpuDevices loads it where the NVIDIA
// driver is). `where` receives the plugin's path, or why there is none.
bool gpuBackendCompiled(std::string *where = nullptr);

// One comparison of a GPU path with its CPU reference (lathe-cli check-gpu, tst_gpu).
struct GpuSelfCheck {
    std::string name;   // "forward fp32 llama", "cusolver dsyevd", ...
    bool passed = false;
    double error = 0;   // the measured error, in the unit the tolerance states
    double tolerance = 0;
    std::string detail; // what was compared, or why it failed
};
// The plugin's GPU-vs-CPU checks on the repository's fixtures under `sourceDir` (gpu/gpuselfcheck.h);
// LatheError without the plugin or a usable GPU.
std::vector<GpuSelfCheck> runGpuSelfChecks(const std::string &sourceDir);
// The usable GPUs (asked once per process, then cached), with the reason when there is none.
const std::vector<DeviceInfo> &gpuDevices(std::string *whyNone = nullptr);
// Some GPU is usable here: what jobs use to pick their lane.
bool gpuUsable();

std::unique_ptr<ComputeBackend> makeCpuBackend();

// Auto: GPU 0 when one is usable, else the CPU (with the reason in `note`). Cuda: GPU `index` or a LatheError that
// says why not (the hint lists the GPUs there are). Cpu: the CPU.
std::unique_ptr<ComputeBackend> createBackend(const DeviceChoice &choice, std::string *note = nullptr);
inline std::unique_ptr<ComputeBackend> createBackend(DevicePreference preference, std::string *note = nullptr) {
    return createBackend(DeviceChoice{preference, 0}, note);
}

} // namespace lathe
