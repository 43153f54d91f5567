// Reader for GGUF files (llama.cpp). Metadata "<arch>.*" becomes the ModelConfig; llama.cpp tensor names map to the
// same roles and canonical HF names as the other readers. GGUF lists dims fastest-first, so a weight with
// dims [in, out] is the row-major (out x in) matrix. For arch "llama" (also Mistral/SmolLM exports), llama.cpp's
// converter permuted q/k rows to interleaved RoPE; those tensors (and their biases) are marked RopeUnpermute to get HF's rotate-half
// order back. Qwen2 GGUFs use rotate-half (NEOX) already and are not permuted.

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/ggufparser.h"
#include "io/modelloader.h"
#include "model/architecture.h"

#include <spdlog/spdlog.h>

#include <filesystem>

namespace lathe {

namespace {

using nlohmann::json;

int64_t metaInt(const json &meta, const std::string &key, const std::string &file, std::optional<int64_t> fallback) {
    auto it = meta.find(key);
    if (it == meta.end()) {
        require(fallback.has_value(), file, "metadata '" + key + "' is missing");
        return *fallback;
    }
    require(it->is_number_integer() || it->is_number_unsigned(), file, "metadata '" + key + "' is not an integer");
    return it->get<int64_t>();
}

double metaFloat(const json &meta, const std::string &key, double fallback) {
    auto it = meta.find(key);
    return (it != meta.end() && it->is_number()) ? it->get<double>() : fallback;
}

struct ArchNames {
    const char *modelType;
    const char *architecture;
};

ArchNames namesFor(const std::string &arch) {
    if (arch == "qwen2")
        return {"qwen2", "Qwen2ForCausalLM"};
    if (arch == "gpt2")
        return {"gpt2", "GPT2LMHeadModel"};
    if (arch == "phi2")
        return {"phi", "PhiForCausalLM"};
    if (arch == "bert")
        return {"bert", "BertModel"};
    return {"llama", "LlamaForCausalLM"};
}

} // namespace

std::unique_ptr<Model> openGguf(const std::string &path) {
    auto file = MappedFile::open(path);
    GgufFile g = parseGguf(file->data(), file->size(), path);
    const json &meta = g.metadata;
    require(meta.contains("general.architecture") && meta["general.architecture"].is_string(), path,
            "metadata 'general.architecture' is missing");
    const std::string arch = meta["general.architecture"].get<std::string>();

    auto model = std::make_unique<Model>();
    model->format = SourceFormat::Gguf;
    model->sourcePath = path;
    model->sourceFiles = {path};
    model->sourceBytes = file->size();

    ModelConfig &c = model->config;
    c.family = familyFromGgufArch(arch, path);
    const ArchNames names = namesFor(arch);
    c.modelType = names.modelType;
    c.architecture = names.architecture;
    c.activation = defaultActivation(c.family);
    const std::string p = arch + ".";
    c.hiddenSize = metaInt(meta, p + "embedding_length", path, std::nullopt);
    c.intermediateSize = metaInt(meta, p + "feed_forward_length", path, std::nullopt);
    c.numLayers = metaInt(meta, p + "block_count", path, std::nullopt);
    c.numHeads = metaInt(meta, p + "attention.head_count", path, std::nullopt);
    c.numKvHeads = metaInt(meta, p + "attention.head_count_kv", path, c.numHeads);
    c.maxPositions = metaInt(meta, p + "context_length", path, 2048);
    c.headDim = c.numHeads > 0 ? c.hiddenSize / c.numHeads : 0;
    c.headDim = metaInt(meta, p + "attention.key_length", path, c.headDim);
    c.ropeTheta = metaFloat(meta, p + "rope.freq_base", 10000.0);
    c.normEps = metaFloat(meta, p + "attention.layer_norm_rms_epsilon", metaFloat(meta, p + "attention.layer_norm_epsilon", 1e-5));
    const int64_t ropeDims = metaInt(meta, p + "rope.dimension_count", path, c.headDim);
    if (c.headDim > 0)
        c.partialRotaryFactor = double(ropeDims) / double(c.headDim);
    int64_t vocabFromTokens = 0;
    if (meta.contains("tokenizer.ggml.tokens") && meta["tokenizer.ggml.tokens"].is_array())
        vocabFromTokens = int64_t(meta["tokenizer.ggml.tokens"].size());
    c.vocabSize = metaInt(meta, p + "vocab_size", path, vocabFromTokens > 0 ? std::optional<int64_t>(vocabFromTokens) : std::nullopt);
    c.typeVocabSize = c.family == ArchFamily::Bert ? 2 : 0;

    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(c.family);
    bool hasOutput = false;
    for (const auto &gt : g.tensors) {
        TensorInfo t;
        t.sourceName = gt.name;
        const RoleMatch m = adapter.classifyGguf(gt.name);
        t.role = m.role;
        t.layer = m.layer;
        t.isBias = m.isBias;
        hasOutput |= (m.role == TensorRole::LmHead && !m.isBias);
        const auto hfName = m.role == TensorRole::Unknown || m.role == TensorRole::Buffer
                                ? std::nullopt
                                : adapter.hfName(m.role, m.layer, m.isBias);
        t.name = hfName ? *hfName : gt.name;
        for (auto it = gt.dims.rbegin(); it != gt.dims.rend(); ++it)
            t.shape.push_back(int64_t(*it));
        t.dtype = gt.dtype;
        t.storage = file;
        t.offset = gt.offset;
        t.nbytes = gt.nbytes;
        if (arch == "llama" && (m.role == TensorRole::AttnQ || m.role == TensorRole::AttnK)) { // weights and biases
            t.transform = TensorTransform::RopeUnpermute;
            t.transformHeads = int(m.role == TensorRole::AttnQ ? c.numHeads : c.numKvHeads);
        }
        if (m.role == TensorRole::Unknown)
            model->warnings.push_back("tensor '" + gt.name + "' is not part of the " + arch + " layout; kept as is");
        model->addTensor(std::move(t));
    }
    c.tiedEmbeddings = !hasOutput && c.family != ArchFamily::Bert;
    if (c.family == ArchFamily::Bert)
        c.tiedEmbeddings = true;

    // Keep the GGUF metadata (tokenizer included) for the engine; synthesise the config.json a writer will need.
    c.hf = json::object();
    for (const char *k : {"bos_token_id", "eos_token_id"}) {
        const std::string key = std::string("tokenizer.ggml.") + k;
        if (meta.contains(key))
            c.hf[k] = meta[key];
    }
    if (meta.value(p + "rope.scaling.type", "") == "linear")
        c.hf["rope_scaling"] = {{"type", "linear"}, {"factor", metaFloat(meta, p + "rope.scaling.factor", 1.0)}};
    c.hf = c.toHfJson();
    c.validate(path);
    model->tokenizer.kind = meta.contains("tokenizer.ggml.model") ? "gguf" : "";
    model->metadata = std::move(g.metadata); // `meta` refers to it: last use above
    checkModelConsistency(*model);
    for (const auto &w : model->warnings)
        spdlog::warn("{}: {}", path, w);
    return model;
}

} // namespace lathe
