// libFuzzer target: any byte string given to the safetensors header parser yields a header or a LatheError.

#include "base/error.h"
#include "io/safetensorsheader.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        lathe::parseSafetensorsHeader(data, size, "fuzz");
    } catch (const lathe::LatheError &) {
    }
    return 0;
}
