#pragma once

// OpsTrainer's backward pass (the forward's ops' backward in reverse, each block's forward run again first
// with recomputation) and the optimizer step (global-norm clipping, AdamW on the rows and columns a step touched).
// Included at the end of train/opstrainer.h, whose class declares each member and states its contract.

#include "train/opstrainer.h"

namespace lathe::train {

template <class Ops>
double OpsTrainer<Ops>::step(double lr, double maxNorm) {
    m_ops.activate();
    std::vector<std::pair<const float *, int64_t>> grads;
    for (const Param &p : m_params)
        if (p.trainable)
            grads.emplace_back(p.grad(), p.size());
    const double norm = std::sqrt(m_ops.sumOfSquares(grads));
    if (maxNorm > 0 && norm > maxNorm) {
        const float scale = float(maxNorm / (norm + 1e-6));
        for (const auto &[g, n] : grads)
            m_ops.scale(const_cast<float *>(g), n, scale);
    }
    ++m_steps;
    const double c1 = 1.0 - std::pow(m_optimizer.beta1, double(m_steps));
    const double c2 = 1.0 - std::pow(m_optimizer.beta2, double(m_steps));
    for (Param &p : m_params) {
        if (!p.trainable)
            continue;
        const bool decay = p.decay && p.rows > 1 && p.cols > 1 && m_optimizer.weightDecay > 0;
        const cpu::AdamWConstants k{float(m_optimizer.beta1), float(m_optimizer.beta2),
                                    decay ? float(1.0 - lr * m_optimizer.weightDecay) : 1.0f, float(lr / c1),
                                    float(std::sqrt(c2)), float(m_optimizer.eps)};
        if (p.activeRows || p.activeCols)
            m_ops.adamwSome(p.value(), p.m.template as<float>(), p.v.template as<float>(), p.grad(), p.cols,
                            p.activeRows, p.activeRows ? p.activeRowCount : p.rows, p.activeCols,
                            p.activeCols ? p.activeColCount : p.cols, k);
        else
            m_ops.adamw(p.value(), p.m.template as<float>(), p.v.template as<float>(), p.grad(), p.size(), k);
    }
    m_ops.synchronize();
    return norm;
}

template <class Ops>
void OpsTrainer<Ops>::normBackward(const Param *w, const Param *b, const float *dy, const float *x,
                                   const float *mean, const float *rstd, int64_t rows, float *dx) {
    const int64_t D = m_config.hiddenSize;
    if (m_rms)
        m_ops.rmsNormBackward(dy, x, w->value(), rstd, rows, D, dx, w->grad());
    else
        m_ops.layerNormBackward(dy, x, w->value(), mean, rstd, rows, D, dx, w->grad(), gradOrNull(b));
}

template <class Ops>
void OpsTrainer<Ops>::projectionsBackward(const BlockParams &w, const Gathered &g, const float *in, int64_t rows,
                                          float *dn) {
    const auto [D, fullQw, fullKw, qw, kw, all] = projectionWidths(g);
    if (!w.qkv) {
        m_linears.backward(f(m_dq), in, w.q, w.qb, rows, D, fullQw, dn, g.q());
        m_linears.backward(f(m_dk), in, w.k, w.kb, rows, D, fullKw, dn, g.kv());
        m_linears.backward(f(m_dv), in, w.v, w.vb, rows, D, fullKw, dn, g.kv());
        return;
    }
    m_ops.copyColumns(f(m_qkv), all, f(m_dq), qw, rows, qw);
    m_ops.copyColumns(f(m_qkv) + qw, all, f(m_dk), kw, rows, kw);
    m_ops.copyColumns(f(m_qkv) + qw + kw, all, f(m_dv), kw, rows, kw);
    m_linears.backward(f(m_qkv), in, w.qkv, w.qkvb, rows, D, fullQw + 2 * fullKw, dn, g.qkv());
}

template <class Ops>
void OpsTrainer<Ops>::activateBack(const float *dy, const float *x, int64_t n, float *dx) {
    if (m_activation == cpu::Activation::Relu)
        m_ops.reluBackward(dy, x, n, dx);
    else
        m_ops.geluBackward(gelu(), dy, x, n, dx);
}

template <class Ops>
void OpsTrainer<Ops>::backward(float scale) {
    const ModelConfig &c = m_config;
    const int64_t S = m_dims.seq, rows = m_dims.batch * S, D = c.hiddenSize, F = c.intermediateSize;
    const int64_t fullQw = c.numHeads * c.headDim;
    const Param *head = m_head ? m_head : m_embed;
    float *dx = f(m_dx), *dmid = f(m_dmid), *dn = f(m_dn);
    m_ops.zero(f(m_dh), rows * D);
    m_ops.crossEntropyBackward(f(m_h), head->value(), orNull(m_headB), rows, D, head->rows, m_targets, m_chunk,
                               f(m_lse), m_count, scale, f(m_dh), head->grad(), gradOrNull(m_headB));
    m_ops.zero(dx, rows * D);
    if (m_post) { // the head transform's backward (d activation in dmid, d pre-activation in dn)
        m_ops.zero(dmid, rows * D);
        normBackward(m_headNorm, m_headNormB, f(m_dh), f(m_tAct), f(m_meanFinal), f(m_rstdFinal), rows, dmid);
        m_ops.zero(dn, rows * D);
        activateBack(dmid, f(m_tPre), rows * D, dn);
        m_ops.linearBackward(dn, f(m_finalIn), m_transform->value(), rows, D, D, dx, m_transform->grad(),
                             gradOrNull(m_transformB));
    } else {
        normBackward(m_finalNorm, m_finalNormB, f(m_dh), f(m_finalIn), f(m_meanFinal), f(m_rstdFinal), rows, dx);
    }
    for (size_t l = m_blocks.size(); l-- > 0;) {
        const BlockParams &w = m_blocks[l];
        // The block's gathered widths (everything, without a selection).
        const Gathered &g = m_gathered[l];
        const AttentionDims &dims = g.gather.dims;
        const int H = dims.heads, KVH = dims.kvHeads, d = dims.headDim;
        const int64_t qw = int64_t(H) * d, kw = int64_t(KVH) * d;
        const int64_t kept = g.keptChannels(F);
        if (m_recompute)
            blockForward(l, m_work, nullptr);
        const Saved &s = m_recompute ? m_work : m_saved[l];
        const float *x = f(m_saved[l].x);
        const float *mlpIn = m_post ? f(s.mid) : m_parallel ? f(s.n1) : f(s.n2);
        if (m_post) { // d n2 = norm2's backward of d out, then in dx (the two buffers trade places)
            m_ops.zero(dmid, rows * D);
            normBackward(w.mlpNorm, w.mlpNormB, dx, f(s.n2), f(s.mean2), f(s.rstd2), rows, dmid);
            std::swap(dx, dmid);
        }
        // The MLP, from d out (in dx; BERT: d n2): its input's gradient d mlpIn in dn.
        m_ops.zero(f(m_dact), rows * kept);
        m_linears.backward(dx, f(s.act), w.down, w.downb, rows, F, D, f(m_dact), g.down());
        m_ops.zero(f(m_dup), rows * kept);
        if (m_swiglu) {
            m_ops.zero(f(m_dgate), rows * kept);
            m_ops.swigluBackward(f(m_dact), f(s.gate), f(s.up), rows * kept, f(m_dgate), f(m_dup));
        } else {
            activateBack(f(m_dact), f(s.up), rows * kept, f(m_dup));
        }
        m_ops.zero(dn, rows * D);
        if (m_swiglu)
            m_linears.backward(f(m_dgate), mlpIn, w.gate, w.gateb, rows, D, F, dn, g.in());
        m_linears.backward(f(m_dup), mlpIn, w.up, w.upb, rows, D, F, dn, g.in());
        // The attention output's gradient: d out itself (parallel), or d mid = d out + norm2's backward of
        // d n2 (sequential), or d n1 = norm1's backward of d mid = d n2 + d mlpIn (post-norm, in dx: the output
        // projection's backward reads it before the projections' input gradient accumulates there, since the
        // attention reads x itself).
        const float *dAttnOut = dx;
        if (m_post) {
            m_ops.add(dx, dn, rows * D, dmid);
            m_ops.zero(dx, rows * D);
            normBackward(w.attnNorm, w.attnNormB, dmid, f(s.n1), f(s.mean1), f(s.rstd1), rows, dx);
        } else if (!m_parallel) {
            m_ops.copy(dmid, dx, rows * D);
            normBackward(w.mlpNorm, w.mlpNormB, dn, f(s.mid), f(s.mean2), f(s.rstd2), rows, dmid);
            dAttnOut = dmid;
        }
        m_ops.zero(f(m_dctx), rows * qw);
        m_linears.backward(dAttnOut, f(s.ctx), w.o, w.ob, rows, fullQw, D, f(m_dctx), g.o());
        m_ops.zero(f(m_dq), rows * qw);
        m_ops.zero(f(m_dk), rows * kw);
        m_ops.zero(f(m_dv), rows * kw);
        m_ops.attentionBackward(f(m_dctx), f(s.q), f(s.k), f(s.v), f(s.ctx), dims, f(s.probs), f(m_dq), f(m_dk),
                                f(m_dv));
        if (m_rotaryDim > 0) {
            m_ops.ropeBackward(f(m_dq), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
            m_ops.ropeBackward(f(m_dk), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
        }
        if (m_post) { // d x = d n1 + the projections' input gradients
            projectionsBackward(w, g, x, rows, dx);
            continue;
        }
        // d n1: the projections' input gradients, added to the MLP's in a parallel block.
        if (!m_parallel)
            m_ops.zero(dn, rows * D);
        projectionsBackward(w, g, f(s.n1), rows, dn);
        // d x = d out (parallel) or d mid (sequential), plus norm1's backward of d n1.
        if (!m_parallel)
            m_ops.copy(dx, dmid, rows * D);
        normBackward(w.attnNorm, w.attnNormB, dn, x, f(s.mean1), f(s.rstd1), rows, dx);
    }
    // The embeddings' sum's gradient (BERT: the embedding norm's backward, in dn).
    const float *dsum = dx;
    if (m_post) {
        m_ops.zero(dn, rows * D);
        normBackward(m_embNorm, m_embNormB, dx, f(m_embIn), f(m_embMean), f(m_embRstd), rows, dn);
        dsum = dn;
    }
    if (m_embed->trainable)
        m_ops.embeddingBackward(dsum, m_ids, D, m_embed->grad());
    if (m_position && m_position->trainable)
        m_ops.embeddingBackward(dsum, m_positions, D, m_position->grad());
    if (m_tokenType && m_tokenType->trainable)
        m_ops.embeddingBackward(dsum, m_types, D, m_tokenType->grad());
}

} // namespace lathe::train
