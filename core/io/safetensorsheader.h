#pragma once

#include "base/dtype.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// One tensor of a .safetensors file. `begin`/`end` are absolute byte offsets in the file (the format stores them
// relative to the end of the header; the parser adds the header size).
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    uint64_t begin = 0;
    uint64_t end = 0;
};

struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries; // in file order of their data
    nlohmann::json metadata = nlohmann::json::object();
    uint64_t dataStart = 0;
};

// Parses and validates the header of a .safetensors file held in memory (format: u64 little-endian header length
// N, N bytes of JSON, then the data). Checks everything that would make a later read go wrong: truncation, header
// past the end, invalid JSON, unknown dtypes, absurd shapes, byte ranges outside the data, overlapping or of the
// wrong size. Throws LatheError naming `file`. Never reads tensor data.
SafetensorsHeader parseSafetensorsHeader(const uint8_t *data, uint64_t size, const std::string &file);

// Largest element count accepted for one tensor (2^40, far beyond any real layer); larger is "absurd".
inline constexpr int64_t kMaxTensorElems = int64_t(1) << 40;

} // namespace lathe
