#include "numeric/cpukernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace lathe::cpu {

namespace generic {
constexpr const char *kName = "x86-64";
#include "numeric/cpukernels.inc"
} // namespace generic

namespace avx2 {
extern const CpuKernels kKernels; // cpukernels_avx2.cpp; only defined in x86-64 builds
}

const CpuKernels &baselineCpuKernels() { return generic::kKernels; }

const CpuKernels &cpuKernels() {
#if defined(__x86_64__) && defined(LATHE_HAVE_AVX2_KERNELS)
    static const bool avx2 = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    if (avx2)
        return avx2::kKernels;
#endif
    return generic::kKernels;
}

} // namespace lathe::cpu
