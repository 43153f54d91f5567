#include "enginesetup.h"

#include "base/error.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

namespace lathe::cli {

DeviceChoice parseDevice(const std::optional<std::string> &v) {
    try {
        return DeviceChoice::parse(v.value_or("auto"));
    } catch (const LatheError &e) {
        throw LatheError(std::string("--device: ") + e.what(), e.hint());
    }
}

std::unique_ptr<ComputeBackend> chooseForwardDevice(const std::optional<std::string> &device) {
    const DeviceChoice choice = parseDevice(device);
    if (std::string why; choice.preference == DevicePreference::Cuda && !gpuBackendCompiled(&why))
        throw LatheError("no CUDA backend (" + why + "), so the forward pass cannot run on a GPU",
                         "use --device cpu, or rebuild with the CUDA toolkit installed");
    std::string note;
    auto backend = createBackend(choice, &note); // LatheError for --device cuda without that usable device
    if (hasDeviceForward(*backend)) {
        spdlog::info("forward pass on the GPU: {}", backend->device().label());
        return backend;
    }
    spdlog::info("forward pass on the CPU{}{}", note.empty() ? "" : " (", note.empty() ? "" : note + ")");
    return makeCpuBackend();
}

DeviceForwardOptions forwardOptions(const std::optional<std::string> &precision) {
    DeviceForwardOptions o;
    if (precision)
        o.precision = parsePrecision(*precision);
    return o;
}

LoadedModel openModelWithTokenizer(const std::string &path, const std::optional<std::string> &tokenizerPath) {
    LoadedModel m;
    m.model = openModel(path);
    for (const std::string &w : m.model->warnings)
        spdlog::warn("{}", w);
    m.tokenizer = tokenizerPath ? loadTokenizerFile(*tokenizerPath) : loadTokenizer(*m.model);
    const int64_t vocab = m.model->config.vocabSize;
    if (m.tokenizer->vocabSize() > vocab)
        throw LatheError("the tokenizer has " + std::to_string(m.tokenizer->vocabSize()) +
                             " tokens, more than the model's vocabulary of " + std::to_string(vocab),
                         "the tokenizer does not belong to this model: pass the model's own with --tokenizer");
    spdlog::info("tokenizer: {} ({} tokens)", m.tokenizer->kind(), m.tokenizer->vocabSize());
    return m;
}

} // namespace lathe::cli
