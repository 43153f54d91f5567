#include "layerweights.h"

#include "error.h"
#include "model.h"

#include <cstring>

namespace lathe {

namespace {

std::string describe(TensorRole role, int layer, bool bias) {
    std::string s = std::string(roleName(role)) + (bias ? " bias" : " weight");
    if (layer >= 0)
        s += " of block " + std::to_string(layer);
    return s;
}

const TensorInfo *lookup(const Model &m, TensorRole role, int layer, bool bias, bool required) {
    const TensorInfo *t = m.find(role, layer, bias);
    if (!t && required)
        throw LatheError(m.sourcePath + ": the " + describe(role, layer, bias) + " is missing",
                         "the checkpoint is incomplete or not a " + std::string(familyName(m.config.family)) +
                             " model");
    return t;
}

Mat toMat(const Model &m, const TensorInfo &t) {
    const int64_t rows = t.shape.empty() ? 1 : t.shape[0];
    const int64_t cols = t.shape.size() < 2 ? 1 : t.numel() / rows;
    std::vector<float> data = m.loadFloat(t);
    Mat out(rows, cols);
    std::memcpy(out.data(), data.data(), data.size() * sizeof(float));
    return out;
}

Vec toVec(const Model &m, const TensorInfo &t) {
    std::vector<float> data = m.loadFloat(t);
    return Eigen::Map<const Vec>(data.data(), Eigen::Index(data.size()));
}

Mat loadMat(const Model &m, TensorRole role, int layer, bool required = true) {
    const TensorInfo *t = lookup(m, role, layer, false, required);
    return t ? toMat(m, *t) : Mat();
}

Vec loadVec(const Model &m, TensorRole role, int layer, bool bias, bool required) {
    const TensorInfo *t = lookup(m, role, layer, bias, required);
    return t ? toVec(m, *t) : Vec();
}

void checkShape(const Model &m, const Mat &w, int64_t rows, int64_t cols, TensorRole role, int layer) {
    if (w.rows() != rows || w.cols() != cols)
        throw LatheError(m.sourcePath + ": the " + describe(role, layer, false) + " is " + std::to_string(w.rows()) +
                             " x " + std::to_string(w.cols()) + ", the config implies " + std::to_string(rows) +
                             " x " + std::to_string(cols),
                         "config.json does not match the weights");
}

LinearWeights loadLinear(const Model &m, TensorRole role, int layer, int64_t out, int64_t in, bool required = true) {
    LinearWeights l;
    l.w = loadMat(m, role, layer, required);
    if (!l.present())
        return l;
    checkShape(m, l.w, out, in, role, layer);
    l.b = loadVec(m, role, layer, true, false);
    if (l.hasBias() && l.b.size() != out)
        throw LatheError(m.sourcePath + ": the " + describe(role, layer, true) + " has " + std::to_string(l.b.size()) +
                         " values, expected " + std::to_string(out));
    return l;
}

NormWeights loadNorm(const Model &m, TensorRole role, int layer, int64_t width, bool required = true) {
    NormWeights n;
    n.weight = loadVec(m, role, layer, false, required);
    if (!n.present())
        return n;
    n.bias = loadVec(m, role, layer, true, false);
    if (n.weight.size() != width || (n.bias.size() != 0 && n.bias.size() != width))
        throw LatheError(m.sourcePath + ": the " + describe(role, layer, false) + " has " +
                         std::to_string(n.weight.size()) + " values, expected " + std::to_string(width));
    return n;
}

} // namespace

int64_t BlockWeights::bytes() const {
    int64_t n = 0;
    for (const LinearWeights *l : {&q, &k, &v, &o, &gate, &up, &down})
        n += (l->w.size() + l->b.size()) * int64_t(sizeof(float));
    for (const NormWeights *l : {&attnNorm, &mlpNorm})
        n += (l->weight.size() + l->bias.size()) * int64_t(sizeof(float));
    return n;
}

BlockWeights loadBlockWeights(const Model &m, int layer) {
    const ModelConfig &c = m.config;
    const int64_t h = c.hiddenSize, qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
    BlockWeights b;
    b.attnNorm = loadNorm(m, TensorRole::AttnNorm, layer, h);
    if (m.find(TensorRole::AttnQkv, layer, false)) {
        // Fused rows: q (qDim), then k (kvDim), then v (kvDim).
        LinearWeights qkv = loadLinear(m, TensorRole::AttnQkv, layer, qDim + 2 * kvDim, h);
        b.q.w = qkv.w.topRows(qDim);
        b.k.w = qkv.w.middleRows(qDim, kvDim);
        b.v.w = qkv.w.bottomRows(kvDim);
        if (qkv.hasBias()) {
            b.q.b = qkv.b.head(qDim);
            b.k.b = qkv.b.segment(qDim, kvDim);
            b.v.b = qkv.b.tail(kvDim);
        }
    } else {
        b.q = loadLinear(m, TensorRole::AttnQ, layer, qDim, h);
        b.k = loadLinear(m, TensorRole::AttnK, layer, kvDim, h);
        b.v = loadLinear(m, TensorRole::AttnV, layer, kvDim, h);
    }
    b.o = loadLinear(m, TensorRole::AttnO, layer, h, qDim);
    if (c.family != ArchFamily::Phi)
        b.mlpNorm = loadNorm(m, TensorRole::MlpNorm, layer, h);
    if (c.family == ArchFamily::Llama)
        b.gate = loadLinear(m, TensorRole::MlpGate, layer, c.intermediateSize, h);
    b.up = loadLinear(m, TensorRole::MlpUp, layer, c.intermediateSize, h);
    b.down = loadLinear(m, TensorRole::MlpDown, layer, h, c.intermediateSize);
    return b;
}

EmbeddingWeights loadEmbeddingWeights(const Model &m) {
    const ModelConfig &c = m.config;
    EmbeddingWeights e;
    e.token = loadMat(m, TensorRole::TokenEmbedding, -1);
    checkShape(m, e.token, c.vocabSize, c.hiddenSize, TensorRole::TokenEmbedding, -1);
    if (c.family == ArchFamily::Opt || c.family == ArchFamily::Gpt2 || c.family == ArchFamily::Bert) {
        e.position = loadMat(m, TensorRole::PositionEmbedding, -1);
        // any number of positions, each hidden wide
        checkShape(m, e.position, e.position.rows(), c.hiddenSize, TensorRole::PositionEmbedding, -1);
    }
    if (c.family == ArchFamily::Bert) {
        e.tokenType = loadMat(m, TensorRole::TokenTypeEmbedding, -1, false);
        e.norm = loadNorm(m, TensorRole::EmbeddingNorm, -1, c.hiddenSize);
    }
    return e;
}

HeadWeights loadHeadWeights(const Model &m) {
    const ModelConfig &c = m.config;
    HeadWeights hw;
    if (c.family == ArchFamily::Bert) {
        hw.pooler = loadLinear(m, TensorRole::Pooler, -1, c.hiddenSize, c.hiddenSize, false);
        return hw;
    }
    hw.finalNorm = loadNorm(m, TensorRole::FinalNorm, -1, c.hiddenSize);
    // A checkpoint may carry lm_head even when tied; use it when present.
    hw.lmHead = loadLinear(m, TensorRole::LmHead, -1, c.vocabSize, c.hiddenSize, !c.tiedEmbeddings);
    return hw;
}

} // namespace lathe
