#pragma once

// HDF5 (C++ API) helpers shared by the archives Lathe writes (analysis cache, run archive). Include only under
// LATHE_HAVE_HDF5. Every HDF5 call goes through LATHE_H5 / LATHE_H5_HINT so that an H5::Exception becomes a
// LatheError naming the file, the source location and HDF5's message.

#include "base/error.h"
#include "base/outputfiles.h"

#include <H5Cpp.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lathe::h5 {

// Every HDF5 call goes through this: the C++ API's exceptions become LatheErrors naming the file, the source
// location and HDF5's own message.
#define LATHE_H5_HINT(path, hint, ...)                                                                            \
    [&]() -> decltype(auto) {                                                                                     \
        try {                                                                                                     \
            return __VA_ARGS__;                                                                                   \
        } catch (const H5::Exception &e) {                                                                        \
            throw LatheError(std::string(path) + ": HDF5 error at " __FILE__ ":" + std::to_string(__LINE__) +      \
                                 " in " + e.getFuncName() + ": " + e.getDetailMsg(),                              \
                             hint);                                                                               \
        }                                                                                                         \
    }()
#define LATHE_H5(path, ...) LATHE_H5_HINT(path, "the archive may be damaged; delete it and it is recomputed", __VA_ARGS__)


template <class T> H5::PredType predType();
template <> inline H5::PredType predType<float>() { return H5::PredType::NATIVE_FLOAT; }
template <> inline H5::PredType predType<int32_t>() { return H5::PredType::NATIVE_INT32; }
template <> inline H5::PredType predType<uint8_t>() { return H5::PredType::NATIVE_UINT8; }
template <> inline H5::PredType predType<double>() { return H5::PredType::NATIVE_DOUBLE; }
template <> inline H5::PredType predType<int64_t>() { return H5::PredType::NATIVE_INT64; }
template <> inline H5::PredType predType<int8_t>() { return H5::PredType::NATIVE_INT8; }

template <class T> inline void writeAttr(H5::H5Object &obj, const char *name, T value) {
    H5::Attribute a = obj.createAttribute(name, predType<T>(), H5::DataSpace(H5S_SCALAR));
    a.write(predType<T>(), &value);
}

inline void writeStringAttr(H5::H5Object &obj, const char *name, const std::string &value) {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    H5::Attribute a = obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
    a.write(type, value);
}

template <class T> inline T readAttr(const H5::H5Object &obj, const char *name, T fallback = T{}) {
    if (!obj.attrExists(name))
        return fallback;
    T v{};
    obj.openAttribute(name).read(predType<T>(), &v);
    return v;
}

inline std::string readStringAttr(const H5::H5Object &obj, const char *name) {
    if (!obj.attrExists(name))
        return {};
    H5::Attribute a = obj.openAttribute(name);
    std::string v;
    a.read(a.getStrType(), v);
    return v;
}

template <class T> inline void writeVector(H5::Group &g, const std::string &name, const std::vector<T> &v,
                                    const H5::PredType &type) {
    const hsize_t dims[1] = {hsize_t(v.size())};
    H5::DataSet ds = g.createDataSet(name, type, H5::DataSpace(1, dims));
    if (!v.empty())
        ds.write(v.data(), type);
}

template <class T> inline std::vector<T> readVector(const H5::DataSet &ds, const H5::PredType &type) {
    H5::DataSpace space = ds.getSpace();
    if (space.getSimpleExtentNdims() != 1)
        throw H5::DataSetIException("readVector", "dataset is not one-dimensional");
    hsize_t n = 0;
    space.getSimpleExtentDims(&n);
    std::vector<T> v(static_cast<size_t>(n));
    if (n)
        ds.read(v.data(), type);
    return v;
}

inline std::vector<std::string> children(const H5::Group &g) {
    std::vector<std::string> names;
    for (hsize_t i = 0; i < g.getNumObjs(); ++i)
        names.push_back(g.getObjnameByIdx(i));
    return names;
}

// Writes an HDF5 file so that readers see the old file or the complete new one: `fill(file)` writes into a
// temporary file beside `path` (outputfiles.h naming, so that one a killed process left is cleaned later), which
// is closed, fsync'ed and then renamed into place. On failure the temporary file is removed, the old file is
// untouched and a LatheError is thrown (HDF5 failures with `hint`).
// HDF5 1.10 crashes when it closes a file whose writes failed (a full disk), so HDF5 must never see a failed
// write: `bytesBound`, an upper bound of the file's size, is reserved first (reserveSpace), which refuses with a
// clear message when it does not fit, and the file is then filled within the reserved blocks.
template <class Fill>
void writeFileAtomically(const std::string &path, const std::string &hint, uint64_t bytesBound, Fill &&fill) {
    H5::Exception::dontPrint();
    std::error_code ec;
    const std::string tmp = temporarySibling(path, "lathe-tmp").string();
    try {
        const uint64_t bytes = bytesBound + (1u << 20);
        checkSpaceFor(tmp, bytes); // before HDF5 writes a byte (the superblock, when the file is created)
        LATHE_H5_HINT(path, hint, [&] {
            {
                H5::H5File created(tmp, H5F_ACC_TRUNC); // creating truncates, so the space is reserved after it
            }
            reserveSpace(tmp, bytes);
            H5::H5File file(tmp, H5F_ACC_RDWR);
            fill(file);
            file.close();
            return 0;
        }());
        CheckedFile sync(tmp, CheckedFile::Append); // fsync of what HDF5 wrote; throws on failure
        sync.close();
        installFile(tmp, path);
    } catch (...) {
        std::filesystem::remove(tmp, ec);
        throw;
    }
}

// Upper bound of the bytes HDF5 spends on one group or dataset besides its data (object header, attributes,
// links, B-tree and heap entries), for writeFileAtomically's bound.
inline constexpr uint64_t kObjectOverheadBound = 16 * 1024;

} // namespace lathe::h5
