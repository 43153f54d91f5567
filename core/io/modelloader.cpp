#include "io/modelloader.h"

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/safetensorsheader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;

std::unique_ptr<Model> openModel(const std::string &path) {
    std::error_code ec;
    const fs::path p(path);
    if (fs::is_directory(p, ec))
        return openHfFolder(path);
    require(fs::exists(p, ec), path, "no such file or folder");
    if (p.extension() == ".safetensors") {
        // A lone shard: check it first so that a corrupt file is reported as such, then open its folder.
        auto file = MappedFile::open(path);
        parseSafetensorsHeader(file->data(), file->size(), path);
        const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
        require(fs::exists(dir / "config.json"), path, "no config.json next to the file",
                "open the folder that holds config.json and the safetensors files");
        return openHfFolder(dir.string());
    }
    char magic[4] = {0, 0, 0, 0};
    {
        const auto file = MappedFile::open(path); // a FIFO or device is refused, not read
        std::memcpy(magic, file->data(), std::min<size_t>(4, size_t(file->size())));
    }
    if (std::memcmp(magic, "GGUF", 4) == 0)
        return openGguf(path);
    if (p.extension() == ".gguf")
        throw LatheError(path + ": bad magic: not a GGUF file", "the file is corrupt or has the wrong extension");
    if (p.extension() == ".bin")
        return openLlama2c(path);
    throw LatheError(path + ": unrecognised model format",
                     "open a Hugging Face folder (config.json + *.safetensors), a .gguf file or a llama2.c .bin");
}

} // namespace lathe
