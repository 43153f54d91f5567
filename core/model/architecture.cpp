#include "model/architecture.h"

#include "base/error.h"

#include <cctype>
#include <cstring>
#include <string_view>

namespace lathe {

namespace {

using R = TensorRole;
using P = ArchitectureAdapter::Pattern;

constexpr P kLlamaHf[] = {
    {"model.embed_tokens", R::TokenEmbedding},
    {"model.layers.{L}.input_layernorm", R::AttnNorm},
    {"model.layers.{L}.self_attn.q_proj", R::AttnQ},
    {"model.layers.{L}.self_attn.k_proj", R::AttnK},
    {"model.layers.{L}.self_attn.v_proj", R::AttnV},
    {"model.layers.{L}.self_attn.o_proj", R::AttnO},
    {"model.layers.{L}.post_attention_layernorm", R::MlpNorm},
    {"model.layers.{L}.mlp.gate_proj", R::MlpGate},
    {"model.layers.{L}.mlp.up_proj", R::MlpUp},
    {"model.layers.{L}.mlp.down_proj", R::MlpDown},
    {"model.layers.{L}.attn_shortcut", R::AttnShortcut},
    {"model.layers.{L}.mlp_shortcut", R::MlpShortcut},
    {"model.norm", R::FinalNorm},
    {"lm_head", R::LmHead},
};

constexpr P kOptHf[] = {
    {"model.decoder.embed_tokens", R::TokenEmbedding},
    {"model.decoder.embed_positions", R::PositionEmbedding},
    {"model.decoder.layers.{L}.self_attn_layer_norm", R::AttnNorm},
    {"model.decoder.layers.{L}.self_attn.q_proj", R::AttnQ},
    {"model.decoder.layers.{L}.self_attn.k_proj", R::AttnK},
    {"model.decoder.layers.{L}.self_attn.v_proj", R::AttnV},
    {"model.decoder.layers.{L}.self_attn.out_proj", R::AttnO},
    {"model.decoder.layers.{L}.final_layer_norm", R::MlpNorm},
    {"model.decoder.layers.{L}.fc1", R::MlpUp},
    {"model.decoder.layers.{L}.fc2", R::MlpDown},
    {"model.decoder.layers.{L}.attn_shortcut", R::AttnShortcut},
    {"model.decoder.layers.{L}.mlp_shortcut", R::MlpShortcut},
    {"model.decoder.final_layer_norm", R::FinalNorm},
    {"lm_head", R::LmHead},
};

constexpr P kGpt2Hf[] = {
    {"wte", R::TokenEmbedding},
    {"wpe", R::PositionEmbedding},
    {"h.{L}.ln_1", R::AttnNorm},
    {"h.{L}.attn.c_attn", R::AttnQkv},
    {"h.{L}.attn.c_proj", R::AttnO},
    {"h.{L}.ln_2", R::MlpNorm},
    {"h.{L}.mlp.c_fc", R::MlpUp},
    {"h.{L}.mlp.c_proj", R::MlpDown},
    {"h.{L}.attn_shortcut", R::AttnShortcut},
    {"h.{L}.mlp_shortcut", R::MlpShortcut},
    {"ln_f", R::FinalNorm},
    {"lm_head", R::LmHead},
};

constexpr P kPhiHf[] = {
    {"model.embed_tokens", R::TokenEmbedding},
    {"model.layers.{L}.input_layernorm", R::AttnNorm},
    {"model.layers.{L}.self_attn.q_proj", R::AttnQ},
    {"model.layers.{L}.self_attn.k_proj", R::AttnK},
    {"model.layers.{L}.self_attn.v_proj", R::AttnV},
    {"model.layers.{L}.self_attn.dense", R::AttnO},
    {"model.layers.{L}.mlp.fc1", R::MlpUp},
    {"model.layers.{L}.mlp.fc2", R::MlpDown},
    {"model.layers.{L}.attn_shortcut", R::AttnShortcut},
    {"model.final_layernorm", R::FinalNorm},
    {"lm_head", R::LmHead},
};

constexpr P kBertHf[] = {
    {"embeddings.word_embeddings", R::TokenEmbedding},
    {"embeddings.position_embeddings", R::PositionEmbedding},
    {"embeddings.token_type_embeddings", R::TokenTypeEmbedding},
    {"embeddings.LayerNorm", R::EmbeddingNorm},
    {"encoder.layer.{L}.attention.self.query", R::AttnQ},
    {"encoder.layer.{L}.attention.self.key", R::AttnK},
    {"encoder.layer.{L}.attention.self.value", R::AttnV},
    {"encoder.layer.{L}.attention.output.dense", R::AttnO},
    {"encoder.layer.{L}.attention.output.LayerNorm", R::AttnNorm},
    {"encoder.layer.{L}.intermediate.dense", R::MlpUp},
    {"encoder.layer.{L}.output.dense", R::MlpDown},
    {"encoder.layer.{L}.output.LayerNorm", R::MlpNorm},
    {"pooler.dense", R::Pooler},
    // BertForMaskedLM's head, outside the "bert." prefix. The decoder weight is usually tied (absent); its bias is
    // saved as cls.predictions.bias (and sometimes again as cls.predictions.decoder.bias: the loader keeps one).
    {"cls.predictions.transform.dense", R::HeadTransform},
    {"cls.predictions.transform.LayerNorm", R::HeadNorm},
    {"cls.predictions.decoder", R::LmHead},
    {"cls.predictions", R::LmHead},
};

// llama.cpp tensor names (gguf-py constants.py, MODEL_TENSOR names)
constexpr P kLlamaGguf[] = {
    {"token_embd", R::TokenEmbedding}, {"blk.{L}.attn_norm", R::AttnNorm}, {"blk.{L}.attn_q", R::AttnQ},
    {"blk.{L}.attn_k", R::AttnK},      {"blk.{L}.attn_v", R::AttnV},       {"blk.{L}.attn_output", R::AttnO},
    {"blk.{L}.ffn_norm", R::MlpNorm},  {"blk.{L}.ffn_gate", R::MlpGate},   {"blk.{L}.ffn_up", R::MlpUp},
    {"blk.{L}.ffn_down", R::MlpDown},  {"output_norm", R::FinalNorm},      {"output", R::LmHead},
    {"rope_freqs", R::Buffer},
};

constexpr P kGpt2Gguf[] = {
    {"token_embd", R::TokenEmbedding}, {"position_embd", R::PositionEmbedding}, {"blk.{L}.attn_norm", R::AttnNorm},
    {"blk.{L}.attn_qkv", R::AttnQkv},  {"blk.{L}.attn_output", R::AttnO},       {"blk.{L}.ffn_norm", R::MlpNorm},
    {"blk.{L}.ffn_up", R::MlpUp},      {"blk.{L}.ffn_down", R::MlpDown},        {"output_norm", R::FinalNorm},
    {"output", R::LmHead},
};

constexpr P kPhiGguf[] = {
    {"token_embd", R::TokenEmbedding}, {"blk.{L}.attn_norm", R::AttnNorm}, {"blk.{L}.attn_qkv", R::AttnQkv},
    {"blk.{L}.attn_q", R::AttnQ},      {"blk.{L}.attn_k", R::AttnK},       {"blk.{L}.attn_v", R::AttnV},
    {"blk.{L}.attn_output", R::AttnO}, {"blk.{L}.ffn_up", R::MlpUp},       {"blk.{L}.ffn_down", R::MlpDown},
    {"output_norm", R::FinalNorm},     {"output", R::LmHead},
};

constexpr P kBertGguf[] = {
    {"token_embd", R::TokenEmbedding},          {"position_embd", R::PositionEmbedding},
    {"token_types", R::TokenTypeEmbedding},     {"token_embd_norm", R::EmbeddingNorm},
    {"blk.{L}.attn_q", R::AttnQ},               {"blk.{L}.attn_k", R::AttnK},
    {"blk.{L}.attn_v", R::AttnV},               {"blk.{L}.attn_output", R::AttnO},
    {"blk.{L}.attn_output_norm", R::AttnNorm},  {"blk.{L}.ffn_up", R::MlpUp},
    {"blk.{L}.ffn_down", R::MlpDown},           {"blk.{L}.layer_output_norm", R::MlpNorm},
};

// Matches `stem` against `pattern`; on success sets `layer` (or -1 when the pattern has no "{L}").
bool matchStem(std::string_view stem, std::string_view pattern, int &layer) {
    const auto pos = pattern.find("{L}");
    if (pos == std::string_view::npos) {
        layer = -1;
        return stem == pattern;
    }
    const std::string_view pre = pattern.substr(0, pos), post = pattern.substr(pos + 3);
    if (stem.size() <= pre.size() + post.size() || stem.substr(0, pre.size()) != pre ||
        stem.substr(stem.size() - post.size()) != post)
        return false;
    const std::string_view digits = stem.substr(pre.size(), stem.size() - pre.size() - post.size());
    if (digits.empty() || digits.size() > 6)
        return false;
    int v = 0;
    for (char ch : digits) {
        if (!std::isdigit(static_cast<unsigned char>(ch)))
            return false;
        v = v * 10 + (ch - '0');
    }
    layer = v;
    return true;
}

RoleMatch classify(std::string_view name, const P *patterns, size_t count) {
    RoleMatch m;
    std::string_view stem;
    if (name.size() > 7 && name.substr(name.size() - 7) == ".weight") {
        stem = name.substr(0, name.size() - 7);
    } else if (name.size() > 5 && name.substr(name.size() - 5) == ".bias") {
        stem = name.substr(0, name.size() - 5);
        m.isBias = true;
    } else {
        // Non-parameter state some checkpoints carry.
        if (name.ends_with("inv_freq") || name.ends_with("position_ids") || name.ends_with("masked_bias"))
            m.role = TensorRole::Buffer;
        return m;
    }
    for (size_t i = 0; i < count; ++i) {
        int layer = -1;
        if (matchStem(stem, patterns[i].stem, layer)) {
            m.role = patterns[i].role;
            m.layer = layer;
            return m;
        }
    }
    // GPT-2's causal-mask buffer is called "h.N.attn.bias".
    if (m.isBias && stem.ends_with(".attn"))
        m.role = TensorRole::Buffer;
    m.isBias = false;
    return m;
}

#define LATHE_N(a) (sizeof(a) / sizeof((a)[0]))


} // namespace

const ArchitectureAdapter &ArchitectureAdapter::forFamily(ArchFamily family) {
    static const ArchitectureAdapter llama(ArchFamily::Llama, kLlamaHf, LATHE_N(kLlamaHf), kLlamaGguf,
                                           LATHE_N(kLlamaGguf), "", "");
    static const ArchitectureAdapter opt(ArchFamily::Opt, kOptHf, LATHE_N(kOptHf), nullptr, 0, "", "");
    static const ArchitectureAdapter gpt2(ArchFamily::Gpt2, kGpt2Hf, LATHE_N(kGpt2Hf), kGpt2Gguf, LATHE_N(kGpt2Gguf),
                                          "transformer.", "transformer.");
    static const ArchitectureAdapter phi(ArchFamily::Phi, kPhiHf, LATHE_N(kPhiHf), kPhiGguf, LATHE_N(kPhiGguf), "", "");
    static const ArchitectureAdapter bert(ArchFamily::Bert, kBertHf, LATHE_N(kBertHf), kBertGguf, LATHE_N(kBertGguf),
                                          "bert.", "");
    switch (family) {
    case ArchFamily::Llama: return llama;
    case ArchFamily::Opt: return opt;
    case ArchFamily::Gpt2: return gpt2;
    case ArchFamily::Phi: return phi;
    case ArchFamily::Bert: return bert;
    }
    return llama;
}

RoleMatch ArchitectureAdapter::classifyHf(const std::string &name) const {
    std::string_view n = name;
    const std::string_view prefix = m_hfOptionalPrefix;
    // GPT-2's tied head is "lm_head" at the top level, outside the optional prefix.
    if (!prefix.empty() && n.substr(0, prefix.size()) == prefix)
        n = n.substr(prefix.size());
    return classify(n, m_hf, m_hfCount);
}

RoleMatch ArchitectureAdapter::classifyGguf(const std::string &name) const { return classify(name, m_gguf, m_ggufCount); }

std::optional<std::string> ArchitectureAdapter::hfModulePath(TensorRole role) const {
    for (size_t i = 0; i < m_hfCount; ++i)
        if (m_hf[i].role == role)
            return (role == TensorRole::LmHead ? std::string() : std::string(m_hfWritePrefix)) + m_hf[i].stem;
    return std::nullopt;
}

namespace {

std::optional<std::string> nameFrom(const P *patterns, size_t count, const std::string &prefix, TensorRole role,
                                    int layer, bool isBias) {
    for (size_t i = 0; i < count; ++i) {
        if (patterns[i].role != role)
            continue;
        std::string path = (role == TensorRole::LmHead ? std::string() : prefix) + patterns[i].stem;
        const auto pos = path.find("{L}");
        if (pos != std::string::npos)
            path.replace(pos, 3, std::to_string(layer));
        return path + (isBias ? ".bias" : ".weight");
    }
    return std::nullopt;
}

} // namespace

std::optional<std::string> ArchitectureAdapter::hfName(TensorRole role, int layer, bool isBias) const {
    return nameFrom(m_hf, m_hfCount, m_hfWritePrefix, role, layer, isBias);
}

std::optional<std::string> ArchitectureAdapter::ggufName(TensorRole role, int layer, bool isBias) const {
    return nameFrom(m_gguf, m_ggufCount, "", role, layer, isBias);
}

bool ArchitectureAdapter::hfStoresTransposed(TensorRole role, bool isBias) const {
    if (m_family != ArchFamily::Gpt2 || isBias)
        return false;
    return role == TensorRole::AttnQkv || role == TensorRole::AttnO || role == TensorRole::MlpUp ||
           role == TensorRole::MlpDown;
}

ArchFamily familyFromGgufArch(const std::string &arch, const std::string &file) {
    if (arch == "llama" || arch == "qwen2" || arch == "mistral")
        return ArchFamily::Llama;
    if (arch == "gpt2")
        return ArchFamily::Gpt2;
    if (arch == "phi2")
        return ArchFamily::Phi;
    if (arch == "bert")
        return ArchFamily::Bert;
    throw LatheError(file + ": unsupported GGUF architecture '" + arch + "'",
                     "supported: llama, qwen2, mistral, gpt2, phi2, bert");
}

} // namespace lathe
