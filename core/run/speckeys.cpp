#include "run/speckeys.h"

#include <spdlog/spdlog.h>

namespace lathe {

void requireInputFile(const std::string &p, const std::string &what, bool folderOk) {
    std::error_code ec;
    if (p.empty())
        throw LatheError("job spec: no " + what + " given");
    const std::filesystem::file_status st = std::filesystem::status(p, ec);
    if (!std::filesystem::exists(st))
        throw LatheError("job spec: the " + what + " '" + p + "' does not exist");
    if (!std::filesystem::is_regular_file(st) && !(folderOk && std::filesystem::is_directory(st)))
        throw LatheError("job spec: the " + what + " '" + p + "' is not a " + (folderOk ? "file or folder" : "file"));
}

DType exportDType(const std::string &name) {
    if (name == "f32")
        return DType::F32;
    if (name == "f16")
        return DType::F16;
    if (name == "bf16")
        return DType::BF16;
    throw LatheError("job spec: output.dtype '" + name + "' is not f32, f16 or bf16");
}

std::optional<DType> ggufExportDType(const std::string &name) {
    if (name.empty())
        return std::nullopt;
    if (name == "f32")
        return DType::F32;
    if (name == "f16")
        return DType::F16;
    if (name == "q8_0")
        return DType::Q8_0;
    throw LatheError("job spec: output.gguf '" + name + "' is not f32, f16 or q8_0",
                     "leave output.gguf out (or empty) for no GGUF file");
}

void checkSpecKeys(const nlohmann::json &j, const std::set<std::string> &known, const std::set<std::string> &ignored,
                   const std::string &why, const std::string &docs, const std::string &prefix) {
    if (!j.is_object())
        throw LatheError(prefix.empty() ? std::string("job spec: not a JSON object")
                                        : "job spec: '" + prefix.substr(0, prefix.size() - 1) + "' must be an object");
    for (const auto &[k, v] : j.items()) {
        const std::string path = prefix + k;
        // "pst.rank" names the key "rank" inside the object "pst"; a literal dotted key would be read by nothing.
        if (k.find('.') != std::string::npos)
            throw LatheError("job spec: the key '" + path + "' holds a dot",
                             "write nested objects: {\"" + k.substr(0, k.find('.')) + "\": {\"" +
                                 k.substr(k.find('.') + 1) + "\": ...}} (see " + docs + ")");
        if (known.count(path))
            continue;
        bool isFolder = false, ignoredFolder = false;
        for (const std::string &p : known)
            isFolder |= p.rfind(path + ".", 0) == 0;
        for (const std::string &p : ignored)
            ignoredFolder |= p.rfind(path + ".", 0) == 0;
        if (isFolder)
            checkSpecKeys(v, known, ignored, why, docs, path + ".");
        else if (ignored.count(path) || ignoredFolder)
            spdlog::warn("job spec: '{}' {}; ignored", path, why);
        else
            throw LatheError("job spec: unknown key '" + path + "'", "see " + docs + " for the job spec");
    }
}

} // namespace lathe
