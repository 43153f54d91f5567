// libFuzzer target: any byte string given to the GGUF parser yields a parsed file or a LatheError.

#include "base/error.h"
#include "io/ggufparser.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        lathe::parseGguf(data, size, "fuzz");
    } catch (const lathe::LatheError &) {
    }
    return 0;
}
