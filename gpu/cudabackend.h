#pragma once

// Entry point of the CUDA backend; plain C++ so that app/ can call it without CUDA headers.
namespace lathe::gpu {

// Registers the CUDA backend factory with core (setGpuBackendFactory). Call once at program start.
void registerCudaBackend();

} // namespace lathe::gpu
