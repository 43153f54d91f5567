#include "io/ggufparser.h"

#include "base/error.h"
#include "io/safetensorsheader.h"

#include <algorithm>
#include <cstring>

namespace lathe {

namespace {

enum GgufValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11,
    F64 = 12,
};

// Bounds-checked little-endian reader over the file bytes.
class Cursor {
public:
    Cursor(const uint8_t *d, uint64_t n, const std::string &file) : m_d(d), m_n(n), m_file(file) {}

    uint64_t pos() const { return m_pos; }
    uint64_t left() const { return m_n - m_pos; }

    void need(uint64_t bytes, const char *what) const {
        require(bytes <= left(), m_file,
                std::string("truncated: ") + what + " at byte " + std::to_string(m_pos) + " runs past the end of the file (" +
                    std::to_string(m_n) + " bytes)");
    }
    template <typename T> T read(const char *what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, m_d + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return v;
    }
    std::string readString(const char *what) {
        const uint64_t len = read<uint64_t>(what);
        need(len, what);
        std::string s(reinterpret_cast<const char *>(m_d + m_pos), size_t(len));
        m_pos += len;
        return s;
    }

private:
    const uint8_t *m_d;
    uint64_t m_n;
    uint64_t m_pos = 0;
    const std::string &m_file;
};

uint64_t scalarSize(uint32_t type) {
    switch (type) {
    case U8: case I8: case BOOL: return 1;
    case U16: case I16: return 2;
    case U32: case I32: case F32: return 4;
    case U64: case I64: case F64: return 8;
    default: return 0;
    }
}

nlohmann::json readValue(Cursor &c, uint32_t type, const std::string &file, const std::string &key, int depth) {
    switch (type) {
    case U8: return c.read<uint8_t>("value");
    case I8: return c.read<int8_t>("value");
    case U16: return c.read<uint16_t>("value");
    case I16: return c.read<int16_t>("value");
    case U32: return c.read<uint32_t>("value");
    case I32: return c.read<int32_t>("value");
    case F32: return c.read<float>("value");
    case BOOL: return c.read<uint8_t>("value") != 0;
    case STRING: return c.readString("string value");
    case U64: return c.read<uint64_t>("value");
    case I64: return c.read<int64_t>("value");
    case F64: return c.read<double>("value");
    case ARRAY: {
        require(depth < 4, file, "metadata '" + key + "': arrays nested too deep");
        const uint32_t elemType = c.read<uint32_t>("array type");
        const uint64_t count = c.read<uint64_t>("array length");
        const uint64_t minElem = elemType == STRING ? 8 : elemType == ARRAY ? 12 : scalarSize(elemType);
        require(minElem > 0, file, "metadata '" + key + "': unknown array element type " + std::to_string(elemType));
        require(count <= c.left() / minElem, file,
                "metadata '" + key + "': array of " + std::to_string(count) + " elements is longer than the file");
        nlohmann::json arr = nlohmann::json::array();
        arr.get_ref<nlohmann::json::array_t &>().reserve(size_t(count));
        for (uint64_t i = 0; i < count; ++i)
            arr.push_back(readValue(c, elemType, file, key, depth + 1));
        return arr;
    }
    default:
        throw LatheError(file + ": metadata '" + key + "' has unknown value type " + std::to_string(type));
    }
}

} // namespace

GgufFile parseGguf(const uint8_t *data, uint64_t size, const std::string &file) {
    Cursor c(data, size, file);
    require(size >= 4 && std::memcmp(data, "GGUF", 4) == 0, file, "bad magic: not a GGUF file");
    c.read<uint32_t>("magic");
    GgufFile g;
    g.version = c.read<uint32_t>("version");
    require(g.version == 2 || g.version == 3, file, "unsupported GGUF version " + std::to_string(g.version),
            "GGUF v2 and v3 are read; re-export the model with a current llama.cpp");
    const uint64_t nTensors = c.read<uint64_t>("tensor count");
    const uint64_t nKv = c.read<uint64_t>("metadata count");
    // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
    require(nKv <= c.left() / 13, file, "metadata count " + std::to_string(nKv) + " is larger than the file can hold");
    require(nTensors <= c.left() / 32, file,
            "tensor count " + std::to_string(nTensors) + " is larger than the file can hold");

    for (uint64_t i = 0; i < nKv; ++i) {
        const std::string key = c.readString("metadata key");
        const uint32_t type = c.read<uint32_t>("metadata type");
        require(!g.metadata.contains(key), file, "metadata key '" + key + "' appears twice");
        g.metadata[key] = readValue(c, type, file, key, 0);
    }
    if (g.metadata.contains("general.alignment")) {
        const auto &a = g.metadata["general.alignment"];
        require(a.is_number_unsigned(), file, "general.alignment is not an unsigned integer");
        g.alignment = a.get<uint64_t>();
        require(g.alignment > 0 && g.alignment <= (1u << 20) && (g.alignment & (g.alignment - 1)) == 0, file,
                "alignment " + std::to_string(g.alignment) + " is not a power of two up to 1 MiB");
    }

    for (uint64_t i = 0; i < nTensors; ++i) {
        GgufTensor t;
        t.name = c.readString("tensor name");
        const uint32_t nDims = c.read<uint32_t>("tensor dimension count");
        require(nDims >= 1 && nDims <= 4, file,
                "tensor '" + t.name + "': " + std::to_string(nDims) + " dimensions (GGUF allows 1 to 4)");
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nDims; ++d) {
            const uint64_t v = c.read<uint64_t>("tensor dimension");
            require(v <= uint64_t(kMaxTensorElems) && (v == 0 || numel <= uint64_t(kMaxTensorElems) / v), file,
                    "tensor '" + t.name + "': dimensions are absurd");
            numel *= v;
            t.dims.push_back(v);
        }
        const uint32_t ggmlType = c.read<uint32_t>("tensor type");
        const auto dtype = dtypeFromGgmlType(ggmlType);
        require(dtype.has_value(), file, "tensor '" + t.name + "': unsupported ggml type " + std::to_string(ggmlType),
                "supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K");
        t.dtype = *dtype;
        const auto bytes = dtypeBytes(t.dtype, numel);
        require(bytes.has_value(), file,
                "tensor '" + t.name + "': " + std::to_string(numel) + " elements is not a whole number of " +
                    dtypeName(t.dtype) + " blocks");
        require(dtypeInfo(t.dtype).blockElems == 1 || t.dims[0] % dtypeInfo(t.dtype).blockElems == 0, file,
                "tensor '" + t.name + "': row length " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                    dtypeName(t.dtype) + " block");
        t.nbytes = *bytes;
        t.offset = c.read<uint64_t>("tensor offset");
        require(t.offset % g.alignment == 0, file, "tensor '" + t.name + "': offset is not aligned");
        g.tensors.push_back(std::move(t));
    }

    g.dataStart = (c.pos() + g.alignment - 1) / g.alignment * g.alignment;
    if (g.tensors.empty())
        g.dataStart = std::min(g.dataStart, size); // a file without tensors may end before the padding
    require(g.dataStart <= size, file, "truncated: the data section starts past the end of the file");
    const uint64_t dataSize = size - g.dataStart;
    for (auto &t : g.tensors) {
        require(t.offset <= dataSize && t.nbytes <= dataSize - t.offset, file,
                "tensor '" + t.name + "': bytes [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                    ") lie outside the data section (" + std::to_string(dataSize) + " bytes)",
                "the file is truncated");
        t.offset += g.dataStart;
    }
    std::vector<const GgufTensor *> order;
    for (const auto &t : g.tensors)
        order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto *a, auto *b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i)
        require(order[i]->offset >= order[i - 1]->offset + order[i - 1]->nbytes || order[i - 1]->nbytes == 0, file,
                "tensors '" + order[i - 1]->name + "' and '" + order[i]->name + "' have overlapping data");
    return g;
}

} // namespace lathe
