#pragma once

#include "dtype.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lathe {

struct DeviceInfo {
    std::string name;         // "CPU (2 threads)" or the GPU's name
    uint64_t totalMemory = 0; // bytes; 0 where unknown
    int computeMajor = 0;     // CUDA compute capability, 0 for the CPU
    int computeMinor = 0;
};

// The engine's view of a compute device. core/ implements the CPU reference; gpu/ implements CUDA behind the same
// interface and registers itself with setGpuBackendFactory() at program start, so core never includes CUDA.
// Grows with the engine (GEMM, norms, attention); every GPU operation has a CPU reference it is tested against.
class ComputeBackend {
public:
    virtual ~ComputeBackend() = default;
    virtual std::string name() const = 0; // "cpu" or "cuda"
    virtual DeviceInfo device() const = 0;
    // Converts `elems` elements stored as `type` (host memory) into fp32 (host memory). Same contract as
    // dequantizeCpu(); results are bit-identical to it.
    virtual void dequantize(DType type, const void *src, size_t elems, float *dst) = 0;
};

enum class DevicePreference { Auto, Cpu, Cuda };

// A GPU backend factory returns nullptr and says why in `whyNot` when no usable device is present.
using GpuBackendFactory = std::unique_ptr<ComputeBackend> (*)(std::string *whyNot);
void setGpuBackendFactory(GpuBackendFactory factory);
bool gpuBackendCompiled(); // a factory was registered (the build has CUDA)

std::unique_ptr<ComputeBackend> makeCpuBackend();

// Auto: the GPU when one is usable, else the CPU (with the reason in `note`). Cuda: the GPU or a LatheError
// that says why not. Cpu: the CPU.
std::unique_ptr<ComputeBackend> createBackend(DevicePreference preference, std::string *note = nullptr);

} // namespace lathe
