#pragma once

// Reads the reference outputs that tests/fixtures/make_hf_references.py saves as .safetensors (F32 and I32
// tensors) into memory. Header-only; uses the engine's own safetensors header parser.

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/safetensorsheader.h"

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace lathe::test {

struct RefTensor {
    std::vector<int64_t> shape;
    std::vector<float> f32;
    std::vector<int32_t> i32;
    int64_t dim(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

inline std::map<std::string, RefTensor> readReference(const std::string &path) {
    auto file = MappedFile::open(path);
    const SafetensorsHeader h = parseSafetensorsHeader(file->data(), file->size(), path);
    std::map<std::string, RefTensor> out;
    for (const auto &e : h.entries) {
        RefTensor t;
        t.shape = e.shape;
        const size_t n = size_t(e.end - e.begin) / 4;
        if (e.dtype == DType::F32) {
            t.f32.resize(n);
            std::memcpy(t.f32.data(), file->data() + e.begin, n * 4);
        } else if (e.dtype == DType::I32) {
            t.i32.resize(n);
            std::memcpy(t.i32.data(), file->data() + e.begin, n * 4);
        } else {
            throw LatheError(path + ": reference tensor " + e.name + " is neither F32 nor I32");
        }
        out.emplace(e.name, std::move(t));
    }
    return out;
}

} // namespace lathe::test
