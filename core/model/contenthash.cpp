#include "model/contenthash.h"

#include "base/parallel.h"
#include "model/model.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace lathe {

namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull,
                   kP4 = 0x85EBCA77C2B2AE63ull, kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t round(uint64_t acc, uint64_t v) { return rotl(acc + v * kP2, 31) * kP1; }
inline uint64_t merge(uint64_t h, uint64_t v) { return (h ^ round(0, v)) * kP1 + kP4; }
inline uint64_t read64(const uint8_t *p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

} // namespace

uint64_t hashBytes(const void *data, size_t size, uint64_t seed) {
    const auto *p = static_cast<const uint8_t *>(data);
    const uint8_t *end = p + size;
    uint64_t h;
    if (size >= 32) {
        uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
        for (; p + 32 <= end; p += 32) {
            v1 = round(v1, read64(p));
            v2 = round(v2, read64(p + 8));
            v3 = round(v3, read64(p + 16));
            v4 = round(v4, read64(p + 24));
        }
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = merge(merge(merge(merge(h, v1), v2), v3), v4);
    } else {
        h = seed + kP5;
    }
    h += uint64_t(size);
    for (; p + 8 <= end; p += 8)
        h = rotl(h ^ round(0, read64(p)), 27) * kP1 + kP4;
    for (; p < end; ++p)
        h = rotl(h ^ (uint64_t(*p) * kP5), 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
}

std::string modelContentHash(const Model &model) {
    const auto &tensors = model.tensors();
    std::vector<uint64_t> parts(tensors.size());
    parallelFor(int64_t(tensors.size()), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            const TensorInfo &t = tensors[size_t(i)];
            std::string header = t.name + '|' + std::to_string(int(t.dtype)) + '|' + t.shapeString();
            const uint64_t h = hashBytes(header.data(), header.size());
            parts[size_t(i)] = t.storage ? hashBytes(t.bytes(), t.nbytes, h) : h;
        }
    });
    const uint64_t h = hashBytes(parts.data(), parts.size() * sizeof(uint64_t));
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

} // namespace lathe
