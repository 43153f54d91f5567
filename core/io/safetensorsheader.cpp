#include "io/safetensorsheader.h"

#include "base/error.h"

#include <algorithm>
#include <cstring>

namespace lathe {

namespace {

// The format's own limit (safetensors rejects headers above 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::vector<int64_t> parseShape(const nlohmann::json &j, const std::string &file, const std::string &tensor) {
    require(j.is_array(), file, "tensor '" + tensor + "': shape is not an array");
    require(j.size() <= 8, file, "tensor '" + tensor + "': " + std::to_string(j.size()) + " dimensions is absurd");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto &d : j) {
        require(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), file,
                "tensor '" + tensor + "': shape has a non-integer or negative dimension");
        const uint64_t v = d.get<uint64_t>();
        require(v <= uint64_t(kMaxTensorElems), file, "tensor '" + tensor + "': dimension " + std::to_string(v) + " is absurd");
        shape.push_back(int64_t(v));
        if (v != 0)
            require(numel <= kMaxTensorElems / int64_t(v), file,
                    "tensor '" + tensor + "': shape " + j.dump() + " has an absurd number of elements");
        numel *= int64_t(v);
    }
    return shape;
}

} // namespace

SafetensorsHeader parseSafetensorsHeader(const uint8_t *data, uint64_t size, const std::string &file) {
    require(size >= 8, file,
            "truncated: the file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length",
            "the download or copy was probably interrupted");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | data[i];
    require(n <= size - 8, file,
            "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)",
            "the file is truncated or not a safetensors file");
    require(n <= kMaxHeaderBytes, file, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
    require(n >= 2, file, "header is empty");

    nlohmann::json j;
    try {
        j = nlohmann::json::parse(data + 8, data + 8 + n);
    } catch (const nlohmann::json::exception &e) {
        throw LatheError(file + ": header is not valid JSON (" + e.what() + ")", "the file is corrupt");
    }
    require(j.is_object(), file, "header is not a JSON object");

    SafetensorsHeader h;
    h.dataStart = 8 + n;
    const uint64_t dataSize = size - h.dataStart;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string &name = it.key();
        if (name == "__metadata__") {
            require(it->is_object(), file, "__metadata__ is not an object");
            h.metadata = *it;
            continue;
        }
        const auto &v = *it;
        require(v.is_object(), file, "tensor '" + name + "': entry is not an object");
        require(v.contains("dtype") && v["dtype"].is_string(), file, "tensor '" + name + "': dtype is missing");
        const std::string dt = v["dtype"].get<std::string>();
        const auto dtype = dtypeFromSafetensors(dt);
        require(dtype.has_value(), file, "tensor '" + name + "': unknown dtype '" + dt + "'",
                "supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
        require(v.contains("shape"), file, "tensor '" + name + "': shape is missing");
        require(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2 &&
                    v["data_offsets"][0].is_number_unsigned() && v["data_offsets"][1].is_number_unsigned(),
                file, "tensor '" + name + "': data_offsets is not a pair of non-negative integers");
        SafetensorsEntry e;
        e.name = name;
        e.dtype = *dtype;
        e.shape = parseShape(v["shape"], file, name);
        const uint64_t b = v["data_offsets"][0].get<uint64_t>(), en = v["data_offsets"][1].get<uint64_t>();
        require(b <= en, file, "tensor '" + name + "': data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                                   "] are reversed");
        require(en <= dataSize, file,
                "tensor '" + name + "': bytes [" + std::to_string(b) + ", " + std::to_string(en) +
                    ") lie outside the data section (" + std::to_string(dataSize) + " bytes)",
                "the file is truncated");
        int64_t numel = 1;
        for (auto d : e.shape)
            numel *= d;
        const auto need = dtypeBytes(e.dtype, uint64_t(numel));
        require(need.has_value() && *need == en - b, file,
                "tensor '" + name + "': shape " + v["shape"].dump() + " of " + dt + " needs " +
                    (need ? std::to_string(*need) : std::string("too many")) + " bytes but its data_offsets cover " +
                    std::to_string(en - b));
        e.begin = h.dataStart + b;
        e.end = h.dataStart + en;
        h.entries.push_back(std::move(e));
    }
    std::sort(h.entries.begin(), h.entries.end(), [](const auto &a, const auto &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    for (size_t i = 1; i < h.entries.size(); ++i) {
        const auto &prev = h.entries[i - 1], &cur = h.entries[i];
        require(cur.begin >= prev.end || prev.begin == prev.end || cur.begin == cur.end, file,
                "tensors '" + prev.name + "' and '" + cur.name + "' have overlapping data");
    }
    return h;
}

} // namespace lathe
