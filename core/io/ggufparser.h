#pragma once

#include "base/dtype.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

struct GgufTensor {
    std::string name;
    std::vector<uint64_t> dims; // GGUF order: dims[0] is the fastest-varying (row length), as ggml's ne[]
    DType dtype = DType::F32;
    uint64_t offset = 0;        // absolute byte offset in the file
    uint64_t nbytes = 0;
};

struct GgufFile {
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t dataStart = 0;
    // Key/value metadata; GGUF integers, floats, bools and strings map to JSON scalars, arrays to JSON arrays.
    nlohmann::json metadata = nlohmann::json::object();
    std::vector<GgufTensor> tensors;
};

// Parses and validates a GGUF (v2 or v3) file held in memory: magic, version, key/value metadata, tensor infos,
// alignment, and that every tensor's bytes lie inside the data section without overlapping. Every count and length
// is checked against the bytes left before anything is allocated, so a corrupt file cannot ask for huge memory.
// Throws LatheError naming `file`.
GgufFile parseGguf(const uint8_t *data, uint64_t size, const std::string &file);

} // namespace lathe
