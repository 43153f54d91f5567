#include "numeric/backend.h"

#include "base/error.h"
#include "numeric/dequantize.h"
#include "numeric/linalg.h"

#include <thread>

namespace lathe {

namespace {

GpuBackendFactory g_gpuFactory = nullptr;

class CpuBackend final : public ComputeBackend {
public:
    std::string name() const override { return "cpu"; }
    DeviceInfo device() const override {
        return {"CPU (" + std::to_string(std::thread::hardware_concurrency()) + " threads)", 0, 0, 0};
    }
    void dequantize(DType type, const void *src, size_t elems, float *dst) override {
        dequantizeCpu(type, src, elems, dst);
    }
    void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                        std::vector<double> *vectors) override {
        lathe::symmetricEigen(a, n, values, vectors);
    }
    std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) override {
        return lathe::singularValues(a, rows, cols);
    }
};

} // namespace

void setGpuBackendFactory(GpuBackendFactory factory) { g_gpuFactory = factory; }
bool gpuBackendCompiled() { return g_gpuFactory != nullptr; }

bool gpuUsable() {
    static const bool usable = [] {
        if (!g_gpuFactory)
            return false;
        std::string why;
        return g_gpuFactory(&why) != nullptr;
    }();
    return usable;
}

std::unique_ptr<ComputeBackend> makeCpuBackend() { return std::make_unique<CpuBackend>(); }

std::unique_ptr<ComputeBackend> createBackend(DevicePreference preference, std::string *note) {
    if (preference == DevicePreference::Cpu)
        return makeCpuBackend();
    std::string why = "this build has no CUDA backend";
    if (g_gpuFactory) {
        why.clear();
        if (auto gpu = g_gpuFactory(&why))
            return gpu;
    }
    if (preference == DevicePreference::Cuda)
        throw LatheError("no usable CUDA device: " + why, "run with --device cpu");
    if (note)
        *note = "using the CPU: " + why;
    return makeCpuBackend();
}

} // namespace lathe
