#pragma once

// Dequantization of one GGUF/ggml block into fp32, shared by the CPU reference (dequantize.cpp) and the CUDA
// kernels (gpu/), so both run the same arithmetic. Layouts follow ggml's block structs (little-endian, packed):
//   Q4_0  (32 elems, 18 B): f16 d, u8 qs[16]               x = (q - 8) * d, low nibbles first
//   Q4_1  (32 elems, 20 B): f16 d, f16 m, u8 qs[16]        x = q * d + m
//   Q5_0  (32 elems, 22 B): f16 d, u8 qh[4], u8 qs[16]     x = (q | hbit << 4) - 16) * d
//   Q5_1  (32 elems, 24 B): f16 d, f16 m, u8 qh[4], u8 qs[16]
//   Q8_0  (32 elems, 34 B): f16 d, i8 qs[32]               x = q * d
//   Q4_K (256 elems, 144 B): f16 d, f16 dmin, u8 scales[12] (6-bit scale/min pairs), u8 qs[128]
//   Q5_K (256 elems, 176 B): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//   Q6_K (256 elems, 210 B): u8 ql[128], u8 qh[64], i8 scales[16], f16 d
// All reads are byte-wise, so blocks need no alignment.

#include "base/halfconv.h"

#include <cstdint>

namespace lathe::quant {

LATHE_HD float rdHalf(const uint8_t *p) { return f16ToFloat(uint16_t(p[0] | (uint16_t(p[1]) << 8))); }

LATHE_HD void blockQ4_0(const uint8_t *b, float *y) {
    const float d = rdHalf(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = float(int(qs[j] & 0x0f) - 8) * d;
        y[j + 16] = float(int(qs[j] >> 4) - 8) * d;
    }
}

LATHE_HD void blockQ4_1(const uint8_t *b, float *y) {
    const float d = rdHalf(b), m = rdHalf(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = float(qs[j] & 0x0f) * d + m;
        y[j + 16] = float(qs[j] >> 4) * d + m;
    }
}

LATHE_HD uint32_t rd32(const uint8_t *p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

LATHE_HD void blockQ5_0(const uint8_t *b, float *y) {
    const float d = rdHalf(b);
    const uint32_t qh = rd32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const int h0 = int(((qh >> j) << 4) & 0x10);
        const int h1 = int((qh >> (j + 12)) & 0x10);
        y[j] = float((int(qs[j] & 0x0f) | h0) - 16) * d;
        y[j + 16] = float((int(qs[j] >> 4) | h1) - 16) * d;
    }
}

LATHE_HD void blockQ5_1(const uint8_t *b, float *y) {
    const float d = rdHalf(b), m = rdHalf(b + 2);
    const uint32_t qh = rd32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const int h0 = int(((qh >> j) << 4) & 0x10);
        const int h1 = int((qh >> (j + 12)) & 0x10);
        y[j] = float(int(qs[j] & 0x0f) | h0) * d + m;
        y[j + 16] = float(int(qs[j] >> 4) | h1) * d + m;
    }
}

LATHE_HD void blockQ8_0(const uint8_t *b, float *y) {
    const float d = rdHalf(b);
    for (int j = 0; j < 32; ++j)
        y[j] = float(int8_t(b[2 + j])) * d;
}

// 6-bit scale and min number j (0..7) of a K-quant super-block, packed in 12 bytes.
LATHE_HD void scaleMinK4(int j, const uint8_t *q, uint8_t &sc, uint8_t &m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

LATHE_HD void blockQ4_K(const uint8_t *b, float *y) {
    const float d = rdHalf(b), dmin = rdHalf(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scaleMinK4(is, scales, sc, m);
        const float d1 = d * sc, m1 = dmin * m;
        scaleMinK4(is + 1, scales, sc, m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * float(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * float(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

LATHE_HD void blockQ5_K(const uint8_t *b, float *y) {
    const float d = rdHalf(b), dmin = rdHalf(b + 2);
    const uint8_t *scales = b + 4;
    const uint8_t *qh = b + 16;
    const uint8_t *ql = b + 48;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scaleMinK4(is, scales, sc, m);
        const float d1 = d * sc, m1 = dmin * m;
        scaleMinK4(is + 1, scales, sc, m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * float((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = uint8_t(u1 << 2);
        u2 = uint8_t(u2 << 2);
    }
}

LATHE_HD void blockQ6_K(const uint8_t *b, float *y) {
    const uint8_t *ql = b;
    const uint8_t *qh = b + 128;
    const int8_t *sc = reinterpret_cast<const int8_t *>(b + 192);
    const float d = rdHalf(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * float(sc[is]) * float(q1);
            y[l + 32] = d * float(sc[is + 2]) * float(q2);
            y[l + 64] = d * float(sc[is + 4]) * float(q3);
            y[l + 96] = d * float(sc[is + 6]) * float(q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

} // namespace lathe::quant
