// Compiled with -mavx2 -mfma (core/CMakeLists.txt); only called when the CPU has both (cpuKernels()).
#include "numeric/cpukernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace lathe::cpu::avx2 {
constexpr const char *kName = "AVX2+FMA";
#include "numeric/cpukernels.inc"
} // namespace lathe::cpu::avx2
