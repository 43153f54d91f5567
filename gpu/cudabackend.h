#pragma once

// Entry point of the CUDA backend; plain C++ so that app/ can call it without CUDA headers.
namespace lathe::gpu {

// Registers the CUDA platform with core (registerGpuPlatform): its GPUs, their backends and, as services of a
// backend, the forward pass and SliceGPT's engine. Call once at program start.
void registerCudaBackend();

} // namespace lathe::gpu
