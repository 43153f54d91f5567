#include "base/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace lathe {

namespace {

struct Entry {
    DType type;
    DTypeInfo info;
    int ggml; // ggml_type id, -1 where GGUF has none
};

// Block sizes follow ggml (ggml-common.h): QK4_0 = QK8_0 = 32, QK_K = 256.
constexpr std::array<Entry, 18> kTypes{{
    {DType::F32, {"F32", 1, 4, true}, 0},
    {DType::F16, {"F16", 1, 2, true}, 1},
    {DType::BF16, {"BF16", 1, 2, true}, 30},
    {DType::F64, {"F64", 1, 8, true}, 28},
    {DType::I64, {"I64", 1, 8, false}, 27},
    {DType::I32, {"I32", 1, 4, false}, 26},
    {DType::I16, {"I16", 1, 2, false}, 25},
    {DType::I8, {"I8", 1, 1, false}, 24},
    {DType::U8, {"U8", 1, 1, false}, -1},
    {DType::Bool, {"BOOL", 1, 1, false}, -1},
    {DType::Q4_0, {"Q4_0", 32, 18, true}, 2},
    {DType::Q4_1, {"Q4_1", 32, 20, true}, 3},
    {DType::Q5_0, {"Q5_0", 32, 22, true}, 6},
    {DType::Q5_1, {"Q5_1", 32, 24, true}, 7},
    {DType::Q8_0, {"Q8_0", 32, 34, true}, 8},
    {DType::Q4_K, {"Q4_K", 256, 144, true}, 12},
    {DType::Q5_K, {"Q5_K", 256, 176, true}, 13},
    {DType::Q6_K, {"Q6_K", 256, 210, true}, 14},
}};

const Entry &entry(DType t) {
    for (const auto &e : kTypes)
        if (e.type == t)
            return e;
    return kTypes[0]; // unreachable: every enumerator is listed
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    return s;
}

} // namespace

const DTypeInfo &dtypeInfo(DType t) { return entry(t).info; }

std::optional<uint64_t> dtypeBytes(DType t, uint64_t elems) {
    const DTypeInfo &info = dtypeInfo(t);
    if (elems % info.blockElems != 0)
        return std::nullopt;
    const uint64_t blocks = elems / info.blockElems;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(blocks, uint64_t(info.blockBytes), &bytes))
        return std::nullopt;
    return bytes;
}

std::optional<DType> dtypeFromSafetensors(const std::string &name) {
    for (const auto &e : kTypes)
        if (e.info.blockElems == 1 && name == e.info.name)
            return e.type;
    return std::nullopt;
}

std::optional<DType> dtypeFromGgmlType(uint32_t ggmlType) {
    for (const auto &e : kTypes)
        if (e.ggml >= 0 && uint32_t(e.ggml) == ggmlType)
            return e.type;
    return std::nullopt;
}

std::optional<uint32_t> ggmlTypeOf(DType t) {
    const int g = entry(t).ggml;
    if (g < 0)
        return std::nullopt;
    return uint32_t(g);
}

std::optional<DType> dtypeFromName(const std::string &name) {
    const std::string u = upper(name);
    for (const auto &e : kTypes)
        if (u == e.info.name)
            return e.type;
    return std::nullopt;
}

} // namespace lathe
