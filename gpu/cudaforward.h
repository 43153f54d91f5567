#pragma once

namespace lathe::gpu {

// Registers the CUDA forward pass (core/deviceforward.h) with core; registerCudaBackend() calls it.
void registerCudaForward();

} // namespace lathe::gpu
