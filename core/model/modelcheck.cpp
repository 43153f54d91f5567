// Consistency of a model's tensors with its configuration, checked by every reader (and by the synthetic models).

#include "model/modelcheck.h"

#include "base/error.h"
#include "model/architecture.h"

#include <string>
#include <vector>

namespace lathe {

namespace {

std::string shapeStr(const std::vector<int64_t> &s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i)
        out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

// The shape the config implies for a weight of this role in block `layer` (-1 outside the blocks); empty when the
// role has no fixed shape. Sliced models have per-site residual widths (ModelConfig::blockInputWidth ...).
std::vector<int64_t> expectedWeightShape(const ModelConfig &c, TensorRole role, int layer) {
    const int64_t q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, d = c.hiddenSize, f = c.intermediateSize;
    const bool inBlock = layer >= 0 && layer < c.numLayers;
    const bool phi = c.family == ArchFamily::Phi;
    const int64_t in = inBlock ? c.blockInputWidth(layer) : d, mid = inBlock ? c.blockMidWidth(layer) : d,
                  out = inBlock ? c.blockOutputWidth(layer) : d;
    switch (role) {
    case TensorRole::TokenEmbedding: return {c.vocabSize, c.embeddingWidth()};
    case TensorRole::AttnQ: return {q, in};
    case TensorRole::AttnK:
    case TensorRole::AttnV: return {kv, in};
    case TensorRole::AttnQkv: return {q + 2 * kv, in};
    case TensorRole::AttnO: return {mid, q};
    case TensorRole::MlpGate:
    case TensorRole::MlpUp: return {f, phi ? in : mid};
    case TensorRole::MlpDown: return {out, f};
    case TensorRole::LmHead: return {c.vocabSize, c.headInputWidth()};
    case TensorRole::Pooler:
    case TensorRole::HeadTransform: return {d, d};
    case TensorRole::AttnShortcut: return {mid, in};
    case TensorRole::MlpShortcut: return {out, mid};
    case TensorRole::EmbeddingNorm:
    case TensorRole::AttnNorm:
    case TensorRole::MlpNorm:
    case TensorRole::FinalNorm:
    case TensorRole::HeadNorm: return {d};
    default: return {};
    }
}

std::vector<TensorRole> requiredBlockRoles(const Model &m, int layer) {
    using R = TensorRole;
    switch (m.config.family) {
    case ArchFamily::Llama: return {R::AttnNorm, R::AttnQ, R::AttnK, R::AttnV, R::AttnO, R::MlpNorm, R::MlpGate, R::MlpUp, R::MlpDown};
    case ArchFamily::Opt:
    case ArchFamily::Bert: return {R::AttnNorm, R::AttnQ, R::AttnK, R::AttnV, R::AttnO, R::MlpNorm, R::MlpUp, R::MlpDown};
    case ArchFamily::Gpt2: return {R::AttnNorm, R::AttnQkv, R::AttnO, R::MlpNorm, R::MlpUp, R::MlpDown};
    case ArchFamily::Phi:
        if (m.find(R::AttnQkv, layer))
            return {R::AttnNorm, R::AttnQkv, R::AttnO, R::MlpUp, R::MlpDown};
        return {R::AttnNorm, R::AttnQ, R::AttnK, R::AttnV, R::AttnO, R::MlpUp, R::MlpDown};
    }
    return {};
}

} // namespace

void checkModelConsistency(const Model &m) {
    const ModelConfig &c = m.config;
    const std::string &src = m.sourcePath;
    for (const auto &t : m.tensors()) {
        if (t.role == TensorRole::Unknown || t.role == TensorRole::Buffer)
            continue;
        require(t.layer < c.numLayers, src,
                "tensor '" + t.name + "' belongs to block " + std::to_string(t.layer) + " but the model has " +
                    std::to_string(c.numLayers) + " blocks");
        std::vector<int64_t> want = expectedWeightShape(c, t.role, t.layer);
        if (t.isBias && !want.empty())
            want = {want[0]};
        if (!want.empty())
            require(t.shape == want, src,
                    "tensor '" + t.name + "' has shape " + shapeStr(t.shape) + " but the config implies " + shapeStr(want),
                    "config.json does not match the weights");
        if (t.role == TensorRole::PositionEmbedding)
            require(t.shape.size() == 2 && t.shape[1] == c.embeddingWidth(), src,
                    "tensor '" + t.name + "' has shape " + shapeStr(t.shape) + ", expected [positions, " +
                        std::to_string(c.embeddingWidth()) + "]");
    }
    require(m.find(TensorRole::TokenEmbedding) != nullptr, src, "the token embedding is missing");
    if (c.family != ArchFamily::Bert) {
        // A sliced model's norms are weight-less.
        require(c.slicing.active() || m.find(TensorRole::FinalNorm) != nullptr, src, "the final norm is missing");
        require(c.tiedEmbeddings || m.find(TensorRole::LmHead) != nullptr, src,
                "the output head (lm_head) is missing and the embeddings are not tied");
    }
    for (int l = 0; l < c.numLayers; ++l)
        for (TensorRole r : requiredBlockRoles(m, l))
            require((c.slicing.active() && (r == TensorRole::AttnNorm || r == TensorRole::MlpNorm)) ||
                        m.find(r, l) != nullptr, src,
                    std::string("block ") + std::to_string(l) + " has no " + roleName(r) + " weight");
}

} // namespace lathe
