#include "slicedexport.h"

#include "error.h"
#include "model.h"
#include "remotecode.h"

namespace lathe {

SlicedExportResult exportSlicedModel(const Model &model, const std::string &dir, HfWriteOptions options,
                                     const ProgressCallback &progress) {
    const ModelConfig &c = model.config;
    require(c.slicing.active(), model.sourcePath, "the model is not sliced", "run SliceGPT first");
    SlicedExportResult r;
    nlohmann::json slicing;
    nlohmann::json shortcuts = nlohmann::json::array();
    for (int l = 0; l < c.numLayers; ++l)
        shortcuts.push_back({{"attn", model.find(TensorRole::AttnShortcut, l) != nullptr},
                             {"mlp", model.find(TensorRole::MlpShortcut, l) != nullptr}});
    auto hasBias = [&](TensorRole role) { return model.find(role, 0, true) != nullptr; };
    slicing["shortcuts"] = shortcuts;
    slicing["biases"] = {{"q", hasBias(TensorRole::AttnQ)},       {"k", hasBias(TensorRole::AttnK)},
                         {"v", hasBias(TensorRole::AttnV)},       {"o", hasBias(TensorRole::AttnO)},
                         {"gate", hasBias(TensorRole::MlpGate)},  {"up", hasBias(TensorRole::MlpUp)},
                         {"down", hasBias(TensorRole::MlpDown)},
                         {"lm_head", model.find(TensorRole::LmHead, -1, true) != nullptr}};
    options.configPatch["lathe_slicing"] = slicing;

    std::string why;
    if (c.family != ArchFamily::Llama)
        why = std::string("modelling code for sliced ") + familyName(c.family) +
              " models is not written yet; the folder loads in Lathe only";
    const nlohmann::json &hf = c.hf;
    for (const char *key : {"rope_scaling", "rope_parameters"})
        if (why.empty() && hf.contains(key) && hf[key].is_object() &&
            hf[key].value("rope_type", hf[key].value("type", std::string("default"))) != "default")
            why = "the shipped modelling code implements default RoPE only; the folder loads in Lathe only";
    if (why.empty()) {
        options.configPatch["model_type"] = "lathe_sliced";
        options.configPatch["architectures"] = nlohmann::json::array({"LatheSlicedForCausalLM"});
        options.configPatch["auto_map"] = {{"AutoConfig", "configuration_lathe_sliced.LatheSlicedConfig"},
                                           {"AutoModelForCausalLM", "modeling_lathe_sliced.LatheSlicedForCausalLM"}};
        options.extraFiles.emplace_back(remotecode::kConfigurationFile, remotecode::kConfiguration);
        options.extraFiles.emplace_back(remotecode::kModelingFile, remotecode::kModeling);
        r.remoteCode = true;
    } else {
        r.note = why;
    }
    r.write = writeHfFolder(model, dir, options, progress);
    return r;
}

} // namespace lathe
