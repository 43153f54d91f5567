#include "train/causallm.h"

#include "base/error.h"
#include "engine/transformer.h"
#include "model/model.h"

#include <cmath>

namespace lathe::train {

// ---- parameters ----

template <class T> Parameter<T> *ParameterSet<T>::find(const std::string &name) {
    for (Parameter<T> &p : m_params)
        if (p.name == name)
            return &p;
    return nullptr;
}

template <class T> Parameter<T> &ParameterSet<T>::add(Parameter<T> p) {
    p.grad = Matrix<T>::Zero(p.value.rows(), p.value.cols());
    m_params.push_back(std::move(p));
    return m_params.back();
}

template <class T> void ParameterSet<T>::setTrainable(const std::string &name, bool trainable) {
    Parameter<T> *p = find(name);
    if (!p)
        throw LatheError("no parameter named '" + name + "'");
    if (trainable)
        p->grad = Matrix<T>::Zero(p->value.rows(), p->value.cols());
    else
        p->grad = Matrix<T>();
}

template <class T> void ParameterSet<T>::zeroGrad() {
    for (Parameter<T> &p : m_params)
        if (p.trainable())
            p.grad.setZero();
}

template <class T> int64_t ParameterSet<T>::count(bool trainableOnly) const {
    int64_t n = 0;
    for (const Parameter<T> &p : m_params)
        if (!trainableOnly || p.trainable())
            n += p.value.size();
    return n;
}

template <class T> uint64_t ParameterSet<T>::gradientBytes() const {
    uint64_t n = 0;
    for (const Parameter<T> &p : m_params)
        n += uint64_t(p.grad.size()) * sizeof(T);
    return n;
}

// ---- the model ----

namespace {

// A parameter's value as a vector (norm weights, biases: (n x 1)); empty for an absent one.
template <class T> Vector<T> asVector(const Parameter<T> *p) {
    return p ? Vector<T>(Eigen::Map<const Vector<T>>(p->value.data(), p->value.size())) : Vector<T>();
}

// Adds a vector gradient into a (n x 1) parameter's gradient when it is trainable.
template <class T> void addVectorGrad(Parameter<T> *p, const Vector<T> &g) {
    if (p && p->trainable())
        p->grad += Eigen::Map<const Matrix<T>>(g.data(), g.size(), 1);
}

} // namespace

template <class T> struct CausalLm<T>::Impl {
    struct Linear {
        Parameter<T> *w = nullptr, *b = nullptr;
    };
    struct Block {
        Parameter<T> *attnNorm = nullptr, *mlpNorm = nullptr;
        Linear q, k, v, o, gate, up, down;
    };
    // What the forward keeps of one block for its backward.
    struct Saved {
        Matrix<T> x, n1, q, k, v, ctx, mid, n2, gate, up, act;
        NormState<T> s1, s2;
        AttentionState<T> att;
    };

    ModelConfig config;
    Parameter<T> *embedding = nullptr, *finalNorm = nullptr, *head = nullptr; // head null when tied
    std::vector<Block> blocks;
    RopeAngles<T> rope;
    AttentionDims dims;
    // The last forward.
    std::vector<int32_t> ids, targets;
    std::vector<Saved> saved;
    Matrix<T> finalIn, h;
    NormState<T> finalState;
    CrossEntropyState<T> loss;
    bool haveForward = false;
};

template <class T> CausalLm<T>::CausalLm(const Model &model) : m_impl(std::make_unique<Impl>()) {
    Impl &m = *m_impl;
    m.config = model.config;
    const ModelConfig &c = model.config;
    if (c.family != ArchFamily::Llama)
        throw LatheError(model.sourcePath + ": training runs the Llama family so far (" + familyName(c.family) +
                             " is not supported yet)",
                         "use a Llama-family model (Llama, Mistral, Qwen2, SmolLM2, stories260K)");
    if (c.slicing.active())
        throw LatheError(model.sourcePath + ": training a sliced model is not supported yet");
    Transformer::checkSupported(model);

    // Parameters are created in a fixed order and referenced by pointer: reserve so that none moves.
    m_params.all().reserve(size_t(4 + 12 * c.numLayers));
    auto load = [&](TensorRole role, int layer, bool isBias, bool required) -> Parameter<T> * {
        const TensorInfo *t = model.find(role, layer, isBias);
        if (!t) {
            if (required)
                throw LatheError(model.sourcePath + ": no " + roleName(role) + " tensor" +
                                 (layer >= 0 ? " in block " + std::to_string(layer) : std::string()));
            return nullptr;
        }
        const std::vector<float> data = model.loadFloat(*t);
        Parameter<T> p;
        p.name = t->name;
        p.role = role;
        p.layer = layer;
        p.isBias = isBias;
        const int64_t rows = t->shape[0], cols = t->shape.size() == 2 ? t->shape[1] : 1;
        p.value = Eigen::Map<const Matrix<float>>(data.data(), rows, cols).template cast<T>();
        return &m_params.add(std::move(p));
    };
    m.embedding = load(TensorRole::TokenEmbedding, -1, false, true);
    for (int l = 0; l < int(c.numLayers); ++l) {
        if (model.find(TensorRole::AttnQkv, l, false))
            throw LatheError(model.sourcePath + ": block " + std::to_string(l) + " stores q|k|v fused",
                             "training reads separate q, k and v projections so far");
        typename Impl::Block b;
        b.attnNorm = load(TensorRole::AttnNorm, l, false, true);
        auto lin = [&](TensorRole role) {
            typename Impl::Linear x;
            x.w = load(role, l, false, true);
            x.b = load(role, l, true, false);
            return x;
        };
        b.q = lin(TensorRole::AttnQ);
        b.k = lin(TensorRole::AttnK);
        b.v = lin(TensorRole::AttnV);
        b.o = lin(TensorRole::AttnO);
        b.mlpNorm = load(TensorRole::MlpNorm, l, false, true);
        b.gate = lin(TensorRole::MlpGate);
        b.up = lin(TensorRole::MlpUp);
        b.down = lin(TensorRole::MlpDown);
        m.blocks.push_back(b);
    }
    m.finalNorm = load(TensorRole::FinalNorm, -1, false, true);
    m.head = load(TensorRole::LmHead, -1, false, false); // absent: tied to the token embedding

    const cpu::RopeTable table = ropeTableFor(c, c.maxPositions, model.sourcePath);
    m.rope.rotaryDim = table.rotaryDim;
    m.rope.cos = table.cos.template cast<T>();
    m.rope.sin = table.sin.template cast<T>();
    m.dims.heads = int(c.numHeads);
    m.dims.kvHeads = int(c.numKvHeads);
    m.dims.headDim = int(c.headDim);
    m.dims.scale = 1.0 / std::sqrt(double(c.headDim));
}

template <class T> CausalLm<T>::~CausalLm() = default;

template <class T>
uint64_t CausalLm<T>::activationBytes(const ModelConfig &c, int64_t batch, int64_t seq, int64_t lossChunk) {
    const uint64_t rows = uint64_t(batch * seq), D = uint64_t(c.hiddenSize), F = uint64_t(c.intermediateSize),
                   d = uint64_t(c.headDim), H = uint64_t(c.numHeads), KV = uint64_t(c.numKvHeads);
    const uint64_t perBlock = rows * (4 * D + 2 * H * d + 2 * KV * d + 3 * F) + uint64_t(batch) * H * uint64_t(seq * seq);
    const uint64_t head = rows * (2 * D + uint64_t(std::min<int64_t>(lossChunk, c.vocabSize)));
    return (perBlock * uint64_t(c.numLayers) + head) * sizeof(T);
}

template <class T> T CausalLm<T>::forward(const TokenBatch &batch) {
    Impl &m = *m_impl;
    const ModelConfig &c = m.config;
    require(batch.seq >= 2 && int64_t(batch.tokens.size()) == batch.batch * batch.seq, "training",
            "a batch needs windows of at least 2 tokens");
    require(batch.seq <= c.maxPositions, "training",
            "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                std::to_string(c.maxPositions) + " positions");
    m.dims.batch = batch.batch;
    m.dims.seq = batch.seq;
    m.ids = batch.tokens;
    m.targets.assign(m.ids.size(), -1);
    for (int64_t b = 0; b < batch.batch; ++b)
        for (int64_t t = 0; t + 1 < batch.seq; ++t)
            m.targets[size_t(b * batch.seq + t)] = m.ids[size_t(b * batch.seq + t + 1)];

    Matrix<T> x;
    embeddingForward(m.embedding->value, m.ids, x);
    const T eps = T(c.normEps);
    m.saved.resize(m.blocks.size());
    const Vector<T> none;
    for (size_t l = 0; l < m.blocks.size(); ++l) {
        const typename Impl::Block &bw = m.blocks[l];
        typename Impl::Saved &s = m.saved[l];
        s.x = std::move(x);
        rmsNormForward(s.x, asVector(bw.attnNorm), eps, s.n1, s.s1);
        linearForward(s.n1, bw.q.w->value, asVector(bw.q.b), s.q);
        linearForward(s.n1, bw.k.w->value, asVector(bw.k.b), s.k);
        linearForward(s.n1, bw.v.w->value, asVector(bw.v.b), s.v);
        ropeForward(s.q, batch.seq, m.dims.heads, m.dims.headDim, m.rope);
        ropeForward(s.k, batch.seq, m.dims.kvHeads, m.dims.headDim, m.rope);
        attentionForward(s.q, s.k, s.v, m.dims, s.ctx, s.att);
        Matrix<T> o;
        linearForward(s.ctx, bw.o.w->value, asVector(bw.o.b), o);
        s.mid = s.x + o;
        rmsNormForward(s.mid, asVector(bw.mlpNorm), eps, s.n2, s.s2);
        linearForward(s.n2, bw.gate.w->value, asVector(bw.gate.b), s.gate);
        linearForward(s.n2, bw.up.w->value, asVector(bw.up.b), s.up);
        swigluForward(s.gate, s.up, s.act);
        Matrix<T> down;
        linearForward(s.act, bw.down.w->value, asVector(bw.down.b), down);
        x = s.mid + down;
    }
    m.finalIn = std::move(x);
    rmsNormForward(m.finalIn, asVector(m.finalNorm), eps, m.h, m.finalState);
    const Matrix<T> &head = m.head ? m.head->value : m.embedding->value;
    const T loss = crossEntropyForward(m.h, head, m.targets, m_lossChunk, m.loss);
    m.haveForward = true;
    return loss;
}

template <class T> void CausalLm<T>::backward(T scale) {
    Impl &m = *m_impl;
    require(m.haveForward, "training", "backward needs a forward first");
    const int64_t rows = int64_t(m.ids.size()), D = m.finalIn.cols();
    auto gradOf = [](Parameter<T> *p) { return p && p->trainable() ? &p->grad : nullptr; };
    auto vecGrad = [](Parameter<T> *p) { return p && p->trainable() ? Vector<T>(Vector<T>::Zero(p->value.size())) : Vector<T>(); };

    // Head and final norm.
    Matrix<T> dh = Matrix<T>::Zero(rows, D);
    Parameter<T> *headParam = m.head ? m.head : m.embedding;
    crossEntropyBackward(m.h, headParam->value, m.targets, m_lossChunk, m.loss, scale, dh, gradOf(headParam));
    Matrix<T> dx = Matrix<T>::Zero(rows, D);
    Vector<T> dw = vecGrad(m.finalNorm);
    rmsNormBackward(dh, m.finalIn, asVector(m.finalNorm), m.finalState, dx, dw.size() ? &dw : nullptr);
    addVectorGrad(m.finalNorm, dw);

    // One linear's backward: dx accumulates, the weight and bias gradients when trainable.
    auto linearBack = [&](const Matrix<T> &dy, const Matrix<T> &in, const typename Impl::Linear &lin, Matrix<T> &din) {
        Vector<T> db = vecGrad(lin.b);
        linearBackward(dy, in, lin.w->value, &din, gradOf(lin.w), db.size() ? &db : nullptr);
        addVectorGrad(lin.b, db);
    };

    for (size_t li = m.blocks.size(); li-- > 0;) {
        const typename Impl::Block &bw = m.blocks[li];
        const typename Impl::Saved &s = m.saved[li];
        // x_out = mid + down(swiglu(gate(n2), up(n2))), n2 = rmsnorm(mid).
        Matrix<T> dmid = dx; // the residual
        Matrix<T> dact = Matrix<T>::Zero(s.act.rows(), s.act.cols());
        linearBack(dx, s.act, bw.down, dact);
        Matrix<T> dgate = Matrix<T>::Zero(s.gate.rows(), s.gate.cols()), dup = dgate;
        swigluBackward(dact, s.gate, s.up, dgate, dup);
        Matrix<T> dn2 = Matrix<T>::Zero(rows, D);
        linearBack(dgate, s.n2, bw.gate, dn2);
        linearBack(dup, s.n2, bw.up, dn2);
        Vector<T> dw2 = vecGrad(bw.mlpNorm);
        rmsNormBackward(dn2, s.mid, asVector(bw.mlpNorm), s.s2, dmid, dw2.size() ? &dw2 : nullptr);
        addVectorGrad(bw.mlpNorm, dw2);
        // mid = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = rmsnorm(x).
        Matrix<T> dxin = dmid;
        Matrix<T> dctx = Matrix<T>::Zero(s.ctx.rows(), s.ctx.cols());
        linearBack(dmid, s.ctx, bw.o, dctx);
        Matrix<T> dq = Matrix<T>::Zero(s.q.rows(), s.q.cols()), dk = Matrix<T>::Zero(s.k.rows(), s.k.cols()),
                  dv = Matrix<T>::Zero(s.v.rows(), s.v.cols());
        attentionBackward(dctx, s.q, s.k, s.v, m.dims, s.att, dq, dk, dv);
        ropeBackward(dq, m.dims.seq, m.dims.heads, m.dims.headDim, m.rope);
        ropeBackward(dk, m.dims.seq, m.dims.kvHeads, m.dims.headDim, m.rope);
        Matrix<T> dn1 = Matrix<T>::Zero(rows, D);
        linearBack(dq, s.n1, bw.q, dn1);
        linearBack(dk, s.n1, bw.k, dn1);
        linearBack(dv, s.n1, bw.v, dn1);
        Vector<T> dw1 = vecGrad(bw.attnNorm);
        rmsNormBackward(dn1, s.x, asVector(bw.attnNorm), s.s1, dxin, dw1.size() ? &dw1 : nullptr);
        addVectorGrad(bw.attnNorm, dw1);
        dx = std::move(dxin);
    }
    if (m.embedding->trainable())
        embeddingBackward(dx, m.ids, m.embedding->grad);
}

template class ParameterSet<float>;
template class ParameterSet<double>;
template class CausalLm<float>;
template class CausalLm<double>;

} // namespace lathe::train
