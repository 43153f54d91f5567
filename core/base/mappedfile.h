#pragma once

#include "base/bytestorage.h"

#include <memory>
#include <string>

namespace lathe {

// A read-only private memory mapping of a whole file. Pages are read when touched, so opening a multi-GB
// checkpoint costs only the header pages. Throws LatheError naming the file when it cannot be opened or mapped, or
// is not a regular file (a folder, a FIFO or a device is refused without blocking on it).
class MappedFile final : public ByteStorage {
public:
    static std::shared_ptr<MappedFile> open(const std::string &path);
    ~MappedFile() override;
    MappedFile(const MappedFile &) = delete;
    MappedFile &operator=(const MappedFile &) = delete;

    const uint8_t *data() const override { return m_data; }
    uint64_t size() const override { return m_size; }
    std::string path() const override { return m_path; }

private:
    MappedFile(std::string path, const uint8_t *data, uint64_t size) : m_path(std::move(path)), m_data(data), m_size(size) {}
    std::string m_path;
    const uint8_t *m_data = nullptr;
    uint64_t m_size = 0;
};

// The bytes of a regular file (JSON, merges, vocabularies, texts), read once; the same refusals as MappedFile.
std::string readWholeFile(const std::string &path);

} // namespace lathe
