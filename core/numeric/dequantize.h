#pragma once

#include "base/dtype.h"

#include <cstddef>
#include <cstdint>

namespace lathe {

// CPU reference: converts `elems` elements stored as `type` at `src` into fp32 at `dst`. `src` holds exactly
// dtypeBytes(type, elems) bytes; `elems` is a multiple of the block size (checked by the readers). Types that are
// not float-convertible (integers, bool) are a programmer error here: callers check dtypeInfo().floatConvertible.
void dequantizeCpu(DType type, const void *src, size_t elems, float *dst);

// fp32 -> storage type for the types a writer may produce: F32, F16, BF16, and Q8_0 (`elems` a multiple of 32).
void quantizeFloatCpu(DType type, const float *src, size_t elems, void *dst);

} // namespace lathe
