#include "numeric/dequantize.h"

#include "numeric/quantblocks.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

namespace lathe {

namespace {

template <typename BlockFn>
void perBlock(const uint8_t *src, size_t elems, float *dst, uint32_t blockElems, uint32_t blockBytes, BlockFn fn) {
    const size_t blocks = elems / blockElems;
    for (size_t i = 0; i < blocks; ++i)
        fn(src + i * blockBytes, dst + i * blockElems);
}

} // namespace

void dequantizeCpu(DType type, const void *srcVoid, size_t elems, float *dst) {
    const auto *src = static_cast<const uint8_t *>(srcVoid);
    const DTypeInfo &info = dtypeInfo(type);
    assert(info.floatConvertible && elems % info.blockElems == 0);
    switch (type) {
    case DType::F32:
        std::memcpy(dst, src, elems * 4);
        return;
    case DType::F16:
        for (size_t i = 0; i < elems; ++i)
            dst[i] = quant::rdHalf(src + 2 * i);
        return;
    case DType::BF16:
        for (size_t i = 0; i < elems; ++i)
            dst[i] = bf16ToFloat(uint16_t(src[2 * i] | (uint16_t(src[2 * i + 1]) << 8)));
        return;
    case DType::F64:
        for (size_t i = 0; i < elems; ++i) {
            double v;
            std::memcpy(&v, src + 8 * i, 8);
            dst[i] = float(v);
        }
        return;
    case DType::Q4_0: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ4_0); return;
    case DType::Q4_1: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ4_1); return;
    case DType::Q5_0: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ5_0); return;
    case DType::Q5_1: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ5_1); return;
    case DType::Q8_0: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ8_0); return;
    case DType::Q4_K: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ4_K); return;
    case DType::Q5_K: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ5_K); return;
    case DType::Q6_K: perBlock(src, elems, dst, info.blockElems, info.blockBytes, quant::blockQ6_K); return;
    default:
        assert(false && "dequantizeCpu: type is not float-convertible");
    }
}

void quantizeFloatCpu(DType type, const float *src, size_t elems, void *dstVoid) {
    auto *dst = static_cast<uint8_t *>(dstVoid);
    switch (type) {
    case DType::F32:
        std::memcpy(dst, src, elems * 4);
        return;
    case DType::F16:
    case DType::BF16:
        for (size_t i = 0; i < elems; ++i) {
            const uint16_t h = type == DType::F16 ? floatToF16(src[i]) : floatToBf16(src[i]);
            dst[2 * i] = uint8_t(h & 0xff);
            dst[2 * i + 1] = uint8_t(h >> 8);
        }
        return;
    case DType::Q8_0:
        // ggml's reference (quantize_row_q8_0_ref): per block of 32, d = max|x| / 127 stored as f16, q = round(x / d)
        // computed with the fp32 d, so a zero stays exactly zero.
        for (size_t b = 0; b < elems / 32; ++b) {
            const float *x = src + b * 32;
            uint8_t *out = dst + b * 34;
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i)
                amax = std::max(amax, std::fabs(x[i]));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const uint16_t h = floatToF16(d);
            out[0] = uint8_t(h & 0xff);
            out[1] = uint8_t(h >> 8);
            for (int i = 0; i < 32; ++i)
                out[2 + i] = uint8_t(int8_t(std::lround(x[i] * id)));
        }
        return;
    default:
        assert(false && "quantizeFloatCpu: only F32, F16, BF16 and Q8_0 are written");
    }
}

} // namespace lathe
