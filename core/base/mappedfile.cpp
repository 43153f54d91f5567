#include "base/mappedfile.h"

#include "base/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lathe {

std::shared_ptr<MappedFile> MappedFile::open(const std::string &path) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; it is refused below.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        throw LatheError(path + ": cannot open: " + std::strerror(errno), "check that the file exists and is readable");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw LatheError(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw LatheError(path + ": not a regular file", S_ISDIR(st.st_mode) ? "give a file, not a folder" : "");
    }
    const auto size = uint64_t(st.st_size);
    static const uint8_t kEmpty[1] = {0};
    const uint8_t *data = kEmpty;
    if (size > 0) {
        void *p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw LatheError(path + ": cannot memory-map: " + std::strerror(err));
        }
        data = static_cast<const uint8_t *>(p);
    }
    ::close(fd); // the mapping keeps the file referenced
    return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
    if (m_size > 0)
        ::munmap(const_cast<uint8_t *>(m_data), m_size);
}

std::string readWholeFile(const std::string &path) {
    const auto f = MappedFile::open(path);
    return std::string(reinterpret_cast<const char *>(f->data()), size_t(f->size()));
}

} // namespace lathe
