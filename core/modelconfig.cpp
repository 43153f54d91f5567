#include "modelconfig.h"

#include "error.h"

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

} // namespace

ModelConfig configFromHfJson(const json &j, const std::string &file) {
    require(j.is_object(), file, "config.json is not a JSON object");
    ModelConfig c;
    c.hf = j;
    c.modelType = getString(j, "model_type", "");
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string())
        c.architecture = j["architectures"][0].get<std::string>();

    const std::string &t = c.modelType;
    if (t == "llama" || t == "mistral" || t == "qwen2" || t == "smollm") {
        c.family = ArchFamily::Llama;
        c.hiddenSize = getInt(j, "hidden_size", file);
        c.intermediateSize = getInt(j, "intermediate_size", file);
        c.numLayers = getInt(j, "num_hidden_layers", file);
        c.numHeads = getInt(j, "num_attention_heads", file);
        c.numKvHeads = getInt(j, "num_key_value_heads", file, c.numHeads);
        c.vocabSize = getInt(j, "vocab_size", file);
        c.maxPositions = getInt(j, "max_position_embeddings", file, 2048);
        c.normEps = getDouble(j, "rms_norm_eps", file, 1e-6);
        c.ropeTheta = getDouble(j, "rope_theta", file, 10000.0);
        c.tiedEmbeddings = getBool(j, "tie_word_embeddings", false);
        c.activation = getString(j, "hidden_act", "silu");
        c.headDim = getInt(j, "head_dim", file, c.numHeads > 0 ? c.hiddenSize / c.numHeads : 0);
    } else if (t == "opt") {
        c.family = ArchFamily::Opt;
        c.hiddenSize = getInt(j, "hidden_size", file);
        c.intermediateSize = getInt(j, "ffn_dim", file);
        c.numLayers = getInt(j, "num_hidden_layers", file);
        c.numHeads = getInt(j, "num_attention_heads", file);
        c.numKvHeads = c.numHeads;
        c.vocabSize = getInt(j, "vocab_size", file);
        c.maxPositions = getInt(j, "max_position_embeddings", file, 2048);
        c.normEps = 1e-5;
        c.tiedEmbeddings = getBool(j, "tie_word_embeddings", true);
        c.activation = getString(j, "activation_function", "relu");
        const int64_t proj = getInt(j, "word_embed_proj_dim", file, c.hiddenSize);
        require(proj == c.hiddenSize, file, "OPT with word_embed_proj_dim != hidden_size (OPT-350m) is not supported",
                "use another OPT size");
        require(getBool(j, "do_layer_norm_before", true), file,
                "OPT with post-layer-norm (do_layer_norm_before=false, OPT-350m) is not supported");
    } else if (t == "gpt2") {
        c.family = ArchFamily::Gpt2;
        c.hiddenSize = getInt(j, "n_embd", file);
        c.numLayers = getInt(j, "n_layer", file);
        c.numHeads = getInt(j, "n_head", file);
        c.numKvHeads = c.numHeads;
        c.intermediateSize = getInt(j, "n_inner", file, 4 * c.hiddenSize);
        c.vocabSize = getInt(j, "vocab_size", file);
        c.maxPositions = getInt(j, "n_positions", file, 1024);
        c.normEps = getDouble(j, "layer_norm_epsilon", file, 1e-5);
        c.tiedEmbeddings = getBool(j, "tie_word_embeddings", true);
        c.activation = getString(j, "activation_function", "gelu_new");
    } else if (t == "phi") {
        c.family = ArchFamily::Phi;
        c.hiddenSize = getInt(j, "hidden_size", file);
        c.intermediateSize = getInt(j, "intermediate_size", file);
        c.numLayers = getInt(j, "num_hidden_layers", file);
        c.numHeads = getInt(j, "num_attention_heads", file);
        c.numKvHeads = getInt(j, "num_key_value_heads", file, c.numHeads);
        c.vocabSize = getInt(j, "vocab_size", file);
        c.maxPositions = getInt(j, "max_position_embeddings", file, 2048);
        c.normEps = getDouble(j, "layer_norm_eps", file, 1e-5);
        c.ropeTheta = getDouble(j, "rope_theta", file, 10000.0);
        c.partialRotaryFactor = getDouble(j, "partial_rotary_factor", file, 0.5);
        c.tiedEmbeddings = getBool(j, "tie_word_embeddings", false);
        c.activation = getString(j, "hidden_act", "gelu_new");
    } else if (t == "bert") {
        c.family = ArchFamily::Bert;
        c.hiddenSize = getInt(j, "hidden_size", file);
        c.intermediateSize = getInt(j, "intermediate_size", file);
        c.numLayers = getInt(j, "num_hidden_layers", file);
        c.numHeads = getInt(j, "num_attention_heads", file);
        c.numKvHeads = c.numHeads;
        c.vocabSize = getInt(j, "vocab_size", file);
        c.maxPositions = getInt(j, "max_position_embeddings", file, 512);
        c.typeVocabSize = getInt(j, "type_vocab_size", file, 2);
        c.normEps = getDouble(j, "layer_norm_eps", file, 1e-12);
        c.tiedEmbeddings = true; // only relevant to the MLM head, which the engine does not use
        c.activation = getString(j, "hidden_act", "gelu");
    } else {
        throw LatheError(file + ": unsupported architecture '" + (t.empty() ? std::string("(no model_type)") : t) + "'" +
                             (c.architecture.empty() ? std::string() : " (" + c.architecture + ")"),
                         "supported model_type values: llama, mistral, qwen2, opt, gpt2, phi, bert");
    }
    if (c.headDim == 0 && c.numHeads > 0)
        c.headDim = c.hiddenSize / c.numHeads;
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
    j["model_type"] = modelType;
    if (!architecture.empty())
        j["architectures"] = json::array({architecture});
    switch (family) {
    case ArchFamily::Llama:
        j["hidden_size"] = hiddenSize;
        j["intermediate_size"] = intermediateSize;
        j["num_hidden_layers"] = numLayers;
        j["num_attention_heads"] = numHeads;
        j["num_key_value_heads"] = numKvHeads;
        j["vocab_size"] = vocabSize;
        j["max_position_embeddings"] = maxPositions;
        j["rms_norm_eps"] = normEps;
        j["rope_theta"] = ropeTheta;
        j["tie_word_embeddings"] = tiedEmbeddings;
        j["hidden_act"] = activation.empty() ? "silu" : activation;
        if (headDim * numHeads != hiddenSize)
            j["head_dim"] = headDim;
        break;
    case ArchFamily::Opt:
        j["hidden_size"] = hiddenSize;
        j["ffn_dim"] = intermediateSize;
        j["num_hidden_layers"] = numLayers;
        j["num_attention_heads"] = numHeads;
        j["vocab_size"] = vocabSize;
        j["max_position_embeddings"] = maxPositions;
        j["word_embed_proj_dim"] = hiddenSize;
        j["tie_word_embeddings"] = tiedEmbeddings;
        break;
    case ArchFamily::Gpt2:
        j["n_embd"] = hiddenSize;
        j["n_inner"] = intermediateSize;
        j["n_layer"] = numLayers;
        j["n_head"] = numHeads;
        j["vocab_size"] = vocabSize;
        j["n_positions"] = maxPositions;
        j["layer_norm_epsilon"] = normEps;
        j["tie_word_embeddings"] = tiedEmbeddings;
        break;
    case ArchFamily::Phi:
        j["hidden_size"] = hiddenSize;
        j["intermediate_size"] = intermediateSize;
        j["num_hidden_layers"] = numLayers;
        j["num_attention_heads"] = numHeads;
        j["num_key_value_heads"] = numKvHeads;
        j["vocab_size"] = vocabSize;
        j["max_position_embeddings"] = maxPositions;
        j["layer_norm_eps"] = normEps;
        j["rope_theta"] = ropeTheta;
        j["partial_rotary_factor"] = partialRotaryFactor;
        j["tie_word_embeddings"] = tiedEmbeddings;
        break;
    case ArchFamily::Bert:
        j["hidden_size"] = hiddenSize;
        j["intermediate_size"] = intermediateSize;
        j["num_hidden_layers"] = numLayers;
        j["num_attention_heads"] = numHeads;
        j["vocab_size"] = vocabSize;
        j["max_position_embeddings"] = maxPositions;
        j["type_vocab_size"] = typeVocabSize;
        j["layer_norm_eps"] = normEps;
        break;
    }
    return j;
}

} // namespace lathe
