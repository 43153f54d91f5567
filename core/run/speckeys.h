#pragma once

#include "base/dtype.h"
#include "base/error.h"
#include "methods/methodparams.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <variant>

namespace lathe {

// One table of a job spec's keys for reading and writing its JSON (compression and training specs): each entry
// names a dotted JSON path ("calibration.samples") and the member it fills.
template <class S> struct SpecKey {
    using Member = std::variant<std::string S::*, int64_t S::*, uint64_t S::*, double S::*, bool S::*>;
    const char *path;
    Member member;
    bool isPath = false;    // a file or folder, resolved against the spec file's folder
    bool omitEmpty = false; // not written when empty
};

// `p` against `base` when relative (and both given).
inline std::string resolveSpecPath(const std::string &p, const std::string &base) {
    if (p.empty() || base.empty() || std::filesystem::path(p).is_absolute())
        return p;
    return (std::filesystem::path(base) / p).lexically_normal().string();
}

template <class S, size_t N> void writeSpecKeys(const S &spec, const SpecKey<S> (&keys)[N], nlohmann::json &j) {
    for (const SpecKey<S> &k : keys)
        std::visit(
            [&](auto member) {
                const auto &v = spec.*member;
                if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::string>)
                    if (k.omitEmpty && v.empty())
                        return;
                jsonMakePath(j, k.path) = v;
            },
            k.member);
}

// Reads every key present (types checked by readJsonValue) and resolves the paths against `baseDir`.
template <class S, size_t N>
void readSpecKeys(S &spec, const SpecKey<S> (&keys)[N], const nlohmann::json &j, const std::string &baseDir) {
    for (const SpecKey<S> &k : keys)
        if (const nlohmann::json *v = jsonAtPath(j, k.path))
            std::visit([&](auto member) { readJsonValue(*v, k.path, spec.*member); }, k.member);
    for (const SpecKey<S> &k : keys)
        if (k.isPath) {
            std::string &p = spec.*std::get<std::string S::*>(k.member);
            p = resolveSpecPath(p, baseDir);
        }
}

// The dotted paths of a table.
template <class S, size_t N> std::set<std::string> specKeyPaths(const SpecKey<S> (&keys)[N]) {
    std::set<std::string> out;
    for (const SpecKey<S> &k : keys)
        out.insert(k.path);
    return out;
}

// A job's input file: present and a regular file (or, with `folderOk`, a folder). A folder or a FIFO given as a
// text would be read as nothing, or hang. LatheError naming `what`.
void requireInputFile(const std::string &path, const std::string &what, bool folderOk);

// The storage type of an exported model, from the spec's output.dtype: f32, f16 or bf16; LatheError otherwise.
DType exportDType(const std::string &name);
// The storage type of the GGUF file a run writes beside its Hugging Face folder, from output.gguf: "" (none), f32,
// f16 or q8_0; LatheError otherwise.
std::optional<DType> ggufExportDType(const std::string &name);

// Refuses a key of `j` that is neither in `known` nor an object holding known keys (LatheError naming it, with
// `docs` in the hint); keys in `ignored` (or objects holding only such keys) are skipped with a warning that says
// `why`.
void checkSpecKeys(const nlohmann::json &j, const std::set<std::string> &known, const std::set<std::string> &ignored,
                   const std::string &why, const std::string &docs, const std::string &prefix = {});

} // namespace lathe
