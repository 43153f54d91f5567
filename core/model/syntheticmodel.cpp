#include "model/syntheticmodel.h"

#include "base/error.h"
#include "base/halfconv.h"
#include "base/parallel.h"
#include "base/random.h"
#include "model/architecture.h"
#include "model/modelcheck.h"

#include <cmath>
#include <cstring>

namespace lathe {

namespace {

const SyntheticShape kShapes[] = {
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, false},
    {"llama2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, false},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, false},
    {"smollm2-135m", 576, 1536, 30, 9, 3, 49152, 8192, true},
    {"tiny", 64, 176, 2, 4, 2, 320, 256, false},
};

// bf16 bytes of n values: uniform in [-scale, scale), or all `scale` when constant.
std::vector<uint8_t> randomBf16(int64_t n, float scale, bool constant, uint64_t stream) {
    std::vector<uint8_t> bytes(size_t(n) * 2);
    parallelFor(n, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            const float u = float(splitmix(stream ^ splitmix(uint64_t(i))) >> 40) * (1.0f / 16777216.0f); // [0, 1)
            const uint16_t h = floatToBf16(constant ? scale : (2.0f * u - 1.0f) * scale);
            std::memcpy(bytes.data() + 2 * i, &h, 2);
        }
    });
    return bytes;
}

} // namespace

std::optional<SyntheticShape> syntheticShape(const std::string &name) {
    for (const SyntheticShape &s : kShapes)
        if (s.name == name)
            return s;
    return std::nullopt;
}

std::string syntheticShapeNames() {
    std::string out;
    for (const SyntheticShape &s : kShapes)
        out += (out.empty() ? "" : ", ") + s.name;
    return out;
}

ModelConfig syntheticConfig(const SyntheticShape &s) {
    const nlohmann::json j = {{"model_type", "llama"},
                              {"architectures", {"LlamaForCausalLM"}},
                              {"hidden_size", s.hidden},
                              {"intermediate_size", s.intermediate},
                              {"num_hidden_layers", s.layers},
                              {"num_attention_heads", s.heads},
                              {"num_key_value_heads", s.kvHeads},
                              {"vocab_size", s.vocab},
                              {"max_position_embeddings", s.maxPositions},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"hidden_act", "silu"},
                              {"tie_word_embeddings", s.tiedEmbeddings},
                              {"torch_dtype", "bfloat16"}};
    return configFromHfJson(j, "synthetic:" + s.name);
}

std::unique_ptr<Model> makeSyntheticModel(const SyntheticShape &s, uint64_t seed) {
    auto m = std::make_unique<Model>();
    m->sourcePath = "synthetic:" + s.name;
    m->config = syntheticConfig(s);
    const ModelConfig &c = m->config;
    const ArchitectureAdapter &names = ArchitectureAdapter::forFamily(ArchFamily::Llama);
    const int64_t q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
    uint64_t stream = splitmix(seed);
    auto add = [&](TensorRole role, int layer, std::vector<int64_t> shape, bool norm) {
        TensorInfo t;
        t.name = *names.hfName(role, layer, false);
        t.sourceName = t.name;
        t.role = role;
        t.layer = layer;
        t.shape = std::move(shape);
        t.dtype = DType::BF16;
        const float scale = norm ? 1.0f : role == TensorRole::TokenEmbedding ? 1.0f : float(1.0 / std::sqrt(double(t.shape[1])));
        stream = splitmix(stream);
        t.storage = std::make_shared<OwnedBytes>(randomBf16(t.numel(), scale, norm, stream));
        t.nbytes = t.storage->size();
        m->sourceBytes += t.nbytes;
        m->addTensor(std::move(t));
    };
    add(TensorRole::TokenEmbedding, -1, {c.vocabSize, c.hiddenSize}, false);
    for (int l = 0; l < int(c.numLayers); ++l) {
        add(TensorRole::AttnNorm, l, {c.hiddenSize}, true);
        add(TensorRole::AttnQ, l, {q, c.hiddenSize}, false);
        add(TensorRole::AttnK, l, {kv, c.hiddenSize}, false);
        add(TensorRole::AttnV, l, {kv, c.hiddenSize}, false);
        add(TensorRole::AttnO, l, {c.hiddenSize, q}, false);
        add(TensorRole::MlpNorm, l, {c.hiddenSize}, true);
        add(TensorRole::MlpGate, l, {c.intermediateSize, c.hiddenSize}, false);
        add(TensorRole::MlpUp, l, {c.intermediateSize, c.hiddenSize}, false);
        add(TensorRole::MlpDown, l, {c.hiddenSize, c.intermediateSize}, false);
    }
    add(TensorRole::FinalNorm, -1, {c.hiddenSize}, true);
    if (!c.tiedEmbeddings)
        add(TensorRole::LmHead, -1, {c.vocabSize, c.hiddenSize}, false);
    checkModelConsistency(*m);
    return m;
}

} // namespace lathe
