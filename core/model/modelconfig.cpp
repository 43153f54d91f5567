#include "model/modelconfig.h"

#include "base/error.h"

#include <cmath>

namespace lathe {

const char *familyName(ArchFamily f) {
    switch (f) {
    case ArchFamily::Llama: return "llama";
    case ArchFamily::Opt: return "opt";
    case ArchFamily::Gpt2: return "gpt2";
    case ArchFamily::Phi: return "phi";
    case ArchFamily::Bert: return "bert";
    }
    return "?";
}

namespace {

using nlohmann::json;

int64_t getInt(const json &j, const char *key, const std::string &file, std::optional<int64_t> fallback = std::nullopt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        require(fallback.has_value(), file, std::string("config field '") + key + "' is missing");
        return *fallback;
    }
    require(it->is_number_integer() || it->is_number_unsigned(), file,
            std::string("config field '") + key + "' is not an integer");
    return it->get<int64_t>();
}

double getDouble(const json &j, const char *key, const std::string &file, double fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
        return fallback;
    require(it->is_number(), file, std::string("config field '") + key + "' is not a number");
    return it->get<double>();
}

bool getBool(const json &j, const char *key, bool fallback) {
    auto it = j.find(key);
    return (it != j.end() && it->is_boolean()) ? it->get<bool>() : fallback;
}

std::string getString(const json &j, const char *key, const std::string &fallback) {
    auto it = j.find(key);
    return (it != j.end() && it->is_string()) ? it->get<std::string>() : fallback;
}

// config.json key names and defaults of one family; used for reading and for writing, so the two cannot drift.
struct HfKeys {
    ArchFamily family;
    const char *hidden, *inter, *layers, *heads;
    const char *kvHeads;   // nullptr: kv heads = heads
    const char *positions;
    int64_t positionsDefault;
    const char *eps;       // nullptr: fixed epsDefault
    double epsDefault;
    bool tiedDefault;
    const char *activationKey;
    const char *activationDefault;
    bool rope;
};

constexpr HfKeys kKeys[] = {
    {ArchFamily::Llama, "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
     "num_key_value_heads", "max_position_embeddings", 2048, "rms_norm_eps", 1e-6, false, "hidden_act", "silu", true},
    {ArchFamily::Opt, "hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads", nullptr,
     "max_position_embeddings", 2048, nullptr, 1e-5, true, "activation_function", "relu", false},
    {ArchFamily::Gpt2, "n_embd", "n_inner", "n_layer", "n_head", nullptr, "n_positions", 1024, "layer_norm_epsilon",
     1e-5, true, "activation_function", "gelu_new", false},
    {ArchFamily::Phi, "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
     "num_key_value_heads", "max_position_embeddings", 2048, "layer_norm_eps", 1e-5, false, "hidden_act", "gelu_new",
     true},
    {ArchFamily::Bert, "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", nullptr,
     "max_position_embeddings", 512, "layer_norm_eps", 1e-12, true, "hidden_act", "gelu", false},
};

const HfKeys &keysFor(ArchFamily f) {
    for (const auto &k : kKeys)
        if (k.family == f)
            return k;
    return kKeys[0];
}

std::optional<ArchFamily> familyOfModelType(const std::string &t) {
    if (t == "llama" || t == "mistral" || t == "qwen2" || t == "smollm")
        return ArchFamily::Llama;
    if (t == "opt")
        return ArchFamily::Opt;
    if (t == "gpt2")
        return ArchFamily::Gpt2;
    if (t == "phi")
        return ArchFamily::Phi;
    if (t == "bert")
        return ArchFamily::Bert;
    return std::nullopt;
}

} // namespace

const char *defaultActivation(ArchFamily f) { return keysFor(f).activationDefault; }

nlohmann::json SlicingLayout::toJson() const {
    return json{{"norm_divisor", normDivisor}, {"embedding_width", embeddingWidth}, {"mid_widths", midWidths},
                {"output_widths", outputWidths}};
}

SlicingLayout SlicingLayout::fromJson(const nlohmann::json &j, int64_t numLayers, const std::string &file) {
    require(j.is_object(), file, "lathe_slicing is not an object");
    SlicingLayout s;
    try {
        s.normDivisor = j.at("norm_divisor").get<int64_t>();
        s.embeddingWidth = j.at("embedding_width").get<int64_t>();
        s.midWidths = j.at("mid_widths").get<std::vector<int64_t>>();
        s.outputWidths = j.at("output_widths").get<std::vector<int64_t>>();
    } catch (const json::exception &e) {
        throw LatheError(file + ": lathe_slicing is malformed: " + e.what());
    }
    require(s.normDivisor > 0 && s.embeddingWidth > 0, file, "lathe_slicing has non-positive widths");
    require(int64_t(s.midWidths.size()) == numLayers && int64_t(s.outputWidths.size()) == numLayers, file,
            "lathe_slicing must give one mid and one output width per block");
    for (size_t i = 0; i < s.midWidths.size(); ++i)
        require(s.midWidths[i] > 0 && s.outputWidths[i] > 0 && s.midWidths[i] <= s.normDivisor &&
                    s.outputWidths[i] <= s.normDivisor,
                file, "lathe_slicing widths must lie in 1..norm_divisor");
    return s;
}

int64_t ModelConfig::embeddingWidth() const { return slicing.active() ? slicing.embeddingWidth : hiddenSize; }

int64_t ModelConfig::blockInputWidth(int layer) const {
    if (!slicing.active())
        return hiddenSize;
    return layer == 0 ? slicing.embeddingWidth : slicing.outputWidths[size_t(layer - 1)];
}

int64_t ModelConfig::blockMidWidth(int layer) const {
    if (!slicing.active())
        return hiddenSize;
    return family == ArchFamily::Phi ? slicing.outputWidths[size_t(layer)] : slicing.midWidths[size_t(layer)];
}

int64_t ModelConfig::blockOutputWidth(int layer) const {
    return slicing.active() ? slicing.outputWidths[size_t(layer)] : hiddenSize;
}

int64_t ModelConfig::headInputWidth() const {
    return slicing.active() && !slicing.outputWidths.empty() ? slicing.outputWidths.back() : hiddenSize;
}

void checkRopeScaling(const json &scaling, const std::string &file) {
    if (!scaling.is_object())
        return;
    auto text = [&](const char *key, const std::string &fallback) {
        const auto it = scaling.find(key);
        return it != scaling.end() && it->is_string() ? it->get<std::string>() : fallback;
    };
    const std::string type = text("rope_type", text("type", "default"));
    auto number = [&](const char *key, double fallback) {
        const auto it = scaling.find(key);
        if (it == scaling.end() || it->is_null())
            return fallback;
        require(it->is_number(), file, std::string("rope scaling field '") + key + "' is not a number");
        const double v = it->get<double>();
        require(std::isfinite(v) && v > 0, file,
                std::string("rope scaling field '") + key + "' is " + it->dump() + ", not a positive number",
                "fix config.json: a factor of 0 makes every position's rotation undefined");
        return v;
    };
    if (type == "linear") {
        number("factor", 1.0);
    } else if (type == "llama3") {
        number("factor", 8.0);
        number("original_max_position_embeddings", 8192.0);
        require(number("high_freq_factor", 4.0) > number("low_freq_factor", 1.0), file,
                "rope scaling: high_freq_factor must be above low_freq_factor");
    } else if (type != "default") {
        throw LatheError(file + ": rope scaling '" + type + "' is not supported",
                         "supported rope_scaling types: linear, llama3");
    }
}

json ModelConfig::ropeScaling() const {
    if (hf.is_object()) {
        if (hf.contains("rope_scaling") && hf["rope_scaling"].is_object())
            return hf["rope_scaling"];
        if (hf.contains("rope_parameters") && hf["rope_parameters"].is_object())
            return hf["rope_parameters"];
    }
    return nullptr;
}

ModelConfig configFromHfJson(const json &j, const std::string &file) {
    require(j.is_object(), file, "config.json is not a JSON object");
    ModelConfig c;
    c.hf = j;
    c.modelType = getString(j, "model_type", "");
    // A sliced model written by Lathe names its own model_type (its remote code); the base family is recorded.
    const bool sliced = j.contains("lathe_slicing");
    if (sliced)
        c.modelType = getString(j["lathe_slicing"], "base_model_type", c.modelType);
    // So does LoSparse's compact form (the HF reader merges its linears back: io/hfloader.cpp).
    if (j.contains("lathe_losparse") && j["lathe_losparse"].is_object())
        c.modelType = getString(j["lathe_losparse"], "base_model_type", c.modelType);
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string())
        c.architecture = j["architectures"][0].get<std::string>();
    const auto family = familyOfModelType(c.modelType);
    if (!family)
        throw LatheError(file + ": unsupported architecture '" +
                             (c.modelType.empty() ? std::string("(no model_type)") : c.modelType) + "'" +
                             (c.architecture.empty() ? std::string() : " (" + c.architecture + ")"),
                         "supported model_type values: llama, mistral, qwen2, opt, gpt2, phi, bert");
    c.family = *family;
    const HfKeys &k = keysFor(c.family);
    c.hiddenSize = getInt(j, k.hidden, file);
    // GPT-2 leaves n_inner null for the usual 4 x hidden
    c.intermediateSize = getInt(j, k.inter, file, c.family == ArchFamily::Gpt2 ? std::optional<int64_t>(4 * c.hiddenSize) : std::nullopt);
    c.numLayers = getInt(j, k.layers, file);
    c.numHeads = getInt(j, k.heads, file);
    c.numKvHeads = k.kvHeads ? getInt(j, k.kvHeads, file, c.numHeads) : c.numHeads;
    c.vocabSize = getInt(j, "vocab_size", file);
    c.maxPositions = getInt(j, k.positions, file, k.positionsDefault);
    c.normEps = k.eps ? getDouble(j, k.eps, file, k.epsDefault) : k.epsDefault;
    c.tiedEmbeddings = getBool(j, "tie_word_embeddings", k.tiedDefault);
    c.activation = getString(j, k.activationKey, k.activationDefault);
    // transformers >= 5 moves rope_theta, partial_rotary_factor and the scaling fields into "rope_parameters".
    static const json kEmpty = json::object();
    const json &rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : kEmpty;
    if (k.rope) {
        c.ropeTheta = getDouble(j, "rope_theta", file, getDouble(rope, "rope_theta", file, 10000.0));
        require(std::isfinite(c.ropeTheta) && c.ropeTheta > 0, file,
                "rope_theta " + std::to_string(c.ropeTheta) + " is not a positive number");
        if (j.contains("rope_scaling") && j["rope_scaling"].is_object())
            checkRopeScaling(j["rope_scaling"], file);
        else
            checkRopeScaling(rope, file);
    }
    c.headDim = c.numHeads > 0 ? c.hiddenSize / c.numHeads : 0;
    switch (c.family) {
    case ArchFamily::Llama:
        c.headDim = getInt(j, "head_dim", file, c.headDim);
        break;
    case ArchFamily::Opt:
        require(getInt(j, "word_embed_proj_dim", file, c.hiddenSize) == c.hiddenSize, file,
                "OPT with word_embed_proj_dim != hidden_size (OPT-350m) is not supported", "use another OPT size");
        require(getBool(j, "do_layer_norm_before", true), file,
                "OPT with post-layer-norm (do_layer_norm_before=false, OPT-350m) is not supported");
        break;
    case ArchFamily::Phi:
        c.partialRotaryFactor = getDouble(j, "partial_rotary_factor", file,
                                          getDouble(rope, "partial_rotary_factor", file, 0.5));
        break;
    case ArchFamily::Bert:
        c.typeVocabSize = getInt(j, "type_vocab_size", file, 2);
        c.tiedEmbeddings = true; // BertForMaskedLM's decoder is the word embedding unless the file has its own
        break;
    case ArchFamily::Gpt2:
        break;
    }
    if (sliced) {
        c.slicing = SlicingLayout::fromJson(j["lathe_slicing"], c.numLayers, file);
        c.hf["model_type"] = c.modelType;
        c.hf.erase("lathe_slicing");
        c.hf.erase("auto_map");
    }
    c.validate(file);
    return c;
}

void ModelConfig::validate(const std::string &source) const {
    // Upper bounds are far beyond any real model (Llama-3-405B: hidden 16384, 126 layers, vocab 128256) and keep a
    // corrupt header from asking for terabytes.
    auto inRange = [&](int64_t v, int64_t hi, const char *what) {
        require(v > 0 && v <= hi, source, std::string(what) + " = " + std::to_string(v) + " is out of range (1.." +
                                              std::to_string(hi) + ")");
    };
    inRange(hiddenSize, 1 << 17, "hidden size");
    inRange(intermediateSize, 1 << 20, "intermediate size");
    inRange(numLayers, 4096, "layer count");
    inRange(numHeads, 4096, "head count");
    inRange(numKvHeads, 4096, "key/value head count");
    inRange(vocabSize, 1 << 24, "vocabulary size");
    inRange(maxPositions, 1 << 24, "maximum positions");
    inRange(headDim, 1 << 14, "head dimension");
    require(numHeads % numKvHeads == 0, source,
            "head count " + std::to_string(numHeads) + " is not a multiple of the key/value head count " +
                std::to_string(numKvHeads));
    if (family != ArchFamily::Llama)
        require(headDim * numHeads == hiddenSize, source,
                "hidden size " + std::to_string(hiddenSize) + " is not heads x head dimension");
    require(normEps > 0 && normEps < 1, source, "norm epsilon " + std::to_string(normEps) + " is out of range");
}

nlohmann::json ModelConfig::toHfJson() const {
    json j = hf.is_object() ? hf : json::object();
    const HfKeys &k = keysFor(family);
    j["model_type"] = modelType;
    if (!architecture.empty())
        j["architectures"] = json::array({architecture});
    j[k.hidden] = hiddenSize;
    j[k.inter] = intermediateSize;
    j[k.layers] = numLayers;
    j[k.heads] = numHeads;
    if (k.kvHeads)
        j[k.kvHeads] = numKvHeads;
    j["vocab_size"] = vocabSize;
    j[k.positions] = maxPositions;
    if (k.eps)
        j[k.eps] = normEps;
    if (family != ArchFamily::Bert)
        j["tie_word_embeddings"] = tiedEmbeddings;
    if (!activation.empty())
        j[k.activationKey] = activation;
    if (k.rope)
        j["rope_theta"] = ropeTheta;
    switch (family) {
    case ArchFamily::Llama:
        if (headDim * numHeads != hiddenSize)
            j["head_dim"] = headDim;
        break;
    case ArchFamily::Opt:
        j["word_embed_proj_dim"] = hiddenSize;
        break;
    case ArchFamily::Phi:
        j["partial_rotary_factor"] = partialRotaryFactor;
        break;
    case ArchFamily::Bert:
        j["type_vocab_size"] = typeVocabSize;
        break;
    case ArchFamily::Gpt2:
        break;
    }
    if (slicing.active()) {
        json s = slicing.toJson();
        s["base_model_type"] = modelType;
        j["lathe_slicing"] = s;
        j["tie_word_embeddings"] = false;
    }
    return j;
}

} // namespace lathe
