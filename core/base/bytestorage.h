#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// Bytes a tensor's data lives in: a memory-mapped checkpoint file, or a buffer the program owns (tensors changed
// by a method). Tensors keep a shared_ptr to their storage, so a mapping stays alive while any tensor uses it.
class ByteStorage {
public:
    virtual ~ByteStorage() = default;
    virtual const uint8_t *data() const = 0;
    virtual uint64_t size() const = 0;
    // The file the bytes come from, or empty for owned buffers.
    virtual std::string path() const { return {}; }
};

class OwnedBytes final : public ByteStorage {
public:
    explicit OwnedBytes(std::vector<uint8_t> bytes) : m_bytes(std::move(bytes)) {}
    const uint8_t *data() const override { return m_bytes.data(); }
    uint64_t size() const override { return m_bytes.size(); }

private:
    std::vector<uint8_t> m_bytes;
};

} // namespace lathe
