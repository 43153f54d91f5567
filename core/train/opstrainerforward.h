#pragma once

// OpsTrainer's forward pass: the embeddings, each block (gathered on a SAT step) keeping what its backward
// needs, the final norm and the fused, vocabulary-chunked cross-entropy.
// Included at the end of train/opstrainer.h, whose class declares each member and states its contract.

#include "train/opstrainer.h"

namespace lathe::train {

template <class Ops>
void OpsTrainer<Ops>::normForward(const Param *w, const Param *b, const float *x, int64_t rows, float *y,
                                  float *mean, float *rstd) {
    const int64_t D = m_config.hiddenSize;
    const float eps = float(m_config.normEps);
    if (m_rms)
        m_ops.rmsNormForward(x, w->value(), rows, D, eps, y, rstd);
    else
        m_ops.layerNormForward(x, w->value(), orNull(b), rows, D, eps, y, mean, rstd);
}

template <class Ops>
void OpsTrainer<Ops>::projectionsForward(const BlockParams &w, const Gathered &g, const Saved &s, const float *in,
                                         int64_t rows) {
    const auto [D, fullQw, fullKw, qw, kw, all] = projectionWidths(g);
    if (!w.qkv) {
        m_linears.forward(w.q, w.qb, in, rows, D, fullQw, f(s.q), g.q());
        m_linears.forward(w.k, w.kb, in, rows, D, fullKw, f(s.k), g.kv());
        m_linears.forward(w.v, w.vb, in, rows, D, fullKw, f(s.v), g.kv());
        return;
    }
    m_linears.forward(w.qkv, w.qkvb, in, rows, D, fullQw + 2 * fullKw, f(m_qkv), g.qkv());
    m_ops.copyColumns(f(s.q), qw, f(m_qkv), all, rows, qw);
    m_ops.copyColumns(f(s.k), kw, f(m_qkv) + qw, all, rows, kw);
    m_ops.copyColumns(f(s.v), kw, f(m_qkv) + qw + kw, all, rows, kw);
}

template <class Ops>
void OpsTrainer<Ops>::activationForward(const Saved &s, int64_t n) {
    if (m_swiglu)
        m_ops.swigluForward(f(s.gate), f(s.up), n, f(s.act));
    else
        activate(f(s.up), n, f(s.act));
}

template <class Ops>
void OpsTrainer<Ops>::activate(const float *x, int64_t n, float *y) {
    if (m_activation == cpu::Activation::Relu)
        m_ops.reluForward(x, n, y);
    else
        m_ops.geluForward(gelu(), x, n, y);
}

template <class Ops>
float OpsTrainer<Ops>::forward(const TokenBatch &batch, uint64_t maskSeed) {
    m_ops.activate();
    const ModelConfig &c = m_config;
    require(batch.seq >= (m_post ? 1 : 2) && int64_t(batch.tokens.size()) == batch.batch * batch.seq,
            "GPU training", m_post ? "a batch needs batch x seq tokens" : "a batch needs batch x seq tokens, seq >= 2");
    require(batch.mask.empty(), "GPU training", "padded batches are not supported in training");
    require(batch.seq <= m_maxSeq, "GPU training",
            "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                std::to_string(m_maxSeq) + " positions");
    const int64_t B = batch.batch, S = batch.seq, rows = B * S, D = c.hiddenSize;
    const int H = int(c.numHeads), KVH = int(c.numKvHeads), d = int(c.headDim);
    if (m_post) {
        const MlmMasking &masking = m_lm->masking();
        require(masking.maskId >= 0 && masking.maskId < c.vocabSize, "GPU training",
                "masked-LM training needs the tokenizer's [MASK] id", "give the model's tokenizer (vocab.txt)");
        MaskedBatch masked = maskTokens(batch, masking, c.vocabSize, maskSeed);
        m_ids = std::move(masked.inputs.tokens);
        m_targets = std::move(masked.targets);
    } else {
        m_ids = batch.tokens;
        m_targets.assign(batch.tokens.size(), -1);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t + 1 < S; ++t)
                m_targets[size_t(b * S + t)] = batch.tokens[size_t(b * S + t + 1)];
    }
    require(std::any_of(m_targets.begin(), m_targets.end(), [](int32_t t) { return t >= 0; }), "GPU training",
            "the batch has no target to predict");
    if (m_tokenType) { // segment ids: the batch's, or all 0
        m_types = batch.tokenTypes.empty() ? std::vector<int32_t>(m_ids.size(), 0) : batch.tokenTypes;
        require(m_types.size() == m_ids.size(), "GPU training", "one segment id per token");
    }
    m_dims = AttentionDims{B, S, H, KVH, d, 1.0 / std::sqrt(double(d)), !m_post};
    allocate(B, S);

    // The embeddings' sum (x, or with BERT the embedding norm's input): the token's row, plus the position's
    // and the segment's through the embedding op on their ids.
    float *x = m_post ? f(m_embIn) : f(m_saved[0].x);
    m_ops.embeddingForward(m_embed->value(), m_embed->rows, D, m_ids, x);
    if (m_position) {
        m_positions.resize(size_t(rows));
        for (int64_t r = 0; r < rows; ++r)
            m_positions[size_t(r)] = int32_t(r % S + m_positionOffset);
        m_ops.embeddingForward(m_position->value(), m_position->rows, D, m_positions, f(m_t1));
        m_ops.add(x, f(m_t1), rows * D, x);
    }
    if (m_tokenType) {
        m_ops.embeddingForward(m_tokenType->value(), m_tokenType->rows, D, m_types, f(m_t1));
        m_ops.add(x, f(m_t1), rows * D, x);
    }
    if (m_post)
        normForward(m_embNorm, m_embNormB, x, rows, f(m_saved[0].x), f(m_embMean), f(m_embRstd));
    for (size_t l = 0; l < m_blocks.size(); ++l) {
        prepareGather(l);
        blockForward(l, m_recompute ? m_work : m_saved[l],
                     l + 1 < m_blocks.size() ? f(m_saved[l + 1].x) : f(m_finalIn));
    }
    if (m_post) { // the masked-LM head's transform: h = norm(act(finalIn T^T + b)), the statistics in *Final
        m_ops.linearForward(f(m_finalIn), m_transform->value(), orNull(m_transformB), rows, D, D, f(m_tPre));
        activate(f(m_tPre), rows * D, f(m_tAct));
        normForward(m_headNorm, m_headNormB, f(m_tAct), rows, f(m_h), f(m_meanFinal), f(m_rstdFinal));
    } else {
        normForward(m_finalNorm, m_finalNormB, f(m_finalIn), rows, f(m_h), f(m_meanFinal), f(m_rstdFinal));
    }
    const Param *head = m_head ? m_head : m_embed;
    // rows x chunk logits at a time: at most 64 Mi values (256 MB), at least 1024 vocabulary rows.
    m_chunk = std::clamp<int64_t>((int64_t(64) << 20) / rows, 1024, head->rows);
    return m_ops.crossEntropyForward(f(m_h), head->value(), orNull(m_headB), rows, D, head->rows, m_targets,
                                     m_chunk, f(m_lse), &m_count);
}

template <class Ops>
void OpsTrainer<Ops>::prepareGather(size_t l) {
    Gathered &x = m_gathered[l];
    const BlockSelection &sel = m_lm->selection(int(l));
    x.gather = blockGather(m_dims, sel);
    if (sel.mlpChannels != x.uploaded.mlpChannels || sel.kvGroups != x.uploaded.kvGroups) {
        const auto put = [&](Buffer &b, const std::vector<int32_t> &list) {
            if (list.empty())
                return;
            b.ensure(list.size() * sizeof(int32_t));
            m_ops.uploadBytes(b.template as<void>(), list.data(), list.size() * sizeof(int32_t));
        };
        put(x.qRows, x.gather.q.rows);
        put(x.kRows, x.gather.k.rows);
        put(x.qkvRows, x.gather.qkv.rows);
        put(x.channels, x.gather.in.rows);
        x.uploaded = sel;
    }
    BlockParams &b = m_blocks[l];
    const std::tuple<Lin *, Param *, Sel> parts[] = {{&b.q, b.qb, x.q()},   {&b.k, b.kb, x.kv()},
                                                     {&b.v, b.vb, x.kv()},  {&b.qkv, b.qkvb, x.qkv()},
                                                     {&b.o, b.ob, x.o()},   {&b.gate, b.gateb, x.in()},
                                                     {&b.up, b.upb, x.in()}, {&b.down, b.downb, x.down()}};
    for (const auto &[lin, bias, part] : parts) {
        if (lin->w) {
            lin->w->activeRows = part.rows;
            lin->w->activeCols = part.cols;
            lin->w->activeRowCount = part.rowCount;
            lin->w->activeColCount = part.colCount;
        }
        if (bias) {
            bias->activeRows = part.rows;
            bias->activeRowCount = part.rowCount;
        }
    }
    if (m_keepNorms)
        x.norms.ensure(size_t(m_config.intermediateSize + m_config.numKvHeads) * sizeof(float));
}

template <class Ops>
void OpsTrainer<Ops>::blockForward(size_t l, Saved &s, float *out) {
    const ModelConfig &c = m_config;
    const Gathered &g = m_gathered[l];
    const AttentionDims &dims = g.gather.dims;
    const int64_t S = dims.seq, rows = dims.batch * S, D = c.hiddenSize, F = c.intermediateSize;
    const int64_t kept = g.keptChannels(F);
    const int H = dims.heads, KVH = dims.kvHeads, d = dims.headDim;
    const int64_t fullQw = c.numHeads * c.headDim;
    const BlockParams &w = m_blocks[l];
    const float *x = f(m_saved[l].x);
    if (!m_post)
        normForward(w.attnNorm, w.attnNormB, x, rows, f(s.n1), f(s.mean1), f(s.rstd1));
    projectionsForward(w, g, s, m_post ? x : f(s.n1), rows);
    if (m_rotaryDim > 0) {
        m_ops.ropeForward(f(s.q), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
        m_ops.ropeForward(f(s.k), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
    }
    m_ops.attentionForward(f(s.q), f(s.k), f(s.v), dims, f(s.ctx), f(s.probs));
    m_linears.forward(w.o, w.ob, f(s.ctx), rows, fullQw, D, f(m_t1), g.o());
    const float *mlpIn = f(s.n1);
    if (m_post) {
        m_ops.add(x, f(m_t1), rows * D, f(s.n1));
        normForward(w.attnNorm, w.attnNormB, f(s.n1), rows, f(s.mid), f(s.mean1), f(s.rstd1));
        mlpIn = f(s.mid);
    } else if (m_parallel) {
        if (out)
            m_ops.add(x, f(m_t1), rows * D, out);
    } else {
        m_ops.add(x, f(m_t1), rows * D, f(s.mid));
        normForward(w.mlpNorm, w.mlpNormB, f(s.mid), rows, f(s.n2), f(s.mean2), f(s.rstd2));
        mlpIn = f(s.n2);
    }
    if (m_swiglu)
        m_linears.forward(w.gate, w.gateb, mlpIn, rows, D, F, f(s.gate), g.in());
    m_linears.forward(w.up, w.upb, mlpIn, rows, D, F, f(s.up), g.in());
    activationForward(s, rows * kept);
    if (!out && !m_post)
        return;
    if (m_keepNorms && out) // SAT's scores of this forward (the recomputing pass gives the same, and is skipped)
        m_ops.activationNorms(f(s.act), rows, kept, f(s.ctx), KVH, int64_t(c.numHeads / c.numKvHeads) * d,
                              f(g.norms));
    m_linears.forward(w.down, w.downb, f(s.act), rows, F, D, f(m_t1), g.down());
    if (m_post) {
        m_ops.add(f(s.mid), f(m_t1), rows * D, f(s.n2));
        normForward(w.mlpNorm, w.mlpNormB, f(s.n2), rows, out ? out : f(m_t1), f(s.mean2), f(s.rstd2));
        return;
    }
    m_ops.add(m_parallel ? out : f(s.mid), f(m_t1), rows * D, out);
}

} // namespace lathe::train
