#include "enginesetup.h"

#include "error.h"
#include "modelloader.h"

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
    if (p == DevicePreference::Cuda)
        throw LatheError("the CUDA forward pass is not available in this version (model I/O and dequantization "
                         "run on the GPU; the transformer forward pass runs on the CPU)",
                         "use --device cpu");
    if (p == DevicePreference::Auto)
        spdlog::info("forward pass on the CPU");
    return "cpu";
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
