#pragma once

// OpsTrainer's construction (parameters uploaded and bound to their places in the block and model tables),
// its activation and gradient buffers, its device memory and the host's access to parameters, gradients, moments
// and channel norms.
// Included at the end of train/opstrainer.h, whose class declares each member and states its contract.

#include "train/opstrainer.h"

namespace lathe::train {

template <class Ops>
OpsTrainer<Ops>::OpsTrainer(Ops ops, const CausalLm<float> &lm, const AdamW<float> &optimizer)
    : m_ops(std::move(ops)), m_lm(&lm), m_config(lm.config()), m_optimizer(optimizer.options()),
      m_steps(optimizer.steps()) {
    m_ops.activate();
    const ModelConfig &c = m_config;
    const char *hint = "train this on the CPU (device cpu)";
    m_rms = c.family == ArchFamily::Llama;
    m_post = c.family == ArchFamily::Bert;
    m_swiglu = m_rms;
    m_parallel = c.family == ArchFamily::Phi;
    m_activation = cpu::parseActivation(c.activation.empty() ? defaultActivation(c.family) : c.activation, "");
    m_positionOffset = c.family == ArchFamily::Opt ? 2 : 0;
    m_recompute = lm.recompute();
    // The parameters the methods' linears add (L, R, S; U, V, A, B, R, C) by name: where each goes.
    std::unordered_map<std::string, Param **> partParams;
    const std::vector<const MaskedLinear<float> *> masked = m_linears.collect(lm, partParams, hint);
    m_blocks.resize(size_t(c.numLayers));
    m_params.reserve(lm.parameters().size()); // the tables point into it
    // A resumed run's moments, one pair per parameter (AdamW's layout), or none before the first step.
    const auto &m1 = optimizer.firstMoments(), &m2 = optimizer.secondMoments();
    size_t index = 0;
    for (const Parameter<float> &p : lm.parameters()) {
        const auto part = p.extra ? partParams.find(p.name) : partParams.end();
        if (p.extra && part == partParams.end())
            throw LatheError("the GPU trainer trains the checkpoint's parameters and the low-rank + sparse and "
                             "PST linears' parts; '" + p.name + "' is added by another method",
                             hint);
        Param &d = m_params.emplace_back();
        d.name = p.name;
        d.rows = p.value.rows();
        d.cols = p.value.cols();
        d.decay = p.decay;
        d.trainable = p.trainable();
        const size_t bytes = size_t(d.size()) * sizeof(float);
        d.w.resize(bytes);
        m_ops.upload(d.value(), p.value.data(), d.size());
        if (d.trainable) {
            for (Buffer *b : {&d.g, &d.m, &d.v})
                b->resize(bytes);
            if (index < m1.size() && m1[index].size() == d.size() && m2[index].size() == d.size()) {
                m_ops.upload(d.m.template as<float>(), m1[index].data(), d.size());
                m_ops.upload(d.v.template as<float>(), m2[index].data(), d.size());
            } else {
                m_ops.zero(d.m.template as<float>(), d.size());
                m_ops.zero(d.v.template as<float>(), d.size());
            }
            m_ops.zero(d.grad(), d.size());
        }
        m_index[d.name] = m_params.size() - 1;
        if (part != partParams.end())
            *part->second = &d;
        else
            bind(p, &d);
        ++index;
    }
    require(m_embed && (m_post ? m_embNorm && m_transform && m_headNorm : m_finalNorm != nullptr), "GPU training",
            m_post ? "the BERT model has no token embedding, embedding norm or masked-LM head"
                   : "the model has no token embedding or final norm");
    for (const MaskedLinear<float> *m : masked)
        m_linears.attachMask(lm, *m, m_params[indexOf(m->weightName())], hint);
    m_fusedQkv = m_linears.place([this](int layer, TensorRole role) -> Lin * {
        return layer >= 0 && size_t(layer) < m_blocks.size() ? weightSlot(m_blocks[size_t(layer)], role) : nullptr;
    }) || m_fusedQkv;
    for (size_t l = 0; l < m_blocks.size(); ++l) {
        const BlockParams &b = m_blocks[l];
        const bool attention = b.o && (b.qkv || (b.q && b.k && b.v));
        if (!b.attnNorm || !attention || !b.up || !b.down || (!m_parallel && !b.mlpNorm) || (m_swiglu && !b.gate))
            throw LatheError("block " + std::to_string(l) + " lacks one of its tensors for the GPU trainer", hint);
    }
    m_maxSeq = m_position ? m_position->rows - m_positionOffset : c.maxPositions;
    const cpu::RopeTable rope = ropeTableFor(c, c.maxPositions, "");
    m_rotaryDim = rope.rotaryDim;
    m_ropeCos.resize(size_t(rope.cos.size()) * sizeof(float));
    m_ropeSin.resize(size_t(rope.sin.size()) * sizeof(float));
    if (m_rotaryDim > 0) {
        m_ops.upload(f(m_ropeCos), rope.cos.data(), int64_t(rope.cos.size()));
        m_ops.upload(f(m_ropeSin), rope.sin.data(), int64_t(rope.sin.size()));
    }
    m_saved.resize(m_blocks.size());
    m_gathered.resize(m_blocks.size());
    m_ops.synchronize();
}

template <class Ops>
void OpsTrainer<Ops>::download(CausalLm<float> &model, bool gradients) const {
    m_ops.activate();
    ParameterSet<float> &params = model.parameters();
    require(params.size() == m_params.size(), "GPU training", "the model's parameters differ from the trainer's");
    for (size_t i = 0; i < m_params.size(); ++i) {
        const Param &d = m_params[i];
        Parameter<float> &p = params[i];
        require(p.name == d.name && p.value.size() == d.size(), "GPU training",
                "parameter " + p.name + " differs from the trainer's " + d.name);
        m_ops.download(p.value.data(), d.value(), d.size());
        if (gradients && d.trainable) {
            p.grad.resize(p.value.rows(), p.value.cols());
            m_ops.download(p.grad.data(), d.grad(), d.size());
        }
    }
}

template <class Ops>
void OpsTrainer<Ops>::downloadOptimizer(AdamW<float> &optimizer) const {
    m_ops.activate();
    auto &m1 = optimizer.firstMoments(), &m2 = optimizer.secondMoments();
    m1.resize(m_params.size());
    m2.resize(m_params.size());
    for (size_t i = 0; i < m_params.size(); ++i) {
        const Param &d = m_params[i];
        if (!d.trainable) { // as AdamW keeps them: none for a frozen parameter
            m1[i].resize(0, 0);
            m2[i].resize(0, 0);
            continue;
        }
        m1[i].resize(d.rows, d.cols);
        m2[i].resize(d.rows, d.cols);
        m_ops.download(m1[i].data(), d.m.template as<float>(), d.size());
        m_ops.download(m2[i].data(), d.v.template as<float>(), d.size());
    }
    optimizer.setSteps(m_steps);
}

template <class Ops>
std::vector<std::vector<float>> OpsTrainer<Ops>::rowAbsProductSums(const std::vector<std::string> &names) {
    m_ops.activate();
    std::vector<std::vector<float>> out;
    for (const std::string &name : names) {
        const Param &d = m_params[indexOf(name)];
        require(d.trainable, "GPU training", "parameter " + name + " has no gradient");
        m_rowSums.ensure(size_t(d.rows) * sizeof(float));
        m_ops.rowAbsProductSums(d.value(), d.grad(), d.rows, d.cols, f(m_rowSums));
        std::vector<float> &sums = out.emplace_back(size_t(d.rows));
        m_ops.download(sums.data(), f(m_rowSums), d.rows);
    }
    return out;
}

template <class Ops>
void OpsTrainer<Ops>::zeroRows(const std::string &name, const std::vector<uint8_t> &keep) {
    m_ops.activate();
    Param &d = m_params[indexOf(name)];
    require(int64_t(keep.size()) == d.rows, "GPU training", "the row mask of " + name + " has the wrong size");
    m_rowKeep.ensure(keep.size());
    m_ops.uploadBytes(m_rowKeep.template as<void>(), keep.data(), keep.size());
    m_ops.zeroRows(d.value(), m_rowKeep.template as<uint8_t>(), d.rows, d.cols);
}

template <class Ops>
std::vector<std::vector<float>> OpsTrainer<Ops>::weightNorms(const std::vector<WeightNormRequest> &requests) {
    m_ops.activate();
    std::vector<std::vector<float>> out;
    for (const WeightNormRequest &r : requests) {
        const Param &d = m_params[indexOf(r.name)];
        const WeightNormPlan plan = weightNormPlan(r, d.rows, d.cols);
        m_rowSums.ensure(size_t(plan.count) * sizeof(float));
        if (plan.byRows)
            m_ops.rowAbsProductSums(d.value(), d.value(), d.rows, d.cols, f(m_rowSums));
        else
            m_ops.activationNorms(d.value(), d.rows, plan.channels, d.value(), plan.groups, plan.groupWidth,
                                  f(m_rowSums));
        std::vector<float> &values = out.emplace_back(size_t(plan.count));
        m_ops.download(values.data(), f(m_rowSums), plan.count);
        if (plan.byRows) // sums of squares
            for (float &v : values)
                v = std::sqrt(v);
    }
    return out;
}

template <class Ops>
void OpsTrainer<Ops>::downloadChannelNorms(CausalLm<float> &model) const {
    require(m_keepNorms, "GPU training", "the trainer keeps no channel norms (keepChannelNorms)");
    m_ops.activate();
    for (size_t l = 0; l < m_gathered.size(); ++l) {
        const Gathered &x = m_gathered[l];
        if (x.norms.bytes() == 0)
            continue; // no forward yet
        const int64_t count = x.keptChannels(m_config.intermediateSize) + x.gather.dims.kvHeads;
        std::vector<float> values(static_cast<size_t>(count));
        m_ops.download(values.data(), f(x.norms), count);
        model.setChannelNorms(int(l), CausalLm<float>::channelNormsOf(m_config, x.uploaded, values.data()));
    }
}

template <class Ops>
uint64_t OpsTrainer<Ops>::linearKindBytes() const {
    uint64_t n = m_linears.bytes() + m_rowSums.bytes() + m_rowKeep.bytes();
    for (const Gathered &x : m_gathered)
        for (const Buffer *b : {&x.qRows, &x.kRows, &x.qkvRows, &x.channels, &x.norms})
            n += b->bytes();
    for (const Param &p : m_params)
        n += p.mask.bytes();
    return n;
}

template <class Ops>
uint64_t OpsTrainer<Ops>::deviceBytes() const {
    uint64_t n = m_ropeCos.bytes() + m_ropeSin.bytes() + linearKindBytes();
    for (const Param &p : m_params)
        n += p.w.bytes() + p.g.bytes() + p.m.bytes() + p.v.bytes();
    const auto setBytes = [](const Saved &s) {
        uint64_t b = 0;
        for (const Buffer *m : {&s.x, &s.n1, &s.mean1, &s.rstd1, &s.q, &s.k, &s.v, &s.probs, &s.ctx, &s.mid, &s.n2,
                                &s.mean2, &s.rstd2, &s.gate, &s.up, &s.act})
            b += m->bytes();
        return b;
    };
    for (const Saved &s : m_saved)
        n += setBytes(s);
    n += setBytes(m_work);
    for (const Buffer *m : {&m_finalIn, &m_h, &m_meanFinal, &m_rstdFinal, &m_lse, &m_t1, &m_dh, &m_dx, &m_dmid,
                            &m_dn, &m_dact, &m_dgate, &m_dup, &m_dctx, &m_dq, &m_dk, &m_dv, &m_qkv, &m_embIn,
                            &m_embMean, &m_embRstd, &m_tPre, &m_tAct})
        n += m->bytes();
    return n;
}

template <class Ops>
void OpsTrainer<Ops>::bind(const Parameter<float> &p, Param *d) {
    const auto unknown = [&] {
        return LatheError("the GPU trainer does not know the tensor '" + p.name + "' (" + roleName(p.role) + ")",
                          "train this model on the CPU (device cpu)");
    };
    Param **slot = nullptr;
    switch (p.role) {
    case TensorRole::TokenEmbedding: slot = p.isBias ? nullptr : &m_embed; break;
    case TensorRole::PositionEmbedding: slot = p.isBias ? nullptr : &m_position; break;
    case TensorRole::FinalNorm: slot = p.isBias ? &m_finalNormB : &m_finalNorm; break;
    case TensorRole::LmHead: slot = p.isBias ? &m_headB : &m_head; break;
    case TensorRole::TokenTypeEmbedding: slot = p.isBias ? nullptr : &m_tokenType; break;
    case TensorRole::EmbeddingNorm: slot = p.isBias ? &m_embNormB : &m_embNorm; break;
    case TensorRole::HeadTransform: slot = p.isBias ? &m_transformB : &m_transform; break;
    case TensorRole::HeadNorm: slot = p.isBias ? &m_headNormB : &m_headNorm; break;
    default: break;
    }
    if (!slot && p.layer >= 0 && size_t(p.layer) < m_blocks.size()) {
        BlockParams &b = m_blocks[size_t(p.layer)];
        if (Lin *lin = p.isBias ? nullptr : weightSlot(b, p.role)) {
            if (*lin)
                throw unknown();
            lin->w = d;
            m_fusedQkv = m_fusedQkv || p.role == TensorRole::AttnQkv;
            return;
        }
        switch (p.role) {
        case TensorRole::AttnNorm: slot = p.isBias ? &b.attnNormB : &b.attnNorm; break;
        case TensorRole::MlpNorm: slot = p.isBias ? &b.mlpNormB : &b.mlpNorm; break;
        case TensorRole::AttnQ: slot = &b.qb; break;
        case TensorRole::AttnK: slot = &b.kb; break;
        case TensorRole::AttnV: slot = &b.vb; break;
        case TensorRole::AttnQkv: slot = &b.qkvb; break;
        case TensorRole::AttnO: slot = &b.ob; break;
        case TensorRole::MlpGate: slot = &b.gateb; break;
        case TensorRole::MlpUp: slot = &b.upb; break;
        case TensorRole::MlpDown: slot = &b.downb; break;
        default: break;
        }
    }
    if (!slot || *slot)
        throw unknown();
    *slot = d;
}

template <class Ops>
void OpsTrainer<Ops>::allocate(int64_t B, int64_t S) {
    const ModelConfig &c = m_config;
    const int64_t rows = B * S, D = c.hiddenSize, F = c.intermediateSize;
    const int64_t qw = c.numHeads * c.headDim, kw = c.numKvHeads * c.headDim;
    const auto floats = [](Buffer &m, int64_t n) { m.ensure(size_t(n) * sizeof(float)); };
    const auto stats = [&](Buffer &mean, Buffer &rstd) {
        floats(rstd, rows);
        if (!m_rms)
            floats(mean, rows);
    };
    // A block's activations: in every block's set, or with recomputation in the one work set, the blocks
    // keeping their inputs only.
    const auto activations = [&](Saved &s) {
        floats(s.n1, rows * D);
        stats(s.mean1, s.rstd1);
        if (!m_parallel) {
            floats(s.mid, rows * D);
            floats(s.n2, rows * D);
            stats(s.mean2, s.rstd2);
        }
        floats(s.q, rows * qw);
        floats(s.ctx, rows * qw);
        floats(s.k, rows * kw);
        floats(s.v, rows * kw);
        // What the attention saves: its probabilities (in bf16 with bf16 products, half the floats), or each
        // row's log-sum-exp (the ops' attentionStore).
        floats(s.probs, attentionSavedFloats(m_ops.attentionStore(), m_ops.precision(), B, c.numHeads, S));
        if (m_swiglu)
            floats(s.gate, rows * F);
        floats(s.up, rows * F);
        floats(s.act, rows * F);
    };
    for (Saved &s : m_saved) {
        floats(s.x, rows * D);
        if (!m_recompute)
            activations(s);
    }
    if (m_recompute)
        activations(m_work);
    for (Buffer *m : {&m_finalIn, &m_h, &m_t1, &m_dh, &m_dx, &m_dmid, &m_dn})
        floats(*m, rows * D);
    stats(m_meanFinal, m_rstdFinal);
    if (m_post) { // the embedding norm's input and statistics, the head transform's product and activation
        for (Buffer *m : {&m_embIn, &m_tPre, &m_tAct})
            floats(*m, rows * D);
        stats(m_embMean, m_embRstd);
    }
    floats(m_lse, rows);
    floats(m_dact, rows * F);
    floats(m_dup, rows * F);
    if (m_swiglu)
        floats(m_dgate, rows * F);
    floats(m_dctx, rows * qw);
    floats(m_dq, rows * qw);
    floats(m_dk, rows * kw);
    floats(m_dv, rows * kw);
    if (m_fusedQkv)
        floats(m_qkv, rows * (qw + 2 * kw));
}

} // namespace lathe::train
