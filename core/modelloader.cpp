#include "modelloader.h"

#include "error.h"
#include "mappedfile.h"
#include "safetensorsheader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;

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
    case TensorRole::Pooler: return {d, d};
    case TensorRole::AttnShortcut: return {mid, in};
    case TensorRole::MlpShortcut: return {out, mid};
    case TensorRole::EmbeddingNorm:
    case TensorRole::AttnNorm:
    case TensorRole::MlpNorm:
    case TensorRole::FinalNorm: return {d};
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

std::unique_ptr<Model> openModel(const std::string &path) {
    std::error_code ec;
    const fs::path p(path);
    if (fs::is_directory(p, ec))
        return openHfFolder(path);
    require(fs::exists(p, ec), path, "no such file or folder");
    if (p.extension() == ".safetensors") {
        // A lone shard: check it first so that a corrupt file is reported as such, then open its folder.
        auto file = MappedFile::open(path);
        parseSafetensorsHeader(file->data(), file->size(), path);
        const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
        require(fs::exists(dir / "config.json"), path, "no config.json next to the file",
                "open the folder that holds config.json and the safetensors files");
        return openHfFolder(dir.string());
    }
    char magic[4] = {0, 0, 0, 0};
    {
        const auto file = MappedFile::open(path); // a FIFO or device is refused, not read
        std::memcpy(magic, file->data(), std::min<size_t>(4, size_t(file->size())));
    }
    if (std::memcmp(magic, "GGUF", 4) == 0)
        return openGguf(path);
    if (p.extension() == ".gguf")
        throw LatheError(path + ": bad magic: not a GGUF file", "the file is corrupt or has the wrong extension");
    if (p.extension() == ".bin")
        return openLlama2c(path);
    throw LatheError(path + ": unrecognised model format",
                     "open a Hugging Face folder (config.json + *.safetensors), a .gguf file or a llama2.c .bin");
}

} // namespace lathe
