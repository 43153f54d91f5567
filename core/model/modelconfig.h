#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// Architecture families the engine knows. Llama covers Llama-2/3, Mistral, Qwen2 and SmolLM (RMSNorm, RoPE,
// SwiGLU, grouped-query attention).
enum class ArchFamily { Llama, Opt, Gpt2, Phi, Bert };

const char *familyName(ArchFamily f);

// SliceGPT's rotated (and usually sliced) form of a model. Every norm is a weight-less RMSNorm that divides the sum
// of squares by `normDivisor` (the original hidden size D) whatever the width it sees; the residual stream between
// sub-layers has its own width, and residual connections carry shortcut matrices (TensorRole::AttnShortcut /
// MlpShortcut, absent = identity). A fused but unsliced model has every width = D.
// Stored in config.json as "lathe_slicing" (see docs/compression.md).
struct SlicingLayout {
    int64_t normDivisor = 0; // 0: the model is not in this form
    int64_t embeddingWidth = 0;
    std::vector<int64_t> midWidths;    // per block: the residual between attention and MLP (Phi-2: unused)
    std::vector<int64_t> outputWidths; // per block: the residual after the block
    bool active() const { return normDivisor > 0; }
    nlohmann::json toJson() const;
    static SlicingLayout fromJson(const nlohmann::json &j, int64_t numLayers, const std::string &file);
};

// The dimensions and options of a model, normalised across config.json dialects and GGUF metadata.
struct ModelConfig {
    ArchFamily family = ArchFamily::Llama;
    std::string modelType;    // HF model_type: "llama", "mistral", "qwen2", "opt", "gpt2", "phi", "bert"
    std::string architecture; // HF class name, e.g. "LlamaForCausalLM"
    int64_t hiddenSize = 0;
    int64_t intermediateSize = 0;
    int64_t numLayers = 0;
    int64_t numHeads = 0;
    int64_t numKvHeads = 0;
    int64_t headDim = 0;
    int64_t vocabSize = 0;
    int64_t maxPositions = 0;
    int64_t typeVocabSize = 0;      // BERT
    double normEps = 1e-5;
    double ropeTheta = 10000.0;
    double partialRotaryFactor = 1.0; // Phi-2: 0.4
    bool tiedEmbeddings = false;
    std::string activation;          // "silu", "relu", "gelu_new", "gelu"

    SlicingLayout slicing;

    // Widths of the residual stream: hiddenSize everywhere unless the model is sliced.
    int64_t embeddingWidth() const;
    int64_t blockInputWidth(int layer) const;
    int64_t blockMidWidth(int layer) const; // the residual between attention and MLP (Phi-2: the block's output)
    int64_t blockOutputWidth(int layer) const;
    int64_t headInputWidth() const;

    // The full config.json this was read from (or that was synthesised for GGUF / llama2.c sources); unknown keys
    // are kept so that writing the model back preserves them.
    nlohmann::json hf;

    // Checks the numbers are sane (positive, heads divide the width, nothing absurd). Throws LatheError naming
    // `source`.
    void validate(const std::string &source) const;

    // The RoPE scaling object: rope_scaling (transformers 4) or rope_parameters (transformers 5), holding the type
    // ("rope_type" or "type") and its fields; null when there is none.
    nlohmann::json ropeScaling() const;

    // config.json for writing: `hf` with the normalised fields written over it.
    nlohmann::json toHfJson() const;
};

// The activation a family uses when its config does not name one ("silu" for Llama, "relu" for OPT, ...).
const char *defaultActivation(ArchFamily f);

// Parses a Hugging Face config.json; throws LatheError naming `file` for unknown model types or bad fields.
ModelConfig configFromHfJson(const nlohmann::json &j, const std::string &file);

// Checks a rope_scaling / rope_parameters object (null is fine): a known type, and for linear and llama3 scaling
// finite positive numbers with high_freq_factor > low_freq_factor. LatheError naming `file` and the field: a
// factor of 0 would otherwise turn every logit into NaN.
void checkRopeScaling(const nlohmann::json &scaling, const std::string &file);

} // namespace lathe
