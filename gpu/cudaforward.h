#pragma once

#include <memory>

namespace lathe {
class DeviceForward;
class Model;
struct DeviceForwardOptions;
} // namespace lathe

namespace lathe::gpu {

class GpuContext;

// The CUDA forward pass (core/engine/deviceforward.h) on the context's device, with the calling thread's cuBLAS
// handle; what a GPU backend's DeviceForwardService returns.
std::unique_ptr<DeviceForward> makeCudaForward(GpuContext &ctx, const Model &model, const DeviceForwardOptions &options);

} // namespace lathe::gpu
