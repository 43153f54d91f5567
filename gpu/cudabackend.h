#pragma once

// Entry points of the CUDA backend; plain C++ so that callers need no CUDA headers.
namespace lathe {
class GpuPlatform; // numeric/backend.h
}

namespace lathe::gpu {

// The CUDA platform: its GPUs, their backends and, as services of a backend, the forward pass and SliceGPT's
// engine. Programs reach it through the plugin (gpu/gpuplugin.cpp, loaded by core on demand).
const GpuPlatform &cudaPlatform();
// Registers the platform with core directly (registerGpuPlatform), for a program that links the backend
// statically (the GPU test). Call once at program start.
void registerCudaBackend();

} // namespace lathe::gpu
