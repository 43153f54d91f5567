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
    // Same contract as lathe::symmetricEigen (core/linalg.h): eigenvalues descending, eigenvectors as the columns
    // of a row-major (n x n) matrix. CPU: LAPACK dsyevd; CUDA: cuSOLVER dsyevd. SliceGPT's PCA.
    virtual void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                                std::vector<double> *vectors) = 0;
    // Same contract as lathe::singularValues: min(rows, cols) singular values of a row-major fp32 matrix,
    // descending. CPU: LAPACK sgesdd; CUDA: cuSOLVER sgesvd. The spectra views.
    virtual std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) = 0;
};

enum class DevicePreference { Auto, Cpu, Cuda };

// A GPU backend factory returns nullptr and says why in `whyNot` when no usable device is present.
using GpuBackendFactory = std::unique_ptr<ComputeBackend> (*)(std::string *whyNot);
void setGpuBackendFactory(GpuBackendFactory factory);
bool gpuBackendCompiled(); // a factory was registered (the build has CUDA)
// A GPU backend can be created here (checked once per process, then cached): what jobs use to pick their lane.
bool gpuUsable();

std::unique_ptr<ComputeBackend> makeCpuBackend();

// Auto: the GPU when one is usable, else the CPU (with the reason in `note`). Cuda: the GPU or a LatheError
// that says why not. Cpu: the CPU.
std::unique_ptr<ComputeBackend> createBackend(DevicePreference preference, std::string *note = nullptr);

} // namespace lathe
