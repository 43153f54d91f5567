#pragma once

#include <memory>

namespace lathe {
class Model;
class SliceGptEngine;
struct CalibrationSet;
struct SliceGptEngineOptions;
} // namespace lathe

namespace lathe::gpu {

class GpuContext;

// SliceGPT's CUDA engine (core/methods/slicegptengine.h) on the context's device, with the calling thread's cuBLAS
// handle; what a GPU backend's SliceGptEngineService returns.
std::unique_ptr<SliceGptEngine> makeCudaSliceGptEngine(GpuContext &ctx, const Model &model,
                                                       const CalibrationSet &calibration,
                                                       const SliceGptEngineOptions &options);

} // namespace lathe::gpu
