#include "model/layerweights.h"

#include "base/error.h"
#include "model/model.h"

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
    n += (attnShortcut.size() + mlpShortcut.size()) * int64_t(sizeof(float));
    return n;
}

BlockWeights loadBlockWeights(const Model &m, int layer) {
    const ModelConfig &c = m.config;
    const int64_t qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
    const bool sliced = c.slicing.active(), phi = c.family == ArchFamily::Phi;
    const int64_t in = c.blockInputWidth(layer), mid = c.blockMidWidth(layer), out = c.blockOutputWidth(layer);
    const int64_t h = c.hiddenSize;
    BlockWeights b;
    if (!sliced)
        b.attnNorm = loadNorm(m, TensorRole::AttnNorm, layer, h);
    if (m.find(TensorRole::AttnQkv, layer, false)) {
        // Fused rows: q (qDim), then k (kvDim), then v (kvDim).
        LinearWeights qkv = loadLinear(m, TensorRole::AttnQkv, layer, qDim + 2 * kvDim, in);
        b.q.w = qkv.w.topRows(qDim);
        b.k.w = qkv.w.middleRows(qDim, kvDim);
        b.v.w = qkv.w.bottomRows(kvDim);
        if (qkv.hasBias()) {
            b.q.b = qkv.b.head(qDim);
            b.k.b = qkv.b.segment(qDim, kvDim);
            b.v.b = qkv.b.tail(kvDim);
        }
    } else {
        b.q = loadLinear(m, TensorRole::AttnQ, layer, qDim, in);
        b.k = loadLinear(m, TensorRole::AttnK, layer, kvDim, in);
        b.v = loadLinear(m, TensorRole::AttnV, layer, kvDim, in);
    }
    b.o = loadLinear(m, TensorRole::AttnO, layer, mid, qDim);
    if (!phi && !sliced)
        b.mlpNorm = loadNorm(m, TensorRole::MlpNorm, layer, h);
    const int64_t mlpIn = phi ? in : mid;
    if (c.family == ArchFamily::Llama)
        b.gate = loadLinear(m, TensorRole::MlpGate, layer, c.intermediateSize, mlpIn);
    b.up = loadLinear(m, TensorRole::MlpUp, layer, c.intermediateSize, mlpIn);
    b.down = loadLinear(m, TensorRole::MlpDown, layer, out, c.intermediateSize);
    if (sliced) {
        b.attnShortcut = loadMat(m, TensorRole::AttnShortcut, layer, false);
        if (b.attnShortcut.size())
            checkShape(m, b.attnShortcut, mid, in, TensorRole::AttnShortcut, layer);
        else
            require(mid == in, m.sourcePath, "block " + std::to_string(layer) + " changes width without a shortcut");
        if (!phi) {
            b.mlpShortcut = loadMat(m, TensorRole::MlpShortcut, layer, false);
            if (b.mlpShortcut.size())
                checkShape(m, b.mlpShortcut, out, mid, TensorRole::MlpShortcut, layer);
            else
                require(out == mid, m.sourcePath,
                        "block " + std::to_string(layer) + " changes width without a shortcut");
        }
    }
    return b;
}

EmbeddingWeights loadEmbeddingWeights(const Model &m) {
    const ModelConfig &c = m.config;
    EmbeddingWeights e;
    e.token = loadMat(m, TensorRole::TokenEmbedding, -1);
    checkShape(m, e.token, c.vocabSize, c.embeddingWidth(), TensorRole::TokenEmbedding, -1);
    if (c.family == ArchFamily::Opt || c.family == ArchFamily::Gpt2 || c.family == ArchFamily::Bert) {
        e.position = loadMat(m, TensorRole::PositionEmbedding, -1);
        // any number of positions, each as wide as the token embedding
        checkShape(m, e.position, e.position.rows(), c.embeddingWidth(), TensorRole::PositionEmbedding, -1);
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
    if (!c.slicing.active())
        hw.finalNorm = loadNorm(m, TensorRole::FinalNorm, -1, c.hiddenSize);
    // A checkpoint may carry lm_head even when tied; use it when present.
    hw.lmHead = loadLinear(m, TensorRole::LmHead, -1, c.vocabSize, c.headInputWidth(),
                           !c.tiedEmbeddings || c.slicing.active());
    return hw;
}

namespace {

std::vector<float> matData(const Mat &w) { return std::vector<float>(w.data(), w.data() + w.size()); }

void storeMat(Model &m, TensorRole role, int layer, const Mat &w) {
    m.setFloat(role, layer, false, matData(w), {int64_t(w.rows()), int64_t(w.cols())});
}

void storeLinear(Model &m, TensorRole role, int layer, const LinearWeights &l) {
    if (!l.present())
        return;
    storeMat(m, role, layer, l.w);
    if (l.hasBias())
        m.setFloat(role, layer, true, std::vector<float>(l.b.data(), l.b.data() + l.b.size()), {int64_t(l.b.size())});
}

} // namespace

void storeBlockWeights(Model &m, int layer, const BlockWeights &b) {
    if (m.find(TensorRole::AttnQkv, layer, false)) {
        LinearWeights qkv;
        qkv.w.resize(b.q.w.rows() + b.k.w.rows() + b.v.w.rows(), b.q.w.cols());
        qkv.w << b.q.w, b.k.w, b.v.w;
        if (b.q.hasBias()) {
            qkv.b.resize(qkv.w.rows());
            qkv.b << b.q.b, b.k.b, b.v.b;
        }
        storeLinear(m, TensorRole::AttnQkv, layer, qkv);
    } else {
        storeLinear(m, TensorRole::AttnQ, layer, b.q);
        storeLinear(m, TensorRole::AttnK, layer, b.k);
        storeLinear(m, TensorRole::AttnV, layer, b.v);
    }
    storeLinear(m, TensorRole::AttnO, layer, b.o);
    storeLinear(m, TensorRole::MlpGate, layer, b.gate);
    storeLinear(m, TensorRole::MlpUp, layer, b.up);
    storeLinear(m, TensorRole::MlpDown, layer, b.down);
    if (b.attnShortcut.size())
        storeMat(m, TensorRole::AttnShortcut, layer, b.attnShortcut);
    if (b.mlpShortcut.size())
        storeMat(m, TensorRole::MlpShortcut, layer, b.mlpShortcut);
}

void storeEmbeddingWeights(Model &m, const EmbeddingWeights &e) {
    storeMat(m, TensorRole::TokenEmbedding, -1, e.token);
    if (e.position.size())
        storeMat(m, TensorRole::PositionEmbedding, -1, e.position);
}

void storeHeadWeights(Model &m, const HeadWeights &h) { storeLinear(m, TensorRole::LmHead, -1, h.lmHead); }

void removeNormWeights(Model &m) {
    std::vector<std::string> names;
    for (const TensorInfo &t : m.tensors())
        if (std::string(roleGroup(t.role)) == "norm")
            names.push_back(t.name);
    for (const std::string &n : names)
        m.removeTensor(n);
}

} // namespace lathe
