// libFuzzer target: any bytes given as a Hugging Face config.json give a model configuration or a LatheError.

#include "base/error.h"
#include "model/modelconfig.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
    if (j.is_discarded())
        return 0;
    try {
        lathe::configFromHfJson(j, "fuzz/config.json");
    } catch (const lathe::LatheError &) {
    }
    return 0;
}
