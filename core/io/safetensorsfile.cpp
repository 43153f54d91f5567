#include "io/safetensorsfile.h"

#include "base/error.h"
#include "base/mappedfile.h"
#include "base/outputfiles.h"

#include <cstring>

namespace lathe {

std::string safetensorsPrefix(const nlohmann::json &header) {
    std::string hs = header.dump();
    hs.append((8 - hs.size() % 8) % 8, ' ');
    const uint64_t hlen = hs.size();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i)
        out[size_t(i)] = char(uint8_t(hlen >> (8 * i)));
    return out + hs;
}

uint64_t SafetensorsBlob::bytes() const {
    uint64_t n = 1;
    for (int64_t d : shape)
        n *= uint64_t(d);
    return n * dtypeInfo(dtype).blockBytes;
}

void writeSafetensorsFile(const std::string &path, const std::vector<SafetensorsBlob> &blobs,
                          const nlohmann::json &metadata) {
    nlohmann::json header = nlohmann::json::object();
    header["__metadata__"] = metadata;
    header["__metadata__"]["writer"] = "lathe";
    uint64_t offset = 0;
    for (const SafetensorsBlob &b : blobs) {
        require(!isQuantized(b.dtype) && (b.data || b.produce), path, b.name + ": no data or not a plain type");
        header[b.name] = {{"dtype", dtypeName(b.dtype)}, {"shape", b.shape},
                          {"data_offsets", {offset, offset + b.bytes()}}};
        offset += b.bytes();
    }
    const std::string prefix = safetensorsPrefix(header);
    checkSpaceFor(path, prefix.size() + offset);
    writeFileAtomic(path, [&](CheckedFile &f) {
        f.write(prefix);
        for (const SafetensorsBlob &b : blobs) {
            if (b.data) {
                f.write(b.data, size_t(b.bytes()));
                continue;
            }
            uint64_t written = 0;
            b.produce([&](const void *p, size_t n) {
                require(written + n <= b.bytes(), path, b.name + ": more bytes than its shape holds");
                f.write(p, n);
                written += n;
            });
            require(written == b.bytes(), path, b.name + ": fewer bytes than its shape holds");
        }
    });
}

void writeFloatSafetensors(const std::string &path, const std::vector<NamedFloats> &tensors,
                           const nlohmann::json &metadata) {
    std::vector<SafetensorsBlob> blobs;
    blobs.reserve(tensors.size());
    for (const NamedFloats &t : tensors)
        blobs.push_back({t.name, DType::F32, t.shape, t.data, {}});
    writeSafetensorsFile(path, blobs, metadata);
}

SafetensorsFile::SafetensorsFile(const std::string &path, std::string hint)
    : m_path(path), m_hint(std::move(hint)), m_file(MappedFile::open(path)),
      m_header(parseSafetensorsHeader(m_file->data(), m_file->size(), path)) {}

SafetensorsFile::~SafetensorsFile() = default;

std::string SafetensorsFile::metadata(const std::string &key) const {
    const auto it = m_header.metadata.find(key);
    return it != m_header.metadata.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const SafetensorsEntry *SafetensorsFile::find(const std::string &name) const {
    for (const SafetensorsEntry &e : m_header.entries)
        if (e.name == name)
            return &e;
    return nullptr;
}

const uint8_t *SafetensorsFile::bytes(const SafetensorsEntry &e) const { return m_file->data() + e.begin; }

const uint8_t *SafetensorsFile::bytes(const std::string &name, DType dtype, const std::vector<int64_t> &shape) const {
    const SafetensorsEntry *e = find(name);
    require(e != nullptr, m_path, "no tensor " + name, m_hint);
    require(e->dtype == dtype && (shape.empty() || e->shape == shape), m_path,
            name + " has the wrong type or shape", m_hint);
    return bytes(*e);
}

std::vector<float> SafetensorsFile::floats(const std::string &name, std::vector<int64_t> *shape) const {
    const SafetensorsEntry *e = find(name);
    require(e != nullptr, m_path, "no tensor " + name, m_hint);
    require(e->dtype == DType::F32, m_path, name + " is not fp32", m_hint);
    std::vector<float> out(size_t((e->end - e->begin) / 4));
    std::memcpy(out.data(), bytes(*e), out.size() * 4);
    if (shape)
        *shape = e->shape;
    return out;
}

} // namespace lathe
