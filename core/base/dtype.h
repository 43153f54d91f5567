#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace lathe {

// Storage types of tensors as they sit in a checkpoint. Compute is fp32 (bf16/fp16 storage allowed); quantized
// GGUF types are block formats that are dequantized on demand. Values of the Ggml* entries are not ggml's ids:
// use dtypeFromGgmlType() to map.
enum class DType : uint8_t {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
};

struct DTypeInfo {
    const char *name;    // safetensors spelling for plain types ("F32"), ggml spelling for quantized ("Q4_K")
    uint32_t blockElems; // elements per block (1 for plain types)
    uint32_t blockBytes; // bytes per block
    bool floatConvertible; // dequantize() can turn it into fp32
};

const DTypeInfo &dtypeInfo(DType t);
inline const char *dtypeName(DType t) { return dtypeInfo(t).name; }
inline bool isQuantized(DType t) { return dtypeInfo(t).blockElems > 1; }

// Bytes needed for `elems` elements; nullopt when `elems` is not a multiple of the block size or the byte count
// overflows.
std::optional<uint64_t> dtypeBytes(DType t, uint64_t elems);

std::optional<DType> dtypeFromSafetensors(const std::string &name);
std::optional<DType> dtypeFromGgmlType(uint32_t ggmlType);
// The ggml id of a type, for writers and test fixtures; nullopt for types GGUF has no id for.
std::optional<uint32_t> ggmlTypeOf(DType t);
std::optional<DType> dtypeFromName(const std::string &name); // case-insensitive "f32", "bf16", "q4_k", ...

} // namespace lathe
