#pragma once

namespace lathe::gpu {

// Registers the CUDA SliceGPT engine (core/methods/slicegptengine.h) with core; registerCudaBackend() calls it.
void registerCudaSliceGpt();

} // namespace lathe::gpu
