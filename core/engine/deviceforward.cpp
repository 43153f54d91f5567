#include "engine/deviceforward.h"

#include "base/error.h"
#include "numeric/backend.h"

namespace lathe {

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

bool hasDeviceForward(ComputeBackend &device) { return deviceService<DeviceForwardService>(device) != nullptr; }

std::unique_ptr<DeviceForward> createDeviceForward(ComputeBackend &device, const Model &model,
                                                   const DeviceForwardOptions &options) {
    DeviceForwardService *service = deviceService<DeviceForwardService>(device);
    if (!service)
        throw LatheError("the forward pass cannot run on " + device.device().name + " as a device pass",
                         "use --device cpu (the CPU engine), or a build with the CUDA toolkit and a GPU");
    return service->create(model, options);
}

} // namespace lathe
