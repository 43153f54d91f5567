// libFuzzer target: any bytes given as a tokenizer.json load as a tokenizer that encodes and decodes a fixed text,
// or are refused with a LatheError.

#include "base/error.h"
#include "io/tokenizerloader.h"
#include "tokenizers/tokenizer.h"

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const std::string path = "/tmp/lathe-fuzz-" + std::to_string(::getpid()) + "/tokenizer.json";
    static const bool made = [] {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
        return !ec;
    }();
    if (!made)
        return 0;
    std::FILE *f = std::fopen(path.c_str(), "wb");
    if (!f)
        return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        auto tok = lathe::loadTokenizerFile(path);
        const auto ids = tok->encode("Once upon a time, 1 ½ cafés — «quotes» 日本語 🙂\n\tend");
        tok->decode(ids);
    } catch (const lathe::LatheError &) {
    }
    return 0;
}
