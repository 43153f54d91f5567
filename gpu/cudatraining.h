#pragma once

#include <memory>

namespace lathe {
enum class ComputePrecision;
namespace train {
class DeviceTrainer;
template <class T> class AdamW;
template <class T> class CausalLm;
} // namespace train
} // namespace lathe

namespace lathe::gpu {

class GpuContext;

// The GPU training step (core/train/devicetraining.h) on the context's device, with the calling thread's cuBLAS
// handle; what a GPU backend's DeviceTrainingService returns. LatheError for what it does not run.
std::unique_ptr<train::DeviceTrainer> makeCudaTrainer(GpuContext &ctx, const train::CausalLm<float> &model,
                                                      const train::AdamW<float> &optimizer,
                                                      ComputePrecision precision);

} // namespace lathe::gpu
