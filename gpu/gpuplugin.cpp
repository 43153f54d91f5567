// The CUDA backend as a plugin (liblathe_gpu.so): core loads it the first time a program asks about GPUs
// (numeric/backend.h), so that programs which never ask do not map the CUDA libraries and run where they are
// absent. Only these two entry points are exported; everything else, the copy of core inside included, is local
// to the plugin (-Wl,--exclude-libs,ALL and hidden visibility).
#include "cudabackend.h"
#include "gpuselfcheck.h"
#include "numeric/backend.h"

#include <spdlog/spdlog.h>

#define LATHE_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

LATHE_PLUGIN_EXPORT const lathe::GpuPlatform *lathe_gpu_platform(int abi,
                                                                  const std::shared_ptr<spdlog::logger> *logger) {
    if (abi != lathe::kGpuPluginAbi)
        return nullptr;
    if (logger && *logger)
        spdlog::set_default_logger(*logger);
    // The plugin's own copy of core (createBackend in the self-checks) must know the platform too.
    lathe::gpu::registerCudaBackend();
    return &lathe::gpu::cudaPlatform();
}

// Exceptions (LatheError when no GPU is usable) reach the caller: both sides are C++ built together.
LATHE_PLUGIN_EXPORT void lathe_gpu_self_checks(const std::string *sourceDir, std::vector<lathe::GpuSelfCheck> *out) {
    lathe::gpu::registerCudaBackend();
    *out = lathe::gpu::runGpuSelfChecks(*sourceDir);
}
