#include "export/slicedexport.h"

#include "base/error.h"
#include "engine/transformer.h"
#include "model/architecture.h"
#include "model/model.h"
#include "remotecode.h"

namespace lathe {

HfWriteResult exportSlicedModel(const Model &model, const std::string &dir, HfWriteOptions options,
                                     const ProgressCallback &progress) {
    const ModelConfig &c = model.config;
    require(c.slicing.active(), model.sourcePath, "the model is not sliced", "run SliceGPT first");
    nlohmann::json slicing;
    nlohmann::json shortcuts = nlohmann::json::array();
    for (int l = 0; l < c.numLayers; ++l)
        shortcuts.push_back({{"attn", model.find(TensorRole::AttnShortcut, l) != nullptr},
                             {"mlp", model.find(TensorRole::MlpShortcut, l) != nullptr}});
    auto hasBias = [&](TensorRole role) { return model.find(role, 0, true) != nullptr; };
    slicing["shortcuts"] = shortcuts;
    slicing["biases"] = {{"q", hasBias(TensorRole::AttnQ)},       {"k", hasBias(TensorRole::AttnK)},
                         {"v", hasBias(TensorRole::AttnV)},       {"qkv", hasBias(TensorRole::AttnQkv)},
                         {"o", hasBias(TensorRole::AttnO)},       {"gate", hasBias(TensorRole::MlpGate)},
                         {"up", hasBias(TensorRole::MlpUp)},      {"down", hasBias(TensorRole::MlpDown)},
                         {"lm_head", model.find(TensorRole::LmHead, -1, true) != nullptr}};
    // What the shipped modelling code needs to build any family: the checkpoint's module names and the numbers,
    // independent of each family's config keys.
    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(c.family);
    nlohmann::json names = nlohmann::json::object();
    const std::pair<const char *, TensorRole> roles[] = {
        {"embed", TensorRole::TokenEmbedding}, {"positions", TensorRole::PositionEmbedding},
        {"q", TensorRole::AttnQ},              {"k", TensorRole::AttnK},
        {"v", TensorRole::AttnV},              {"qkv", TensorRole::AttnQkv},
        {"o", TensorRole::AttnO},              {"gate", TensorRole::MlpGate},
        {"up", TensorRole::MlpUp},             {"down", TensorRole::MlpDown},
        {"attn_shortcut", TensorRole::AttnShortcut}, {"mlp_shortcut", TensorRole::MlpShortcut},
        {"lm_head", TensorRole::LmHead}};
    for (const auto &[key, role] : roles)
        if (auto path = adapter.hfModulePath(role))
            names[key] = *path;
    const TensorInfo *positions = model.find(TensorRole::PositionEmbedding);
    if (!positions)
        names.erase("positions");
    const bool phi = c.family == ArchFamily::Phi;
    slicing["names"] = names;
    slicing["arch"] = {
        {"layers", c.numLayers},
        {"heads", c.numHeads},
        {"kv_heads", c.numKvHeads},
        {"head_dim", c.headDim},
        {"rotary_dim", c.family == ArchFamily::Llama ? c.headDim
                       : phi                         ? int64_t(double(c.headDim) * c.partialRotaryFactor)
                                                     : int64_t(0)},
        {"rope_theta", c.ropeTheta},
        {"position_offset", c.family == ArchFamily::Opt ? 2 : 0},
        {"positions", positions ? positions->shape[0] : int64_t(0)},
        {"parallel", phi},
        {"gated", model.find(TensorRole::MlpGate, 0) != nullptr},
        {"fused_qkv", model.find(TensorRole::AttnQkv, 0) != nullptr},
        {"conv1d", c.family == ArchFamily::Gpt2},
        {"activation", c.activation},
        {"norm_eps", c.normEps},
        {"intermediate_size", c.intermediateSize}};
    // RoPE as Lathe computes it, rope scaling included, so that the shipped code needs no scaling logic of its own.
    const cpu::RopeTable rope = ropeTableFor(c, 1, model.sourcePath);
    if (rope.rotaryDim > 0) {
        slicing["arch"]["inv_freq"] = rope.invFreq;
        slicing["arch"]["position_scale"] = rope.positionScale;
    }
    options.configPatch["lathe_slicing"] = slicing;
    options.configPatch["model_type"] = "lathe_sliced";
    options.configPatch["architectures"] = nlohmann::json::array({"LatheSlicedForCausalLM"});
    options.configPatch["auto_map"] = {{"AutoConfig", "configuration_lathe_sliced.LatheSlicedConfig"},
                                       {"AutoModelForCausalLM", "modeling_lathe_sliced.LatheSlicedForCausalLM"}};
    options.extraFiles.emplace_back(remotecode::kConfigurationFile, remotecode::kConfiguration);
    options.extraFiles.emplace_back(remotecode::kModelingFile, remotecode::kModeling);
    return writeHfFolder(model, dir, options, progress);
}

} // namespace lathe
