// libFuzzer target: any bytes given as a compression job spec are refused with a LatheError or pass every check,
// the model-dependent ones included (targets regex, layer ranges, widths, lengths), against the tiny Llama
// fixture; never a crash, a hang or a huge allocation. Nothing is written: the output folder does not exist and
// checkCompressionSpec creates nothing.

#include "base/error.h"
#include "run/compressionrun.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return 0;
    try {
        lathe::CompressionSpec s = lathe::CompressionSpec::fromJson(j, LATHE_SOURCE_DIR);
        s.model = LATHE_SOURCE_DIR "/tests/fixtures/hf-llama";
        s.outputDir = "/nonexistent/lathe-fuzz-run";
        s.device = "cpu";
        lathe::checkCompressionSpec(s);
    } catch (const lathe::LatheError &) {
    }
    return 0;
}
