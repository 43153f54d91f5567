#include "train/causallm.h"

#include "numeric/blas.h"

#include "train/linearkinds.h"

#include "base/error.h"
#include "base/parallel.h"
#include "base/random.h"
#include "engine/blockops.h"
#include "engine/transformer.h"
#include "model/model.h"
#include "tokenizers/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace lathe::train {

// ---- parameters ----

template <class T> Parameter<T> *ParameterSet<T>::find(const std::string &name) {
    for (Parameter<T> &p : *this)
        if (p.name == name)
            return &p;
    return nullptr;
}

template <class T> Parameter<T> &ParameterSet<T>::add(Parameter<T> p) {
    if (find(p.name))
        throw LatheError("two parameters named '" + p.name + "'");
    p.grad = Matrix<T>::Zero(p.value.rows(), p.value.cols());
    m_params.push_back(std::make_unique<Parameter<T>>(std::move(p)));
    return *m_params.back();
}

template <class T> void ParameterSet<T>::remove(const std::string &name) {
    for (auto it = m_params.begin(); it != m_params.end(); ++it)
        if ((*it)->name == name) {
            m_params.erase(it);
            return;
        }
    throw LatheError("no parameter named '" + name + "'");
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
    for (Parameter<T> &p : *this)
        if (p.trainable())
            parallelFor(p.grad.size(), 1 << 16, [&](int64_t b, int64_t e) {
                std::fill(p.grad.data() + b, p.grad.data() + e, T(0));
            }, cpuWorkThreads());
}

template <class T> int64_t ParameterSet<T>::count(bool trainableOnly) const {
    int64_t n = 0;
    for (const Parameter<T> &p : *this)
        if (!trainableOnly || p.trainable())
            n += p.value.size();
    return n;
}

template <class T> uint64_t ParameterSet<T>::gradientBytes() const {
    uint64_t n = 0;
    for (const Parameter<T> &p : *this)
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
    using Linear = std::unique_ptr<LinearKind<T>>;
    struct Norm {
        Parameter<T> *w = nullptr, *b = nullptr; // b: LayerNorm's shift, absent for RMSNorm
    };
    struct Block {
        Norm attnNorm, mlpNorm; // mlpNorm absent for Phi-2 (its MLP reads the attention's input norm)
        Linear q, k, v, qkv;    // qkv: GPT-2's fused projection (then q, k, v are empty)
        Linear o, gate, up, down; // gate: SwiGLU only
    };
    // The gathered rows and columns of a block's linears for its BlockSelection (all empty: everything).
    using Gather = BlockGather;
    // What the forward keeps of one block for its backward.
    struct Saved {
        Matrix<T> x, n1, q, k, v, ctx, attnOut, mid, n2, gate, up, act;
        Matrix<T> sum1, sum2; // post-norm: the sums entering norm1 and norm2
        NormState<T> s1, s2;
        AttentionState<T> att;
        void dropAllButInput() {
            for (Matrix<T> *m : {&n1, &q, &k, &v, &ctx, &attnOut, &mid, &n2, &gate, &up, &act, &sum1, &sum2})
                *m = Matrix<T>();
            s1 = s2 = NormState<T>();
            att = AttentionState<T>();
        }
    };

    ModelConfig config;
    // post: BERT's post-norm blocks (out = norm2(mid + mlp(mid)), mid = norm1(x + attn(x))).
    bool rms = true, parallel = false, swiglu = true, post = false, recompute = false;
    cpu::Activation activation = cpu::Activation::Silu;
    Parameter<T> *embedding = nullptr, *position = nullptr, *tokenType = nullptr;
    int64_t positionOffset = 0;
    Norm embeddingNorm, finalNorm; // embeddingNorm: BERT's; finalNorm: the decoders'
    Parameter<T> *headW = nullptr, *headB = nullptr; // headW null when tied to the token embedding
    // BERT's masked-LM head transform before the decoder: dense, activation, LayerNorm (absent for decoders).
    Parameter<T> *transformW = nullptr, *transformB = nullptr;
    Norm transformNorm;
    MlmMasking masking;
    std::vector<Block> blocks;
    std::vector<BlockSelection> selections; // per block
    RopeAngles<T> rope;
    AttentionDims dims; // of the whole model and the last forward's batch
    // The last forward.
    std::vector<int32_t> ids, types, targets;
    std::vector<Saved> saved;
    std::vector<Gather> gathers;
    std::vector<typename CausalLm<T>::ChannelNorms> norms; // per block, of the last forward
    Matrix<T> embeddingIn, finalIn, h;
    Matrix<T> transformPre, transformAct, transformOut; // BERT's head: dense output, activated, normed
    NormState<T> embeddingState, finalState, transformState;
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
    static Matrix<T> *gradOf(Parameter<T> *p) { return p && p->trainable() ? &p->grad : nullptr; }
    static Vector<T> vecGrad(Parameter<T> *p) {
        return p && p->trainable() ? Vector<T>(Vector<T>::Zero(p->value.size())) : Vector<T>();
    }
    void activate(const Matrix<T> &x, Matrix<T> &y) const {
        if (activation == cpu::Activation::Relu)
            reluForward(x, y);
        else
            geluForward(activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf, x, y);
    }
    void activateBack(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx) const {
        if (activation == cpu::Activation::Relu)
            reluBackward(dy, x, dx);
        else
            geluBackward(activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf, dy, x, dx);
    }
    Linear *slot(Block &b, TensorRole role) { return blockLinear(b, role); }

    // The rows and columns each linear of block l computes for its selection, and the attention's head counts.
    Gather gatherFor(size_t l) const { return blockGather(dims, selections[l]); }

    // Tells the parameters of block l's linears which of their rows and columns this step computes
    // (Parameter::activeRows), so that the optimizer leaves the others alone.
    void markActive(size_t l) {
        const Block &b = blocks[l];
        const Gather &g = gathers[l];
        const std::pair<const Linear *, const LinearSelection *> pairs[] = {
            {&b.q, &g.q}, {&b.k, &g.k}, {&b.v, &g.v}, {&b.qkv, &g.qkv}, {&b.o, &g.o},
            {&b.gate, &g.in}, {&b.up, &g.in}, {&b.down, &g.down}};
        for (const auto &[linear, sel] : pairs) {
            if (!*linear)
                continue;
            if (const auto *dense = dynamic_cast<const DenseLinear<T> *>(linear->get())) {
                dense->weight()->activeRows = sel->rows;
                dense->weight()->activeCols = sel->cols;
            } // the other kinds refuse selections

            if (Parameter<T> *bias = (*linear)->bias())
                bias->activeRows = sel->rows;
        }
    }

    // The channel norms of block l's MLP activation and attention context (ChannelNorms), mapped back to the
    // full channel and group numbering through the selection.
    void recordNorms(size_t l, const Saved &s, const Gather &g) {
        const int64_t groupWidth = int64_t(dims.heads / dims.kvHeads) * dims.headDim;
        std::vector<T> values(size_t(s.act.cols() + g.dims.kvHeads));
        activationNorms(s.act.data(), s.act.rows(), s.act.cols(), s.ctx.data(), g.dims.kvHeads, groupWidth,
                        values.data());
        norms[l] = CausalLm<T>::channelNormsOf(config, selections[l], values.data());
    }

    // Block l's forward from saved[l].x, filling saved[l]; returns the block's output.
    Matrix<T> blockForward(size_t l) {
        const Block &bw = blocks[l];
        Saved &s = saved[l];
        const Gather &g = gathers[l];
        if (!post)
            norm(bw.attnNorm, s.x, s.n1, s.s1);
        const Matrix<T> &attnIn = post ? s.x : s.n1;
        if (bw.qkv) {
            Matrix<T> qkv;
            bw.qkv->forward(attnIn, qkv, g.qkv);
            const int64_t qw = int64_t(g.dims.heads) * g.dims.headDim, kw = int64_t(g.dims.kvHeads) * g.dims.headDim;
            s.q = qkv.leftCols(qw);
            s.k = qkv.middleCols(qw, kw);
            s.v = qkv.rightCols(kw);
        } else {
            bw.q->forward(attnIn, s.q, g.q);
            bw.k->forward(attnIn, s.k, g.k);
            bw.v->forward(attnIn, s.v, g.v);
        }
        if (rope.rotaryDim > 0) {
            ropeForward(s.q, g.dims.seq, g.dims.heads, g.dims.headDim, rope);
            ropeForward(s.k, g.dims.seq, g.dims.kvHeads, g.dims.headDim, rope);
        }
        attentionForward(s.q, s.k, s.v, g.dims, s.ctx, s.att);
        bw.o->forward(s.ctx, s.attnOut, g.o);
        const Matrix<T> *mlpIn = &s.n1;
        if (post) {
            s.sum1 = s.x + s.attnOut;
            norm(bw.attnNorm, s.sum1, s.mid, s.s1);
            mlpIn = &s.mid;
        } else if (!parallel) {
            s.mid = s.x + s.attnOut;
            norm(bw.mlpNorm, s.mid, s.n2, s.s2);
            mlpIn = &s.n2;
        }
        if (swiglu) {
            bw.gate->forward(*mlpIn, s.gate, g.in);
            bw.up->forward(*mlpIn, s.up, g.in);
            swigluForward(s.gate, s.up, s.act);
        } else {
            bw.up->forward(*mlpIn, s.up, g.in);
            activate(s.up, s.act);
        }
        recordNorms(l, s, g);
        Matrix<T> down;
        bw.down->forward(s.act, down, g.down);
        if (post) {
            s.sum2 = s.mid + down;
            Matrix<T> out;
            norm(bw.mlpNorm, s.sum2, out, s.s2);
            return out;
        }
        return parallel ? Matrix<T>(s.x + s.attnOut + down) : Matrix<T>(s.mid + down);
    }

    // Block l's backward: dx holds the gradient of its output and becomes that of its input.
    void blockBackward(size_t l, Matrix<T> &dx) {
        const Block &bw = blocks[l];
        const Saved &s = saved[l];
        const Gather &g = gathers[l];
        const int64_t rows = s.x.rows(), D = s.x.cols();
        // Sequential: out = mid + down(mlp(norm2(mid))), mid = x + attn(norm1(x)).
        // Parallel (Phi-2): out = x + attn(n1) + down(mlp(n1)), n1 = norm1(x).
        // Post-norm (BERT): out = norm2(sum2), sum2 = mid + down(mlp(mid)), mid = norm1(sum1), sum1 = x + attn(x).
        const Matrix<T> &mlpIn = post ? s.mid : parallel ? s.n1 : s.n2;
        if (post) {
            Matrix<T> dsum2 = Matrix<T>::Zero(rows, D);
            normBack(bw.mlpNorm, dx, s.sum2, s.s2, dsum2);
            dx = std::move(dsum2); // from here on: the gradient of sum2, which the residual and the MLP share
        }
        Matrix<T> dact = Matrix<T>::Zero(s.act.rows(), s.act.cols());
        bw.down->backward(dx, s.act, &dact, g.down);
        Matrix<T> dmlpIn = Matrix<T>::Zero(rows, mlpIn.cols());
        Matrix<T> dup = Matrix<T>::Zero(s.up.rows(), s.up.cols());
        if (swiglu) {
            Matrix<T> dgate = Matrix<T>::Zero(s.gate.rows(), s.gate.cols());
            swigluBackward(dact, s.gate, s.up, dgate, dup);
            bw.gate->backward(dgate, mlpIn, &dmlpIn, g.in);
        } else {
            activateBack(dact, s.up, dup);
        }
        bw.up->backward(dup, mlpIn, &dmlpIn, g.in);
        Matrix<T> dAttnOut, dxin;
        Matrix<T> dn1 = Matrix<T>::Zero(rows, D);
        if (post) {
            const Matrix<T> dmid = dx + dmlpIn;
            Matrix<T> dsum1 = Matrix<T>::Zero(rows, D);
            normBack(bw.attnNorm, dmid, s.sum1, s.s1, dsum1);
            dAttnOut = dsum1;
            dxin = std::move(dsum1);
        } else if (parallel) {
            dAttnOut = dx;
            dxin = dx;
            dn1 = dmlpIn;
        } else {
            Matrix<T> dmid = dx;
            normBack(bw.mlpNorm, dmlpIn, s.mid, s.s2, dmid);
            dAttnOut = dmid;
            dxin = std::move(dmid);
        }
        Matrix<T> dctx = Matrix<T>::Zero(s.ctx.rows(), s.ctx.cols());
        bw.o->backward(dAttnOut, s.ctx, &dctx, g.o);
        Matrix<T> dq = Matrix<T>::Zero(s.q.rows(), s.q.cols()), dk = Matrix<T>::Zero(s.k.rows(), s.k.cols()),
                  dv = Matrix<T>::Zero(s.v.rows(), s.v.cols());
        attentionBackward(dctx, s.q, s.k, s.v, g.dims, s.att, dq, dk, dv);
        if (rope.rotaryDim > 0) {
            ropeBackward(dq, g.dims.seq, g.dims.heads, g.dims.headDim, rope);
            ropeBackward(dk, g.dims.seq, g.dims.kvHeads, g.dims.headDim, rope);
        }
        // Post-norm attention reads the block input itself: its q/k/v gradients go straight into dxin.
        const Matrix<T> &attnIn = post ? s.x : s.n1;
        Matrix<T> &dAttnIn = post ? dxin : dn1;
        if (bw.qkv) {
            Matrix<T> dqkv(rows, dq.cols() + dk.cols() + dv.cols());
            dqkv << dq, dk, dv;
            bw.qkv->backward(dqkv, attnIn, &dAttnIn, g.qkv);
        } else {
            bw.q->backward(dq, attnIn, &dAttnIn, g.q);
            bw.k->backward(dk, attnIn, &dAttnIn, g.k);
            bw.v->backward(dv, attnIn, &dAttnIn, g.v);
        }
        if (!post)
            normBack(bw.attnNorm, dn1, s.x, s.s1, dxin);
        dx = std::move(dxin);
    }
};

template <class T> void CausalLm<T>::checkSupported(const Model &model) {
    const ModelConfig &c = model.config;
    if (c.family == ArchFamily::Bert &&
        (!model.find(TensorRole::HeadTransform) || !model.find(TensorRole::HeadNorm)))
        throw LatheError(model.sourcePath + ": this BERT checkpoint has no masked-LM head (cls.predictions.*: a "
                                            "BertModel rather than a BertForMaskedLM), so it has no loss to train",
                         "use a BertForMaskedLM checkpoint (bert-base-uncased has the head), or a decoder");
    if (c.slicing.active())
        throw LatheError(model.sourcePath + ": training a sliced model is not supported yet");
    Transformer::checkSupported(model);
    if (c.family != ArchFamily::Llama) {
        const cpu::Activation a = cpu::parseActivation(c.activation.empty() ? defaultActivation(c.family) : c.activation,
                                                       model.sourcePath);
        if (a == cpu::Activation::Silu)
            throw LatheError(model.sourcePath + ": a SiLU MLP without a gate is not supported for training");
    }
}

template <class T> CausalLm<T>::CausalLm(const Model &model) : m_impl(std::make_unique<Impl>()) {
    checkSupported(model);
    Impl &m = *m_impl;
    m.config = model.config;
    const ModelConfig &c = model.config;
    m.rms = c.family == ArchFamily::Llama;
    m.parallel = c.family == ArchFamily::Phi;
    m.swiglu = c.family == ArchFamily::Llama;
    m.post = c.family == ArchFamily::Bert;
    m.activation = cpu::parseActivation(c.activation.empty() ? defaultActivation(c.family) : c.activation,
                                        model.sourcePath);
    m.positionOffset = c.family == ArchFamily::Opt ? 2 : 0;

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
    auto linear = [&](TensorRole role, int l) -> typename Impl::Linear {
        Parameter<T> *w = load(role, l, false, true);
        return std::make_unique<DenseLinear<T>>(w, load(role, l, true, false));
    };
    auto norm = [&](TensorRole role, int l, bool required) {
        typename Impl::Norm n;
        n.w = load(role, l, false, required);
        n.b = n.w && !m.rms ? load(role, l, true, false) : nullptr;
        return n;
    };
    m.embedding = load(TensorRole::TokenEmbedding, -1, false, true);
    m.position = load(TensorRole::PositionEmbedding, -1, false, false);
    m.tokenType = load(TensorRole::TokenTypeEmbedding, -1, false, false);
    m.embeddingNorm = norm(TensorRole::EmbeddingNorm, -1, m.post);
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
        m.blocks.push_back(std::move(b));
    }
    m.selections.resize(m.blocks.size());
    m.finalNorm = norm(TensorRole::FinalNorm, -1, !m.post);
    m.headW = load(TensorRole::LmHead, -1, false, false); // absent: tied to the token embedding
    // BERT's decoder bias (cls.predictions.bias) is there whether or not the decoder weight is tied.
    m.headB = m.headW || m.post ? load(TensorRole::LmHead, -1, true, false) : nullptr;
    if (m.post) {
        m.transformW = load(TensorRole::HeadTransform, -1, false, true);
        m.transformB = load(TensorRole::HeadTransform, -1, true, false);
        m.transformNorm = norm(TensorRole::HeadNorm, -1, true);
    }

    const cpu::RopeTable table = ropeTableFor(c, c.maxPositions, model.sourcePath);
    m.rope.rotaryDim = table.rotaryDim;
    m.rope.cos = table.cos.template cast<T>();
    m.rope.sin = table.sin.template cast<T>();
    m.dims.heads = int(c.numHeads);
    m.dims.kvHeads = int(c.numKvHeads);
    m.dims.headDim = int(c.headDim);
    m.dims.scale = 1.0 / std::sqrt(double(c.headDim));
    m.dims.causal = !m.post;
}

template <class T> CausalLm<T>::~CausalLm() = default;

template <class T> const ModelConfig &CausalLm<T>::config() const { return m_impl->config; }

template <class T> void CausalLm<T>::setRecompute(bool on) { m_impl->recompute = on; }
template <class T> bool CausalLm<T>::recompute() const { return m_impl->recompute; }

template <class T>
uint64_t CausalLm<T>::activationBytes(const ModelConfig &c, int64_t batch, int64_t seq, int64_t lossChunk,
                                      bool recompute) {
    const uint64_t rows = uint64_t(batch * seq), D = uint64_t(c.hiddenSize), F = uint64_t(c.intermediateSize),
                   d = uint64_t(c.headDim), H = uint64_t(c.numHeads), KV = uint64_t(c.numKvHeads);
    const uint64_t gated = c.family == ArchFamily::Llama ? 3 : 2; // gate, up, product; or up and activation
    const uint64_t perBlock =
        rows * (5 * D + 2 * H * d + 2 * KV * d + gated * F) + uint64_t(batch) * H * uint64_t(seq * seq);
    // The head's input, h and a chunk of logits; BERT also keeps the embedding sum before its norm and the head
    // transform's three outputs.
    const uint64_t head = rows * ((c.family == ArchFamily::Bert ? 6 : 2) * D + uint64_t(std::min<int64_t>(lossChunk, c.vocabSize)));
    const uint64_t blocks = recompute ? rows * D * uint64_t(c.numLayers) + perBlock : perBlock * uint64_t(c.numLayers);
    return (blocks + head) * sizeof(T);
}

template <class T> std::vector<typename CausalLm<T>::LinearSlot> CausalLm<T>::linears() const {
    std::vector<LinearSlot> out;
    for (size_t l = 0; l < m_impl->blocks.size(); ++l) {
        typename Impl::Block &b = m_impl->blocks[l];
        for (const TensorRole role : {TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV, TensorRole::AttnQkv,
                                      TensorRole::AttnO, TensorRole::MlpGate, TensorRole::MlpUp, TensorRole::MlpDown})
            if (typename Impl::Linear *s = m_impl->slot(b, role); s && *s)
                out.push_back({int(l), role, s->get()});
    }
    return out;
}

template <class T> void CausalLm<T>::replaceLinear(const std::string &weightName, const LinearFactory &make) {
    for (typename Impl::Block &b : m_impl->blocks)
        for (const TensorRole role : {TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV, TensorRole::AttnQkv,
                                      TensorRole::AttnO, TensorRole::MlpGate, TensorRole::MlpUp, TensorRole::MlpDown}) {
            typename Impl::Linear *s = m_impl->slot(b, role);
            if (!s || !*s || (*s)->weightName() != weightName)
                continue;
            auto *dense = dynamic_cast<DenseLinear<T> *>(s->get());
            if (!dense)
                throw LatheError(weightName + " is a " + (*s)->kindName() + " linear already");
            std::unique_ptr<LinearKind<T>> kind = make(m_params, dense->weight(), dense->bias());
            require(kind && kind->outFeatures() == dense->outFeatures() && kind->inFeatures() == dense->inFeatures(),
                    weightName, "the new linear has another shape");
            *s = std::move(kind);
            m_impl->haveForward = false;
            return;
        }
    throw LatheError("no block linear with the weight '" + weightName + "'");
}

template <class T> void CausalLm<T>::setSelection(int layer, BlockSelection selection) {
    Impl &m = *m_impl;
    require(layer >= 0 && size_t(layer) < m.blocks.size(), "training", "no block " + std::to_string(layer));
    auto check = [&](const std::vector<int32_t> &v, int64_t n, const char *what) {
        for (size_t i = 0; i < v.size(); ++i)
            require(v[i] >= 0 && v[i] < n && (i == 0 || v[i] > v[i - 1]), "training",
                    std::string(what) + " must be sorted, distinct and below " + std::to_string(n));
    };
    check(selection.mlpChannels, m.config.intermediateSize, "MLP channels");
    check(selection.kvGroups, m.config.numKvHeads, "key/value groups");
    m.selections[size_t(layer)] = std::move(selection);
    m.haveForward = false;
}

template <class T> void CausalLm<T>::clearSelections() {
    for (BlockSelection &s : m_impl->selections)
        s = BlockSelection();
    m_impl->haveForward = false;
}

template <class T> const BlockSelection &CausalLm<T>::selection(int layer) const {
    require(layer >= 0 && size_t(layer) < m_impl->selections.size(), "training", "no block " + std::to_string(layer));
    return m_impl->selections[size_t(layer)];
}

template <class T> void CausalLm<T>::setChannelNorms(int layer, ChannelNorms norms) {
    Impl &m = *m_impl;
    require(layer >= 0 && size_t(layer) < m.blocks.size(), "training", "no block " + std::to_string(layer));
    require(int64_t(norms.mlp.size()) == m.config.intermediateSize &&
                int64_t(norms.kvGroups.size()) == m.config.numKvHeads,
            "training", "channel norms of the wrong size");
    m.norms.resize(m.blocks.size());
    m.norms[size_t(layer)] = std::move(norms);
}

template <class T> const typename CausalLm<T>::ChannelNorms &CausalLm<T>::channelNorms(int layer) const {
    static const ChannelNorms none;
    return layer >= 0 && size_t(layer) < m_impl->norms.size() ? m_impl->norms[size_t(layer)] : none;
}

template <class T>
void CausalLm<T>::forEachExportTensor(
    const std::function<void(const std::string &name, const Matrix<T> &value)> &fn) const {
    std::vector<const LinearKind<T> *> replaced;
    for (const LinearSlot &s : linears())
        if (!dynamic_cast<const DenseLinear<T> *>(s.kind))
            replaced.push_back(s.kind);
    for (const Parameter<T> &p : m_params) {
        if (p.extra)
            continue;
        auto it = std::find_if(replaced.begin(), replaced.end(),
                               [&](const LinearKind<T> *k) { return k->weightName() == p.name; });
        if (it == replaced.end())
            fn(p.name, p.value);
    }
    for (const LinearKind<T> *k : replaced)
        fn(k->weightName(), k->effectiveWeight());
}

template <class T> bool CausalLm<T>::maskedLm() const { return m_impl->post; }
template <class T> void CausalLm<T>::setMasking(MlmMasking masking) { m_impl->masking = std::move(masking); }
template <class T> const MlmMasking &CausalLm<T>::masking() const { return m_impl->masking; }

template <class T> T CausalLm<T>::forward(const TokenBatch &batch, uint64_t maskSeed) {
    const Impl &m = *m_impl;
    require(batch.seq >= 1 && int64_t(batch.tokens.size()) == batch.batch * batch.seq, "training",
            "a batch needs batch x seq tokens");
    if (m.post) {
        require(m.masking.maskId >= 0 && m.masking.maskId < m.config.vocabSize, "training",
                "masked-LM training needs the tokenizer's [MASK] id", "give the model's tokenizer (vocab.txt)");
        MaskedBatch masked = maskTokens(batch, m.masking, m.config.vocabSize, maskSeed);
        return forwardWithTargets(masked.inputs, std::move(masked.targets));
    }
    require(batch.seq >= 2, "training", "a batch needs windows of at least 2 tokens");
    std::vector<int32_t> targets(batch.tokens.size(), -1);
    for (int64_t b = 0; b < batch.batch; ++b)
        for (int64_t t = 0; t + 1 < batch.seq; ++t)
            targets[size_t(b * batch.seq + t)] = batch.tokens[size_t(b * batch.seq + t + 1)];
    return forwardWithTargets(batch, std::move(targets));
}

template <class T> T CausalLm<T>::forwardWithTargets(const TokenBatch &batch, std::vector<int32_t> targets) {
    Impl &m = *m_impl;
    const BlasSplitScope splitBlas(std::is_same_v<T, float> && engineSplitsBlas());
    const ModelConfig &c = m.config;
    require(batch.seq >= 1 && int64_t(batch.tokens.size()) == batch.batch * batch.seq &&
                targets.size() == batch.tokens.size(),
            "training", "a batch needs batch x seq tokens and as many targets");
    require(batch.mask.empty(), "training", "padded batches are not supported in training");
    require(std::any_of(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; }), "training",
            "the batch has no target to predict");
    const int64_t maxSeq = m.position ? m.position->value.rows() - m.positionOffset : c.maxPositions;
    require(batch.seq <= maxSeq, "training",
            "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                std::to_string(maxSeq) + " positions");
    for (const int32_t id : batch.tokens)
        require(id >= 0 && id < m.embedding->value.rows(), "training",
                "token id " + std::to_string(id) + " is outside the vocabulary");
    m.dims.batch = batch.batch;
    m.dims.seq = batch.seq;
    m.ids = batch.tokens;
    m.targets = std::move(targets);
    m.types.clear();
    if (m.tokenType) {
        m.types = batch.tokenTypes.empty() ? std::vector<int32_t>(m.ids.size(), 0) : batch.tokenTypes;
        require(m.types.size() == m.ids.size(), "training", "one segment id per token");
        for (const int32_t t : m.types)
            require(t >= 0 && t < m.tokenType->value.rows(), "training", "segment id out of range");
    }

    Matrix<T> x;
    embeddingForward(m.embedding->value, m.ids, x);
    if (m.position)
        for (int64_t r = 0; r < x.rows(); ++r)
            x.row(r) += m.position->value.row(r % batch.seq + m.positionOffset);
    if (m.tokenType)
        for (int64_t r = 0; r < x.rows(); ++r)
            x.row(r) += m.tokenType->value.row(m.types[size_t(r)]);
    if (m.embeddingNorm.w) {
        m.embeddingIn = std::move(x);
        m.norm(m.embeddingNorm, m.embeddingIn, x, m.embeddingState);
    }
    m.saved.resize(m.blocks.size());
    m.gathers.resize(m.blocks.size());
    m.norms.resize(m.blocks.size());
    for (size_t l = 0; l < m.blocks.size(); ++l) {
        m.gathers[l] = m.gatherFor(l);
        m.markActive(l);
        m.saved[l].x = std::move(x);
        x = m.blockForward(l);
        if (m.recompute)
            m.saved[l].dropAllButInput();
    }
    m.finalIn = std::move(x);
    if (m.finalNorm.w)
        m.norm(m.finalNorm, m.finalIn, m.h, m.finalState);
    else
        m.h = m.finalIn;
    const Matrix<T> *headIn = &m.h;
    if (m.transformW) {
        linearForward(m.h, m.transformW->value, asVector(m.transformB), m.transformPre);
        m.activate(m.transformPre, m.transformAct);
        m.norm(m.transformNorm, m.transformAct, m.transformOut, m.transformState);
        headIn = &m.transformOut;
    }
    const Matrix<T> &head = m.headW ? m.headW->value : m.embedding->value;
    const T loss = crossEntropyForward(*headIn, head, asVector(m.headB), m.targets, m_lossChunk, m.loss);
    m.haveForward = true;
    return loss;
}

template <class T> void CausalLm<T>::backward(T scale) {
    Impl &m = *m_impl;
    const BlasSplitScope splitBlas(std::is_same_v<T, float> && engineSplitsBlas());
    require(m.haveForward, "training", "backward needs a forward first");
    const int64_t rows = int64_t(m.ids.size()), D = m.finalIn.cols();

    // Head (and BERT's head transform) and final norm.
    Matrix<T> dh = Matrix<T>::Zero(rows, D);
    Parameter<T> *headParam = m.headW ? m.headW : m.embedding;
    Vector<T> dHeadBias = Impl::vecGrad(m.headB);
    const Matrix<T> &headIn = m.transformW ? m.transformOut : m.h;
    crossEntropyBackward(headIn, headParam->value, asVector(m.headB), m.targets, m_lossChunk, m.loss, scale, dh,
                         Impl::gradOf(headParam), dHeadBias.size() ? &dHeadBias : nullptr);
    addVectorGrad(m.headB, dHeadBias);
    if (m.transformW) {
        Matrix<T> dAct = Matrix<T>::Zero(rows, D), dPre = Matrix<T>::Zero(rows, D), dTransformIn = Matrix<T>::Zero(rows, D);
        m.normBack(m.transformNorm, dh, m.transformAct, m.transformState, dAct);
        m.activateBack(dAct, m.transformPre, dPre);
        Vector<T> db = Impl::vecGrad(m.transformB);
        linearBackward(dPre, m.h, m.transformW->value, &dTransformIn, Impl::gradOf(m.transformW), db.size() ? &db : nullptr);
        addVectorGrad(m.transformB, db);
        dh = std::move(dTransformIn);
    }
    Matrix<T> dx;
    if (m.finalNorm.w) {
        dx = Matrix<T>::Zero(rows, D);
        m.normBack(m.finalNorm, dh, m.finalIn, m.finalState, dx);
    } else {
        dx = std::move(dh);
    }

    for (size_t li = m.blocks.size(); li-- > 0;) {
        if (m.recompute)
            m.blockForward(li); // refills saved[li] from its input
        m.blockBackward(li, dx);
        if (m.recompute)
            m.saved[li].dropAllButInput();
    }
    if (m.embeddingNorm.w) {
        Matrix<T> dEmbedding = Matrix<T>::Zero(rows, D);
        m.normBack(m.embeddingNorm, dx, m.embeddingIn, m.embeddingState, dEmbedding);
        dx = std::move(dEmbedding);
    }
    if (m.embedding->trainable())
        embeddingBackward(dx, m.ids, m.embedding->grad);
    if (m.position && m.position->trainable())
        for (int64_t r = 0; r < rows; ++r)
            m.position->grad.row(r % m.dims.seq + m.positionOffset) += dx.row(r);
    if (m.tokenType && m.tokenType->trainable())
        for (int64_t r = 0; r < rows; ++r)
            m.tokenType->grad.row(m.types[size_t(r)]) += dx.row(r);
}

MaskedBatch maskTokens(const TokenBatch &batch, const MlmMasking &masking, int64_t vocab, uint64_t seed) {
    require(masking.rate > 0 && masking.rate <= 1, "training", "the masking rate must be in (0, 1]");
    require(vocab > 0 && vocab <= int64_t(INT32_MAX), "training", "bad vocabulary size");
    MaskedBatch out{batch, std::vector<int32_t>(batch.tokens.size(), -1)};
    // The SplitMix64 sequence from `seed` (base/random.h's mix of seed, seed + g, seed + 2g, ...): portable draws.
    struct {
        uint64_t state;
        uint64_t next() {
            const uint64_t r = splitmix(state);
            state += 0x9E3779B97F4A7C15ull;
            return r;
        }
        double uniform() { return double(next() >> 11) * 0x1.0p-53; } // [0, 1)
    } rng{seed};
    auto special = [&](int32_t id) {
        return id == masking.maskId ||
               std::find(masking.special.begin(), masking.special.end(), id) != masking.special.end();
    };
    auto choose = [&](size_t i) {
        out.targets[i] = batch.tokens[i];
        const double u = rng.uniform();
        if (u < 0.8)
            out.inputs.tokens[i] = masking.maskId;
        else if (u < 0.9)
            out.inputs.tokens[i] = int32_t(rng.next() % uint64_t(vocab));
    };
    for (int64_t b = 0; b < batch.batch; ++b) {
        bool any = false;
        for (int64_t t = 0; t < batch.seq; ++t) {
            const size_t i = size_t(b * batch.seq + t);
            if (rng.uniform() < masking.rate && !special(batch.tokens[i])) {
                choose(i);
                any = true;
            }
        }
        for (int64_t t = 0; !any && t < batch.seq; ++t) {
            const size_t i = size_t(b * batch.seq + t);
            if (!special(batch.tokens[i])) {
                choose(i);
                any = true;
            }
        }
    }
    return out;
}

std::string objectiveName(const ModelConfig &config, const MlmMasking &masking) {
    if (config.family != ArchFamily::Bert)
        return "next-token";
    char rate[32];
    std::snprintf(rate, sizeof rate, "%g", 100 * masking.rate);
    return std::string("masked-LM (") + rate + "% of tokens)";
}

MlmMasking mlmMaskingFor(const ModelConfig &config, const Tokenizer &tokenizer) {
    if (config.family == ArchFamily::Bert && tokenizer.mask < 0)
        throw LatheError("masked-LM training needs a [MASK] token, and the tokenizer (" + tokenizer.kind() +
                             ") has none",
                         "give the model's own WordPiece vocabulary (vocab.txt or tokenizer.json) as the tokenizer");
    MlmMasking m;
    m.maskId = tokenizer.mask;
    for (const int32_t id : {tokenizer.bos, tokenizer.eos, tokenizer.pad})
        if (id >= 0)
            m.special.push_back(id);
    return m;
}

template class ParameterSet<float>;
template class ParameterSet<double>;
template class CausalLm<float>;
template class CausalLm<double>;

} // namespace lathe::train
