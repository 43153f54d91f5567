#include "numeric/backend.h"

#include "base/error.h"
#include "numeric/dequantize.h"
#include "numeric/linalg.h"

#include <charconv>
#include <cstdio>
#include <thread>

namespace lathe {

namespace {

const GpuPlatform *g_platform = nullptr;

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

std::string DeviceInfo::label() const {
    if (index < 0)
        return name;
    char mem[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB", double(totalMemory) / double(1ull << 30));
    return "cuda:" + std::to_string(index) + " " + name + " (" + mem + ")";
}

DeviceChoice DeviceChoice::parse(const std::string &text) {
    if (text.empty() || text == "auto")
        return {DevicePreference::Auto, 0};
    if (text == "cpu")
        return {DevicePreference::Cpu, 0};
    if (text == "cuda" || text == "gpu")
        return {DevicePreference::Cuda, 0};
    for (const char *prefix : {"cuda:", "gpu:"}) {
        const std::string p(prefix);
        if (text.rfind(p, 0) != 0)
            continue;
        const std::string digits = text.substr(p.size());
        int index = -1;
        const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
        if (!digits.empty() && err == std::errc() && end == digits.data() + digits.size() && index >= 0 && index < 1024)
            return {DevicePreference::Cuda, index};
    }
    throw LatheError("unknown device '" + text + "'", "use auto, cpu, cuda or cuda:N (lathe-cli devices lists the GPUs)");
}

std::string DeviceChoice::text() const {
    switch (preference) {
    case DevicePreference::Auto: return "auto";
    case DevicePreference::Cpu: return "cpu";
    case DevicePreference::Cuda: return "cuda:" + std::to_string(index);
    }
    return "auto";
}

void registerGpuPlatform(const GpuPlatform *platform) { g_platform = platform; }
bool gpuBackendCompiled() { return g_platform != nullptr; }

const std::vector<DeviceInfo> &gpuDevices(std::string *whyNone) {
    static std::string why = "this build has no CUDA backend";
    static const std::vector<DeviceInfo> devices = [] {
        if (!g_platform)
            return std::vector<DeviceInfo>{};
        why.clear();
        std::vector<DeviceInfo> d = g_platform->devices(&why);
        return d;
    }();
    if (whyNone)
        *whyNone = devices.empty() ? why : std::string();
    return devices;
}

bool gpuUsable() { return !gpuDevices().empty(); }

std::unique_ptr<ComputeBackend> makeCpuBackend() { return std::make_unique<CpuBackend>(); }

std::unique_ptr<ComputeBackend> createBackend(const DeviceChoice &choice, std::string *note) {
    if (choice.preference == DevicePreference::Cpu)
        return makeCpuBackend();
    std::string why;
    const std::vector<DeviceInfo> &gpus = gpuDevices(&why);
    if (gpus.empty()) {
        if (choice.preference == DevicePreference::Cuda)
            throw LatheError("no usable CUDA device: " + why, "run with --device cpu");
        if (note)
            *note = "using the CPU: " + why;
        return makeCpuBackend();
    }
    if (choice.index >= int(gpus.size())) {
        std::string list;
        for (const DeviceInfo &d : gpus)
            list += (list.empty() ? "" : ", ") + d.label();
        throw LatheError("there is no GPU " + choice.text() + " here", "the GPUs: " + list);
    }
    return g_platform->backend(choice.index);
}

} // namespace lathe
