#include "train/causallm.h"

#include "base/error.h"
#include "engine/blockops.h"
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
    struct Norm {
        Parameter<T> *w = nullptr, *b = nullptr; // b: LayerNorm's shift, absent for RMSNorm
    };
    struct Block {
        Norm attnNorm, mlpNorm; // mlpNorm absent for Phi-2 (its MLP reads the attention's input norm)
        Linear q, k, v, qkv;    // qkv: GPT-2's fused projection (then q, k, v are empty)
        Linear o, gate, up, down; // gate: SwiGLU only
    };
    // What the forward keeps of one block for its backward.
    struct Saved {
        Matrix<T> x, n1, q, k, v, ctx, attnOut, mid, n2, gate, up, act;
        NormState<T> s1, s2;
        AttentionState<T> att;
    };

    ModelConfig config;
    bool rms = true, parallel = false, swiglu = true;
    cpu::Activation activation = cpu::Activation::Silu;
    Parameter<T> *embedding = nullptr, *position = nullptr;
    int64_t positionOffset = 0;
    Norm finalNorm;
    Linear head; // head.w null when tied to the token embedding
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

    void norm(const Norm &n, const Matrix<T> &x, Matrix<T> &y, NormState<T> &st) const {
        if (rms)
            rmsNormForward(x, asVector(n.w), T(config.normEps), y, st);
        else
            layerNormForward(x, asVector(n.w), n.b ? asVector(n.b) : Vector<T>(Vector<T>::Zero(x.cols())),
                             T(config.normEps), y, st);
    }
    void normBack(const Norm &n, const Matrix<T> &dy, const Matrix<T> &x, const NormState<T> &st, Matrix<T> &dx) const {
        Vector<T> dw = vecGrad(n.w), db = vecGrad(n.b);
        if (rms)
            rmsNormBackward(dy, x, asVector(n.w), st, dx, dw.size() ? &dw : nullptr);
        else
            layerNormBackward(dy, x, asVector(n.w), st, dx, dw.size() ? &dw : nullptr, db.size() ? &db : nullptr);
        addVectorGrad(n.w, dw);
        addVectorGrad(n.b, db);
    }
    static void linear(const Linear &l, const Matrix<T> &x, Matrix<T> &y) { linearForward(x, l.w->value, asVector(l.b), y); }
    // dx accumulates; the weight and bias gradients when trainable.
    static void linearBack(const Linear &l, const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx) {
        Vector<T> db = vecGrad(l.b);
        linearBackward(dy, x, l.w->value, &dx, gradOf(l.w), db.size() ? &db : nullptr);
        addVectorGrad(l.b, db);
    }
    static Matrix<T> *gradOf(Parameter<T> *p) { return p && p->trainable() ? &p->grad : nullptr; }
    static Vector<T> vecGrad(Parameter<T> *p) {
        return p && p->trainable() ? Vector<T>(Vector<T>::Zero(p->value.size())) : Vector<T>();
    }
    void activate(const Matrix<T> &x, Matrix<T> &y) const {
        if (activation == cpu::Activation::Relu)
            y = x.cwiseMax(T(0));
        else
            geluForward(activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf, x, y);
    }
    void activateBack(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx) const {
        if (activation == cpu::Activation::Relu)
            dx.array() += (x.array() > T(0)).select(dy.array(), T(0));
        else
            geluBackward(activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf, dy, x, dx);
    }
};

template <class T> CausalLm<T>::CausalLm(const Model &model) : m_impl(std::make_unique<Impl>()) {
    Impl &m = *m_impl;
    m.config = model.config;
    const ModelConfig &c = model.config;
    if (c.family == ArchFamily::Bert)
        throw LatheError(model.sourcePath + ": training runs decoder language models (BERT's MLM head is not "
                                            "supported yet)",
                         "use a Llama-family, OPT, GPT-2 or Phi-2 model");
    if (c.slicing.active())
        throw LatheError(model.sourcePath + ": training a sliced model is not supported yet");
    Transformer::checkSupported(model);
    m.rms = c.family == ArchFamily::Llama;
    m.parallel = c.family == ArchFamily::Phi;
    m.swiglu = c.family == ArchFamily::Llama;
    m.activation = cpu::parseActivation(c.activation.empty() ? defaultActivation(c.family) : c.activation,
                                        model.sourcePath);
    if (!m.swiglu && m.activation == cpu::Activation::Silu)
        throw LatheError(model.sourcePath + ": a SiLU MLP without a gate is not supported for training");
    m.positionOffset = c.family == ArchFamily::Opt ? 2 : 0;

    // Parameters are created in a fixed order and referenced by pointer: reserve so that none moves.
    m_params.all().reserve(size_t(8 + 20 * c.numLayers));
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
        p.transposedInFile = t->transform == TensorTransform::Transpose;
        const int64_t rows = t->shape[0], cols = t->shape.size() == 2 ? t->shape[1] : 1;
        p.value = Eigen::Map<const Matrix<float>>(data.data(), rows, cols).template cast<T>();
        return &m_params.add(std::move(p));
    };
    auto linear = [&](TensorRole role, int l, bool required = true) {
        typename Impl::Linear x;
        x.w = load(role, l, false, required);
        x.b = x.w ? load(role, l, true, false) : nullptr;
        return x;
    };
    auto norm = [&](TensorRole role, int l, bool required) {
        typename Impl::Norm n;
        n.w = load(role, l, false, required);
        n.b = n.w && !m.rms ? load(role, l, true, false) : nullptr;
        return n;
    };
    m.embedding = load(TensorRole::TokenEmbedding, -1, false, true);
    m.position = load(TensorRole::PositionEmbedding, -1, false, false);
    for (int l = 0; l < int(c.numLayers); ++l) {
        typename Impl::Block b;
        b.attnNorm = norm(TensorRole::AttnNorm, l, true);
        if (model.find(TensorRole::AttnQkv, l, false)) {
            b.qkv = linear(TensorRole::AttnQkv, l);
        } else {
            b.q = linear(TensorRole::AttnQ, l);
            b.k = linear(TensorRole::AttnK, l);
            b.v = linear(TensorRole::AttnV, l);
        }
        b.o = linear(TensorRole::AttnO, l);
        if (!m.parallel)
            b.mlpNorm = norm(TensorRole::MlpNorm, l, true);
        if (m.swiglu)
            b.gate = linear(TensorRole::MlpGate, l);
        b.up = linear(TensorRole::MlpUp, l);
        b.down = linear(TensorRole::MlpDown, l);
        m.blocks.push_back(b);
    }
    m.finalNorm = norm(TensorRole::FinalNorm, -1, true);
    m.head = linear(TensorRole::LmHead, -1, false); // absent: tied to the token embedding

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
    const uint64_t perBlock =
        rows * (5 * D + 2 * H * d + 2 * KV * d + 3 * F) + uint64_t(batch) * H * uint64_t(seq * seq);
    const uint64_t head = rows * (2 * D + uint64_t(std::min<int64_t>(lossChunk, c.vocabSize))); // input, h, a chunk
    return (perBlock * uint64_t(c.numLayers) + head) * sizeof(T);
}

template <class T> T CausalLm<T>::forward(const TokenBatch &batch) {
    Impl &m = *m_impl;
    const ModelConfig &c = m.config;
    require(batch.seq >= 2 && int64_t(batch.tokens.size()) == batch.batch * batch.seq, "training",
            "a batch needs windows of at least 2 tokens");
    const int64_t maxSeq = m.position ? m.position->value.rows() - m.positionOffset : c.maxPositions;
    require(batch.seq <= maxSeq, "training",
            "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                std::to_string(maxSeq) + " positions");
    m.dims.batch = batch.batch;
    m.dims.seq = batch.seq;
    m.ids = batch.tokens;
    m.targets.assign(m.ids.size(), -1);
    for (int64_t b = 0; b < batch.batch; ++b)
        for (int64_t t = 0; t + 1 < batch.seq; ++t)
            m.targets[size_t(b * batch.seq + t)] = m.ids[size_t(b * batch.seq + t + 1)];

    Matrix<T> x;
    embeddingForward(m.embedding->value, m.ids, x);
    if (m.position)
        for (int64_t r = 0; r < x.rows(); ++r)
            x.row(r) += m.position->value.row(r % batch.seq + m.positionOffset);
    m.saved.resize(m.blocks.size());
    for (size_t l = 0; l < m.blocks.size(); ++l) {
        const typename Impl::Block &bw = m.blocks[l];
        typename Impl::Saved &s = m.saved[l];
        s.x = std::move(x);
        m.norm(bw.attnNorm, s.x, s.n1, s.s1);
        if (bw.qkv.w) {
            Matrix<T> qkv;
            Impl::linear(bw.qkv, s.n1, qkv);
            const int64_t qw = int64_t(m.dims.heads) * m.dims.headDim, kw = int64_t(m.dims.kvHeads) * m.dims.headDim;
            s.q = qkv.leftCols(qw);
            s.k = qkv.middleCols(qw, kw);
            s.v = qkv.rightCols(kw);
        } else {
            Impl::linear(bw.q, s.n1, s.q);
            Impl::linear(bw.k, s.n1, s.k);
            Impl::linear(bw.v, s.n1, s.v);
        }
        if (m.rope.rotaryDim > 0) {
            ropeForward(s.q, batch.seq, m.dims.heads, m.dims.headDim, m.rope);
            ropeForward(s.k, batch.seq, m.dims.kvHeads, m.dims.headDim, m.rope);
        }
        attentionForward(s.q, s.k, s.v, m.dims, s.ctx, s.att);
        Impl::linear(bw.o, s.ctx, s.attnOut);
        const Matrix<T> *mlpIn = &s.n1;
        if (!m.parallel) {
            s.mid = s.x + s.attnOut;
            m.norm(bw.mlpNorm, s.mid, s.n2, s.s2);
            mlpIn = &s.n2;
        }
        if (m.swiglu) {
            Impl::linear(bw.gate, *mlpIn, s.gate);
            Impl::linear(bw.up, *mlpIn, s.up);
            swigluForward(s.gate, s.up, s.act);
        } else {
            Impl::linear(bw.up, *mlpIn, s.up);
            m.activate(s.up, s.act);
        }
        Matrix<T> down;
        Impl::linear(bw.down, s.act, down);
        x = m.parallel ? Matrix<T>(s.x + s.attnOut + down) : Matrix<T>(s.mid + down);
    }
    m.finalIn = std::move(x);
    m.norm(m.finalNorm, m.finalIn, m.h, m.finalState);
    const Matrix<T> &head = m.head.w ? m.head.w->value : m.embedding->value;
    const T loss = crossEntropyForward(m.h, head, asVector(m.head.b), m.targets, m_lossChunk, m.loss);
    m.haveForward = true;
    return loss;
}

template <class T> void CausalLm<T>::backward(T scale) {
    Impl &m = *m_impl;
    require(m.haveForward, "training", "backward needs a forward first");
    const int64_t rows = int64_t(m.ids.size()), D = m.finalIn.cols();

    // Head and final norm.
    Matrix<T> dh = Matrix<T>::Zero(rows, D);
    Parameter<T> *headParam = m.head.w ? m.head.w : m.embedding;
    Vector<T> dHeadBias = Impl::vecGrad(m.head.b);
    crossEntropyBackward(m.h, headParam->value, asVector(m.head.b), m.targets, m_lossChunk, m.loss, scale, dh,
                         Impl::gradOf(headParam), dHeadBias.size() ? &dHeadBias : nullptr);
    addVectorGrad(m.head.b, dHeadBias);
    Matrix<T> dx = Matrix<T>::Zero(rows, D);
    m.normBack(m.finalNorm, dh, m.finalIn, m.finalState, dx);

    for (size_t li = m.blocks.size(); li-- > 0;) {
        const typename Impl::Block &bw = m.blocks[li];
        const typename Impl::Saved &s = m.saved[li];
        // Sequential: out = mid + down(mlp(norm2(mid))), mid = x + attn(norm1(x)).
        // Parallel (Phi-2): out = x + attn(n1) + down(mlp(n1)), n1 = norm1(x).
        const Matrix<T> &mlpIn = m.parallel ? s.n1 : s.n2;
        Matrix<T> dact = Matrix<T>::Zero(s.act.rows(), s.act.cols());
        Impl::linearBack(bw.down, dx, s.act, dact);
        Matrix<T> dmlpIn = Matrix<T>::Zero(rows, mlpIn.cols());
        Matrix<T> dup = Matrix<T>::Zero(s.up.rows(), s.up.cols());
        if (m.swiglu) {
            Matrix<T> dgate = Matrix<T>::Zero(s.gate.rows(), s.gate.cols());
            swigluBackward(dact, s.gate, s.up, dgate, dup);
            Impl::linearBack(bw.gate, dgate, mlpIn, dmlpIn);
        } else {
            m.activateBack(dact, s.up, dup);
        }
        Impl::linearBack(bw.up, dup, mlpIn, dmlpIn);
        Matrix<T> dAttnOut, dxin;
        Matrix<T> dn1 = Matrix<T>::Zero(rows, D);
        if (m.parallel) {
            dAttnOut = dx;
            dxin = dx;
            dn1 = dmlpIn;
        } else {
            Matrix<T> dmid = dx;
            m.normBack(bw.mlpNorm, dmlpIn, s.mid, s.s2, dmid);
            dAttnOut = dmid;
            dxin = std::move(dmid);
        }
        Matrix<T> dctx = Matrix<T>::Zero(s.ctx.rows(), s.ctx.cols());
        Impl::linearBack(bw.o, dAttnOut, s.ctx, dctx);
        Matrix<T> dq = Matrix<T>::Zero(s.q.rows(), s.q.cols()), dk = Matrix<T>::Zero(s.k.rows(), s.k.cols()),
                  dv = Matrix<T>::Zero(s.v.rows(), s.v.cols());
        attentionBackward(dctx, s.q, s.k, s.v, m.dims, s.att, dq, dk, dv);
        if (m.rope.rotaryDim > 0) {
            ropeBackward(dq, m.dims.seq, m.dims.heads, m.dims.headDim, m.rope);
            ropeBackward(dk, m.dims.seq, m.dims.kvHeads, m.dims.headDim, m.rope);
        }
        if (bw.qkv.w) {
            Matrix<T> dqkv(rows, dq.cols() + dk.cols() + dv.cols());
            dqkv << dq, dk, dv;
            Impl::linearBack(bw.qkv, dqkv, s.n1, dn1);
        } else {
            Impl::linearBack(bw.q, dq, s.n1, dn1);
            Impl::linearBack(bw.k, dk, s.n1, dn1);
            Impl::linearBack(bw.v, dv, s.n1, dn1);
        }
        m.normBack(bw.attnNorm, dn1, s.x, s.s1, dxin);
        dx = std::move(dxin);
    }
    if (m.embedding->trainable())
        embeddingBackward(dx, m.ids, m.embedding->grad);
    if (m.position && m.position->trainable())
        for (int64_t r = 0; r < rows; ++r)
            m.position->grad.row(r % m.dims.seq + m.positionOffset) += dx.row(r);
}

template class ParameterSet<float>;
template class ParameterSet<double>;
template class CausalLm<float>;
template class CausalLm<double>;

} // namespace lathe::train
