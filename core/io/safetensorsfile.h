#pragma once

// Safetensors files Lathe writes for itself and reads back: training and layer checkpoints, gradient dumps. The
// header's `__metadata__` carries string values only (as the format asks), so JSON state goes in as a string.

#include "base/dtype.h"
#include "io/safetensorsheader.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

class MappedFile;

// The start of a safetensors file: the 8-byte little-endian header length, then the header JSON padded with spaces
// so that the data that follows is 8-byte aligned (as the reference writer does).
std::string safetensorsPrefix(const nlohmann::json &header);

// One tensor to write: a plain type (F32, F64, U8, ...) and its shape, with its bytes either at `data` or handed
// piece by piece, in order, to the sink `produce` is given (data streamed from elsewhere: GPU memory, chunked host
// buffers). Nothing is owned.
struct SafetensorsBlob {
    using Sink = std::function<void(const void *, size_t)>;
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const void *data = nullptr;
    std::function<void(const Sink &)> produce;
    uint64_t bytes() const;
};

// Writes `blobs` (in that order) so that `path` is either the old file or the complete new one (temporary beside
// it, checked writes, fsync, rename); the space is checked first. `metadata` values must be strings; "writer" is
// set to "lathe". LatheError with a hint on failure, also when a producer hands more or fewer bytes than its shape.
void writeSafetensorsFile(const std::string &path, const std::vector<SafetensorsBlob> &blobs,
                          const nlohmann::json &metadata = nlohmann::json::object());

// A named fp32 tensor to write (the data is not owned).
struct NamedFloats {
    std::string name;
    std::vector<int64_t> shape;
    const float *data = nullptr;
};
// writeSafetensorsFile of fp32 tensors (gradients, reference dumps, training checkpoints).
void writeFloatSafetensors(const std::string &path, const std::vector<NamedFloats> &tensors,
                           const nlohmann::json &metadata = nlohmann::json::object());

// A safetensors file mapped for reading, its header parsed and checked (parseSafetensorsHeader). Entries are
// looked up by name and checked against what the reader expects; every failure is a LatheError naming the file
// with `hint` (what to do about a damaged file of this kind).
class SafetensorsFile {
public:
    SafetensorsFile(const std::string &path, std::string hint);
    ~SafetensorsFile();
    const std::string &path() const { return m_path; }
    const SafetensorsHeader &header() const { return m_header; }
    // A metadata string (empty when absent).
    std::string metadata(const std::string &key) const;
    const SafetensorsEntry *find(const std::string &name) const;
    // The bytes of `name`, which must exist with type `dtype` (and, when `shape` is not empty, that shape).
    const uint8_t *bytes(const std::string &name, DType dtype, const std::vector<int64_t> &shape = {}) const;
    const uint8_t *bytes(const SafetensorsEntry &e) const;
    // A copy of an fp32 tensor of any shape (shape returned in `shape`).
    std::vector<float> floats(const std::string &name, std::vector<int64_t> *shape = nullptr) const;

private:
    std::string m_path, m_hint;
    std::shared_ptr<MappedFile> m_file;
    SafetensorsHeader m_header;
};

} // namespace lathe
