// Reader for llama2.c checkpoints (Karpathy's "legacy" export, e.g. the stories* models): a header of seven int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size > 0 means the classifier shares
// the token embedding) followed by fp32 arrays in a fixed order. Tensors are exposed under HF Llama names. llama2.c
// rotates adjacent pairs (interleaved RoPE); the engine uses HF's rotate-half, so wq/wk are marked RopeUnpermute.

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/modelloader.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;

std::unique_ptr<Model> openLlama2c(const std::string &path) {
    auto file = MappedFile::open(path);
    require(file->size() >= 28, path, "truncated: shorter than the 28-byte llama2.c header");
    int32_t h[7];
    std::memcpy(h, file->data(), sizeof h);
    require(std::memcmp(file->data(), "ak42", 4) != 0, path,
            "this is a llama2.c version-1/2 export, only the legacy format is read",
            "export with llama2.c's legacy_export (export.py --version 0)");
    const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kvHeads = h[4], seqLen = h[6];
    const bool shared = h[5] > 0;
    const int64_t vocab = h[5] > 0 ? h[5] : -int64_t(h[5]);

    auto model = std::make_unique<Model>();
    model->format = SourceFormat::Llama2c;
    model->sourcePath = path;
    model->sourceFiles = {path};
    model->sourceBytes = file->size();
    ModelConfig &c = model->config;
    c.family = ArchFamily::Llama;
    c.modelType = "llama";
    c.architecture = "LlamaForCausalLM";
    c.hiddenSize = dim;
    c.intermediateSize = hidden;
    c.numLayers = layers;
    c.numHeads = heads;
    c.numKvHeads = kvHeads;
    c.vocabSize = vocab;
    c.maxPositions = seqLen;
    c.headDim = heads > 0 ? dim / heads : 0;
    c.normEps = 1e-5; // llama2.c's rmsnorm
    c.ropeTheta = 10000.0;
    c.tiedEmbeddings = shared;
    c.activation = defaultActivation(c.family);
    c.validate(path);
    require(c.headDim * heads == dim && c.headDim % 2 == 0, path, "dim " + std::to_string(dim) +
                                                                     " is not an even head size times " +
                                                                     std::to_string(heads) + " heads");
    c.hf = nlohmann::json::object({{"bos_token_id", 1}, {"eos_token_id", 2}});
    c.hf = c.toHfJson();

    const int64_t kvDim = kvHeads * c.headDim;
    // Expected size, computed in 64-bit from validated (bounded) numbers, before anything is mapped to tensors.
    const int64_t perLayer = dim + dim * dim + 2 * dim * kvDim + dim * dim + dim + 3 * dim * hidden;
    const int64_t floats = vocab * dim + layers * perLayer + dim + seqLen * c.headDim + (shared ? 0 : vocab * dim);
    const uint64_t expectedBytes = 28 + uint64_t(floats) * 4;
    require(file->size() == expectedBytes, path,
            std::string(file->size() < expectedBytes ? "truncated: " : "size mismatch: ") + "file is " + std::to_string(file->size()) + " bytes but the header (dim " + std::to_string(dim) + ", " +
                std::to_string(layers) + " layers, vocab " + std::to_string(vocab) + ") implies " +
                std::to_string(expectedBytes),
            file->size() < expectedBytes ? "the download or copy was interrupted" : "the header does not match the weights");

    uint64_t off = 28;
    auto add = [&](const std::string &name, TensorRole role, int layer, std::vector<int64_t> shape,
                   TensorTransform tr = TensorTransform::None, int trHeads = 0) {
        TensorInfo t;
        t.name = t.sourceName = name;
        t.role = role;
        t.layer = layer;
        t.shape = std::move(shape);
        t.dtype = DType::F32;
        t.storage = file;
        t.offset = off;
        t.nbytes = uint64_t(t.numel()) * 4;
        t.transform = tr;
        t.transformHeads = trHeads;
        off += t.nbytes;
        model->addTensor(std::move(t));
    };
    // Per-layer arrays are stored all layers of one kind after another.
    auto perLayerTensor = [&](const char *suffix, TensorRole role, std::vector<int64_t> shape,
                              TensorTransform tr = TensorTransform::None, int trHeads = 0) {
        for (int l = 0; l < layers; ++l)
            add("model.layers." + std::to_string(l) + "." + suffix, role, l, shape, tr, trHeads);
    };
    add("model.embed_tokens.weight", TensorRole::TokenEmbedding, -1, {vocab, dim});
    perLayerTensor("input_layernorm.weight", TensorRole::AttnNorm, {dim});
    perLayerTensor("self_attn.q_proj.weight", TensorRole::AttnQ, {dim, dim}, TensorTransform::RopeUnpermute, int(heads));
    perLayerTensor("self_attn.k_proj.weight", TensorRole::AttnK, {kvDim, dim}, TensorTransform::RopeUnpermute, int(kvHeads));
    perLayerTensor("self_attn.v_proj.weight", TensorRole::AttnV, {kvDim, dim});
    perLayerTensor("self_attn.o_proj.weight", TensorRole::AttnO, {dim, dim});
    perLayerTensor("post_attention_layernorm.weight", TensorRole::MlpNorm, {dim});
    perLayerTensor("mlp.gate_proj.weight", TensorRole::MlpGate, {hidden, dim}); // llama2.c w1
    perLayerTensor("mlp.down_proj.weight", TensorRole::MlpDown, {dim, hidden}); // w2
    perLayerTensor("mlp.up_proj.weight", TensorRole::MlpUp, {hidden, dim});     // w3
    add("model.norm.weight", TensorRole::FinalNorm, -1, {dim});
    off += uint64_t(seqLen * c.headDim) * 4; // freq_cis_real / freq_cis_imag: recomputed by the engine
    if (!shared)
        add("lm_head.weight", TensorRole::LmHead, -1, {vocab, dim});

    // The tokenizer sits beside the checkpoint as tok<vocab>.bin (stories*) or tokenizer.bin.
    const fs::path dir = fs::path(path).parent_path();
    for (const std::string &name : {"tok" + std::to_string(vocab) + ".bin", std::string("tokenizer.bin")})
        if (fs::exists(dir / name)) {
            model->tokenizer = {"llama2c", {(dir / name).string()}};
            break;
        }
    if (model->tokenizer.kind.empty())
        model->warnings.push_back("no tokenizer (tok" + std::to_string(vocab) + ".bin or tokenizer.bin) next to the checkpoint");
    checkModelConsistency(*model);
    for (const auto &w : model->warnings)
        spdlog::warn("{}: {}", path, w);
    return model;
}

} // namespace lathe
