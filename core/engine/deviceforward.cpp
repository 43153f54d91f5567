#include "engine/deviceforward.h"

#include "base/error.h"

namespace lathe {

namespace {
DeviceForwardFactory g_factory = nullptr;
}

const char *precisionName(ComputePrecision p) {
    switch (p) {
    case ComputePrecision::Fp32: return "fp32";
    case ComputePrecision::Bf16: return "bf16";
    case ComputePrecision::Fp16: return "fp16";
    }
    return "?";
}

ComputePrecision parsePrecision(const std::string &name) {
    if (name == "fp32" || name == "float32")
        return ComputePrecision::Fp32;
    if (name == "bf16" || name == "bfloat16")
        return ComputePrecision::Bf16;
    if (name == "fp16" || name == "float16")
        return ComputePrecision::Fp16;
    throw LatheError("unknown precision '" + name + "'", "use fp32, bf16 or fp16");
}

void setDeviceForwardFactory(DeviceForwardFactory factory) { g_factory = factory; }
bool deviceForwardCompiled() { return g_factory != nullptr; }

std::unique_ptr<DeviceForward> createDeviceForward(const Model &model, const DeviceForwardOptions &options) {
    if (!g_factory)
        throw LatheError("this build has no CUDA backend, so the forward pass cannot run on a GPU",
                         "use --device cpu, or rebuild with the CUDA toolkit installed");
    return g_factory(model, options);
}

} // namespace lathe
