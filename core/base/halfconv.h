#pragma once

// fp16 / bf16 <-> fp32 conversion usable from host code and CUDA device code. Bit-exact with IEEE 754
// (fp16 subnormals, Inf and NaN preserved); fp32 -> bf16/fp16 rounds to nearest even.

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LATHE_HD __host__ __device__ inline
#else
#define LATHE_HD inline
#endif

namespace lathe {

LATHE_HD float bitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
}

LATHE_HD uint32_t floatToBits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
}

LATHE_HD float bf16ToFloat(uint16_t h) { return bitsToFloat(uint32_t(h) << 16); }

LATHE_HD uint16_t floatToBf16(float f) {
    uint32_t u = floatToBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep it a (quiet) NaN
        return uint16_t((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

LATHE_HD float f16ToFloat(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) // Inf / NaN
        return bitsToFloat(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bitsToFloat(sign);
        // subnormal: normalise
        int e = -1;
        do {
            ++e;
            mant <<= 1;
        } while ((mant & 0x400u) == 0);
        mant &= 0x3ffu;
        return bitsToFloat(sign | uint32_t(127 - 15 - e) << 23 | (mant << 13));
    }
    return bitsToFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

LATHE_HD uint16_t floatToF16(float f) {
    const uint32_t u = floatToBits(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    const uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return uint16_t(sign | 0x7e00u); // NaN
    if (absu >= 0x477ff000u)            // rounds to >= 65520 -> Inf
        return uint16_t(sign | 0x7c00u);
    if (absu < 0x38800000u) { // below the smallest normal fp16 (2^-14): subnormal or zero
        if (absu < 0x33000000u)
            return sign; // below half of the smallest subnormal
        const uint32_t exp = absu >> 23;
        const uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - exp; // 14 + 13 - (exp - 127) ... => value in units of 2^-24
        uint32_t v = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1u)))
            ++v;
        return uint16_t(sign | v);
    }
    uint32_t v = absu - (uint32_t(127 - 15) << 23);
    v += 0xfffu + ((v >> 13) & 1u);
    return uint16_t(sign | (v >> 13));
}

} // namespace lathe
