#include "enginesetup.h"

#include "base/error.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

namespace lathe::cli {

DevicePreference parseDevice(const std::optional<std::string> &v) {
    if (!v || *v == "auto")
        return DevicePreference::Auto;
    if (*v == "cpu")
        return DevicePreference::Cpu;
    if (*v == "cuda" || *v == "gpu")
        return DevicePreference::Cuda;
    throw LatheError("--device must be auto, cpu or cuda, not '" + *v + "'");
}

std::string chooseForwardDevice(const std::optional<std::string> &device) {
    const DevicePreference p = parseDevice(device);
    if (p == DevicePreference::Cpu)
        return "cpu";
    if (p == DevicePreference::Cuda && !deviceForwardCompiled())
        throw LatheError("this build has no CUDA backend, so the forward pass cannot run on a GPU",
                         "use --device cpu, or rebuild with the CUDA toolkit installed");
    std::string note;
    const auto backend = createBackend(p, &note); // LatheError for --device cuda without a usable device
    if (backend->name() == "cuda" && deviceForwardCompiled()) {
        spdlog::info("forward pass on the GPU: {}", backend->device().name);
        return "cuda";
    }
    spdlog::info("forward pass on the CPU{}{}", note.empty() ? "" : " (", note.empty() ? "" : note + ")");
    return "cpu";
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
