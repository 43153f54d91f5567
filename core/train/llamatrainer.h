#pragma once

// The Llama family's training step written once over an ops backend (issue 17 item 9): CausalLm<float>'s forward
// and backward for a sequential pre-norm block with a SwiGLU MLP, in CausalLm::Impl::blockForward /
// blockBackward's order, then clipGradNorm and AdamW, on buffers the backend owns. The GPU trainer
// (gpu/cudatraining.cu) runs it on the CUDA ops of gpu/trainops.h; tests/hosttrainops.h runs it on the CPU
// reference ops of train/ops.h, so tst_trainmodel checks this composition against CausalLm without a GPU, and the
// GPU's own part is its ops, which `lathe-cli check-gpu` compares with the CPU one by one.
//
// An Ops type provides the op methods of gpu::TrainOps (the same signatures, on its buffers' float pointers) and:
//   using Buffer = ...;                 // move-only storage: resize(bytes), ensure(bytes), bytes(), as<T>()
//   void activate() const;              // makes the device current on the calling thread
//   std::string deviceName() const;
//   ComputePrecision precision() const;
//   void upload(float *to, const float *host, int64_t n) const;      // host -> buffer
//   void download(float *host, const float *from, int64_t n) const;  // buffer -> host
//   void zero(float *x, int64_t n);
//   void copy(float *to, const float *from, int64_t n);
//   void synchronize() const;           // waits for the queued work; a device fault is thrown here
//
// Memory: llamaTrainerDeviceBytes below (its buffers part is exactly what the trainer allocates).

#include "base/error.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "numeric/cpukernels.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace lathe::train {

// Device bytes of a LlamaTrainer for `parameters` parameters, `trainableParameters` of them trained, at batches of
// B x S, with GPU ops: the parameters (4 bytes each), the trained ones' gradients and both moments (12 more); per
// block the saved activations (4 B S D residual-width values, q, k, v and the context, B H S^2 probabilities,
// 3 B S F for the MLP, two rstd rows; with recomputation the block's input only, and one block's set); one block's
// gradient buffers and the head's (7 B S D, 3 B S F, 2 B S (H + KV) d); the RoPE table; the ops' scratch (the
// loss's rows x chunk logits, one sequence's H S^2 score gradient, and with bf16 products bf16 copies of the
// largest operands); and a fixed allowance of 512 MiB for the CUDA context and cuBLAS's workspaces (an
// allowance, not a measurement).
inline uint64_t llamaTrainerDeviceBytes(const ModelConfig &c, int64_t parameters, int64_t trainableParameters,
                                        int64_t B, int64_t S, ComputePrecision precision, bool recompute) {
    const uint64_t rows = uint64_t(B * S), D = uint64_t(c.hiddenSize), F = uint64_t(c.intermediateSize);
    const uint64_t qw = uint64_t(c.numHeads * c.headDim), kw = uint64_t(c.numKvHeads * c.headDim);
    const uint64_t scores = uint64_t(c.numHeads) * uint64_t(S) * uint64_t(S);
    const uint64_t perBlock =
        4 * rows * D + 2 * rows + 2 * rows * qw + 2 * rows * kw + uint64_t(B) * scores + 3 * rows * F;
    const uint64_t chunk = uint64_t(std::clamp<int64_t>((int64_t(64) << 20) / std::max<int64_t>(B * S, 1), 1024,
                                                        std::max<int64_t>(c.vocabSize, 1)));
    // With recomputation the blocks keep their inputs (B S D each) and one block's activations exist at a time.
    const uint64_t blocks = recompute ? uint64_t(c.numLayers) * rows * D + (perBlock - rows * D)
                                      : uint64_t(c.numLayers) * perBlock;
    uint64_t floats = blocks + 7 * rows * D + 2 * rows + 3 * rows * F + 2 * rows * qw + 2 * rows * kw + rows * chunk +
                      scores;
    floats += uint64_t(c.maxPositions) * uint64_t(c.headDim); // the RoPE table (cos and sin: positions x d/2 each)
    uint64_t bytes = 4 * uint64_t(parameters) + 12 * uint64_t(trainableParameters) + 4 * floats;
    if (precision != ComputePrecision::Fp32) // bf16 copies: a linear's two operands, the attention's five
        bytes += 2 * (rows * std::max(F, chunk) + std::max(F, chunk) * D + 2 * rows * (qw + kw) + 2 * scores);
    return bytes + (uint64_t(512) << 20);
}

template <class Ops> class LlamaTrainer final : public DeviceTrainer {
    using Buffer = typename Ops::Buffer;

    // One parameter: value, and while it trains its gradient and both AdamW moments, fp32, in the CausalLm's
    // layout (a frozen one has neither: no memory, and its weight gradient is skipped).
    struct Param {
        std::string name;
        int64_t rows = 0, cols = 0;
        bool decay = true, trainable = true;
        Buffer w, g, m, v;
        int64_t size() const { return rows * cols; }
        float *value() const { return w.template as<float>(); }
        float *grad() const { return trainable ? g.template as<float>() : nullptr; }
    };
    // A block's parameters (biases may be null).
    struct BlockParams {
        Param *attnNorm = nullptr, *mlpNorm = nullptr;
        Param *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *gate = nullptr, *up = nullptr, *down = nullptr;
        Param *qb = nullptr, *kb = nullptr, *vb = nullptr, *ob = nullptr, *gateb = nullptr, *upb = nullptr,
              *downb = nullptr;
    };
    // What a block's forward keeps for its backward.
    struct Saved {
        Buffer x, n1, rstd1, q, k, v, probs, ctx, mid, n2, rstd2, gate, up, act;
    };

public:
    // Copies lm's parameters (which of them train) and the optimizer's options, moments and step count; LatheError
    // naming what it does not run (another family, a non-dense linear, a method-added parameter). With lm's
    // recomputation on, each block keeps its input only and runs its forward again before its backward.
    LlamaTrainer(Ops ops, const CausalLm<float> &lm, const AdamW<float> &optimizer)
        : m_ops(std::move(ops)), m_config(lm.config()), m_optimizer(optimizer.options()), m_steps(optimizer.steps()) {
        m_ops.activate();
        const ModelConfig &c = m_config;
        const char *hint = "train this on the CPU (device cpu)";
        if (c.family != ArchFamily::Llama)
            throw LatheError("the GPU trainer runs the Llama family only (SmolLM2, stories260K, Qwen2) so far", hint);
        m_recompute = lm.recompute();
        for (const auto &slot : lm.linears())
            if (!dynamic_cast<const DenseLinear<float> *>(slot.kind))
                throw LatheError(std::string("the GPU trainer runs dense linears only; the ") + slot.kind->kindName() +
                                     " linear in block " + std::to_string(slot.layer) + " is not",
                                 hint);
        m_blocks.resize(size_t(c.numLayers));
        m_params.reserve(lm.parameters().size()); // the tables point into it
        // A resumed run's moments, one pair per parameter (AdamW's layout), or none before the first step.
        const auto &m1 = optimizer.firstMoments(), &m2 = optimizer.secondMoments();
        size_t index = 0;
        for (const Parameter<float> &p : lm.parameters()) {
            if (p.extra)
                throw LatheError("the GPU trainer trains the checkpoint's parameters; '" + p.name +
                                     "' is added by a method",
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
            bind(p, &d);
            ++index;
        }
        require(m_embed && m_finalNorm, "GPU training", "the model has no token embedding or final norm");
        for (size_t l = 0; l < m_blocks.size(); ++l) {
            const BlockParams &b = m_blocks[l];
            if (!b.attnNorm || !b.mlpNorm || !b.q || !b.k || !b.v || !b.o || !b.gate || !b.up || !b.down)
                throw LatheError("block " + std::to_string(l) + " lacks one of the Llama block's tensors", hint);
        }
        const cpu::RopeTable rope = ropeTableFor(c, c.maxPositions, "");
        m_rotaryDim = rope.rotaryDim;
        m_ropePositions = rope.cos.rows();
        m_ropeCos.resize(size_t(rope.cos.size()) * sizeof(float));
        m_ropeSin.resize(size_t(rope.sin.size()) * sizeof(float));
        m_ops.upload(f(m_ropeCos), rope.cos.data(), int64_t(rope.cos.size()));
        m_ops.upload(f(m_ropeSin), rope.sin.data(), int64_t(rope.sin.size()));
        m_saved.resize(m_blocks.size());
        m_ops.synchronize();
    }

    std::string describe() const override {
        int64_t n = 0;
        for (const Param &p : m_params)
            n += p.size();
        char buf[96];
        std::snprintf(buf, sizeof buf, ", %s products, %.1fM parameters (%llu MiB held)",
                      precisionName(m_ops.precision()), double(n) / 1e6,
                      static_cast<unsigned long long>(deviceBytes() >> 20));
        return m_ops.deviceName() + buf;
    }

    void zeroGradients() override {
        m_ops.activate();
        for (Param &p : m_params)
            if (p.trainable)
                m_ops.zero(p.grad(), p.size());
    }

    float loss(const TokenBatch &batch) override {
        const float l = forward(batch);
        m_ops.synchronize();
        return l;
    }

    float forwardBackward(const TokenBatch &batch, float scale) override {
        const float l = forward(batch);
        backward(scale);
        m_ops.synchronize(); // a device fault shows up in this call rather than a later one
        return l;
    }

    double step(double lr, double maxNorm) override {
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
            m_ops.adamw(p.value(), p.m.template as<float>(), p.v.template as<float>(), p.grad(), p.size(), k);
        }
        m_ops.synchronize();
        return norm;
    }

    void download(CausalLm<float> &model, bool gradients) const override {
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

    void downloadOptimizer(AdamW<float> &optimizer) const override {
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

    void synchronize() override { m_ops.synchronize(); }

    uint64_t deviceBytes() const override {
        uint64_t n = m_ropeCos.bytes() + m_ropeSin.bytes();
        for (const Param &p : m_params)
            n += p.w.bytes() + p.g.bytes() + p.m.bytes() + p.v.bytes();
        const auto setBytes = [](const Saved &s) {
            uint64_t b = 0;
            for (const Buffer *m : {&s.x, &s.n1, &s.rstd1, &s.q, &s.k, &s.v, &s.probs, &s.ctx, &s.mid, &s.n2, &s.rstd2,
                                    &s.gate, &s.up, &s.act})
                b += m->bytes();
            return b;
        };
        for (const Saved &s : m_saved)
            n += setBytes(s);
        n += setBytes(m_work);
        for (const Buffer *m : {&m_finalIn, &m_h, &m_rstdFinal, &m_lse, &m_t1, &m_dh, &m_dx, &m_dmid, &m_dn, &m_dact,
                                &m_dgate, &m_dup, &m_dctx, &m_dq, &m_dk, &m_dv})
            n += m->bytes();
        return n;
    }

private:
    static float *f(const Buffer &b) { return b.template as<float>(); }
    static const float *orNull(const Param *p) { return p ? p->value() : nullptr; }
    static float *gradOrNull(const Param *p) { return p ? p->grad() : nullptr; } // null: no bias, or frozen

    // The forward pass over `batch`, keeping what backward needs; returns the mean next-token loss.
    float forward(const TokenBatch &batch) {
        m_ops.activate();
        const ModelConfig &c = m_config;
        require(batch.seq >= 2 && int64_t(batch.tokens.size()) == batch.batch * batch.seq, "GPU training",
                "a batch needs batch x seq tokens, seq >= 2");
        require(batch.mask.empty(), "GPU training", "padded batches are not supported in training");
        require(batch.seq <= m_ropePositions, "GPU training",
                "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                    std::to_string(m_ropePositions) + " positions");
        const int64_t B = batch.batch, S = batch.seq, rows = B * S, D = c.hiddenSize;
        const int H = int(c.numHeads), KVH = int(c.numKvHeads), d = int(c.headDim);
        m_targets.assign(batch.tokens.size(), -1);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t + 1 < S; ++t)
                m_targets[size_t(b * S + t)] = batch.tokens[size_t(b * S + t + 1)];
        m_dims = AttentionDims{B, S, H, KVH, d, 1.0 / std::sqrt(double(d)), true};
        allocate(B, S);
        m_ids = batch.tokens;

        m_ops.embeddingForward(m_embed->value(), m_embed->rows, D, batch.tokens, f(m_saved[0].x));
        for (size_t l = 0; l < m_blocks.size(); ++l)
            blockForward(l, m_recompute ? m_work : m_saved[l],
                         l + 1 < m_blocks.size() ? f(m_saved[l + 1].x) : f(m_finalIn));
        m_ops.rmsNormForward(f(m_finalIn), m_finalNorm->value(), rows, D, float(c.normEps), f(m_h),
                             f(m_rstdFinal));
        const Param *head = m_head ? m_head : m_embed;
        // rows x chunk logits at a time: at most 64 Mi values (256 MB), at least 1024 vocabulary rows.
        m_chunk = std::clamp<int64_t>((int64_t(64) << 20) / rows, 1024, head->rows);
        return m_ops.crossEntropyForward(f(m_h), head->value(), nullptr, rows, D, head->rows, m_targets, m_chunk,
                                         f(m_lse), &m_count);
    }

    // Block l's forward from its input m_saved[l].x, keeping its activations in `s`; its output goes to `out`
    // (null: not computed, when backward runs the block again for its activations).
    void blockForward(size_t l, Saved &s, float *out) {
        const ModelConfig &c = m_config;
        const AttentionDims &dims = m_dims;
        const int64_t S = dims.seq, rows = dims.batch * S, D = c.hiddenSize, F = c.intermediateSize;
        const int H = dims.heads, KVH = dims.kvHeads, d = dims.headDim;
        const int64_t qw = int64_t(H) * d, kw = int64_t(KVH) * d;
        const float eps = float(c.normEps);
        const BlockParams &w = m_blocks[l];
        const float *x = f(m_saved[l].x);
        m_ops.rmsNormForward(x, w.attnNorm->value(), rows, D, eps, f(s.n1), f(s.rstd1));
        m_ops.linearForward(f(s.n1), w.q->value(), orNull(w.qb), rows, D, qw, f(s.q));
        m_ops.linearForward(f(s.n1), w.k->value(), orNull(w.kb), rows, D, kw, f(s.k));
        m_ops.linearForward(f(s.n1), w.v->value(), orNull(w.vb), rows, D, kw, f(s.v));
        if (m_rotaryDim > 0) {
            m_ops.ropeForward(f(s.q), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
            m_ops.ropeForward(f(s.k), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
        }
        m_ops.attentionForward(f(s.q), f(s.k), f(s.v), dims, f(s.ctx), f(s.probs));
        m_ops.linearForward(f(s.ctx), w.o->value(), orNull(w.ob), rows, qw, D, f(m_t1));
        m_ops.add(x, f(m_t1), rows * D, f(s.mid));
        m_ops.rmsNormForward(f(s.mid), w.mlpNorm->value(), rows, D, eps, f(s.n2), f(s.rstd2));
        m_ops.linearForward(f(s.n2), w.gate->value(), orNull(w.gateb), rows, D, F, f(s.gate));
        m_ops.linearForward(f(s.n2), w.up->value(), orNull(w.upb), rows, D, F, f(s.up));
        m_ops.swigluForward(f(s.gate), f(s.up), rows * F, f(s.act));
        if (!out)
            return;
        m_ops.linearForward(f(s.act), w.down->value(), orNull(w.downb), rows, F, D, f(m_t1));
        m_ops.add(f(s.mid), f(m_t1), rows * D, out);
    }

    // The backward of the last forward, its gradients times `scale` added to the parameters' gradients.
    void backward(float scale) {
        const ModelConfig &c = m_config;
        const AttentionDims &dims = m_dims;
        const int64_t S = dims.seq, rows = dims.batch * S, D = c.hiddenSize, F = c.intermediateSize;
        const int H = dims.heads, KVH = dims.kvHeads, d = dims.headDim;
        const int64_t qw = int64_t(H) * d, kw = int64_t(KVH) * d;
        const Param *head = m_head ? m_head : m_embed;
        float *dx = f(m_dx), *dmid = f(m_dmid), *dn = f(m_dn);
        m_ops.zero(f(m_dh), rows * D);
        m_ops.crossEntropyBackward(f(m_h), head->value(), nullptr, rows, D, head->rows, m_targets, m_chunk, f(m_lse),
                                   m_count, scale, f(m_dh), head->grad(), nullptr);
        m_ops.zero(dx, rows * D);
        m_ops.rmsNormBackward(f(m_dh), f(m_finalIn), m_finalNorm->value(), f(m_rstdFinal), rows, D, dx,
                              m_finalNorm->grad());
        for (size_t l = m_blocks.size(); l-- > 0;) {
            const BlockParams &w = m_blocks[l];
            if (m_recompute)
                blockForward(l, m_work, nullptr);
            const Saved &s = m_recompute ? m_work : m_saved[l];
            const float *x = f(m_saved[l].x);
            // out = mid + down(swiglu(gate(n2), up(n2))), n2 = norm2(mid); dx holds d out.
            m_ops.zero(f(m_dact), rows * F);
            m_ops.linearBackward(dx, f(s.act), w.down->value(), rows, F, D, f(m_dact), w.down->grad(),
                                 gradOrNull(w.downb));
            m_ops.zero(f(m_dgate), rows * F);
            m_ops.zero(f(m_dup), rows * F);
            m_ops.swigluBackward(f(m_dact), f(s.gate), f(s.up), rows * F, f(m_dgate), f(m_dup));
            m_ops.zero(dn, rows * D);
            m_ops.linearBackward(f(m_dgate), f(s.n2), w.gate->value(), rows, D, F, dn, w.gate->grad(),
                                 gradOrNull(w.gateb));
            m_ops.linearBackward(f(m_dup), f(s.n2), w.up->value(), rows, D, F, dn, w.up->grad(), gradOrNull(w.upb));
            // d mid = d out + norm2's backward of d n2.
            m_ops.copy(dmid, dx, rows * D);
            m_ops.rmsNormBackward(dn, f(s.mid), w.mlpNorm->value(), f(s.rstd2), rows, D, dmid, w.mlpNorm->grad());
            // mid = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = norm1(x).
            m_ops.zero(f(m_dctx), rows * qw);
            m_ops.linearBackward(dmid, f(s.ctx), w.o->value(), rows, qw, D, f(m_dctx), w.o->grad(), gradOrNull(w.ob));
            m_ops.zero(f(m_dq), rows * qw);
            m_ops.zero(f(m_dk), rows * kw);
            m_ops.zero(f(m_dv), rows * kw);
            m_ops.attentionBackward(f(m_dctx), f(s.q), f(s.k), f(s.v), dims, f(s.probs), f(m_dq), f(m_dk), f(m_dv));
            if (m_rotaryDim > 0) {
                m_ops.ropeBackward(f(m_dq), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
                m_ops.ropeBackward(f(m_dk), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
            }
            m_ops.zero(dn, rows * D);
            m_ops.linearBackward(f(m_dq), f(s.n1), w.q->value(), rows, D, qw, dn, w.q->grad(), gradOrNull(w.qb));
            m_ops.linearBackward(f(m_dk), f(s.n1), w.k->value(), rows, D, kw, dn, w.k->grad(), gradOrNull(w.kb));
            m_ops.linearBackward(f(m_dv), f(s.n1), w.v->value(), rows, D, kw, dn, w.v->grad(), gradOrNull(w.vb));
            // d x = d mid + norm1's backward of d n1.
            m_ops.copy(dx, dmid, rows * D);
            m_ops.rmsNormBackward(dn, x, w.attnNorm->value(), f(s.rstd1), rows, D, dx, w.attnNorm->grad());
        }
        if (m_embed->trainable)
            m_ops.embeddingBackward(dx, m_ids, D, m_embed->grad());
    }

    // Attaches a CausalLm parameter to its place in the block or model tables.
    void bind(const Parameter<float> &p, Param *d) {
        const auto unknown = [&] {
            return LatheError("the GPU trainer does not know the tensor '" + p.name + "' (" + roleName(p.role) + ")",
                              "train this model on the CPU (device cpu)");
        };
        if (p.role == TensorRole::TokenEmbedding && !p.isBias) {
            m_embed = d;
            return;
        }
        if (p.role == TensorRole::FinalNorm && !p.isBias) {
            m_finalNorm = d;
            return;
        }
        if (p.role == TensorRole::LmHead && !p.isBias) {
            m_head = d;
            return;
        }
        if (p.layer < 0 || size_t(p.layer) >= m_blocks.size())
            throw unknown();
        BlockParams &b = m_blocks[size_t(p.layer)];
        Param **slot = nullptr;
        switch (p.role) {
        case TensorRole::AttnNorm: slot = p.isBias ? nullptr : &b.attnNorm; break;
        case TensorRole::MlpNorm: slot = p.isBias ? nullptr : &b.mlpNorm; break;
        case TensorRole::AttnQ: slot = p.isBias ? &b.qb : &b.q; break;
        case TensorRole::AttnK: slot = p.isBias ? &b.kb : &b.k; break;
        case TensorRole::AttnV: slot = p.isBias ? &b.vb : &b.v; break;
        case TensorRole::AttnO: slot = p.isBias ? &b.ob : &b.o; break;
        case TensorRole::MlpGate: slot = p.isBias ? &b.gateb : &b.gate; break;
        case TensorRole::MlpUp: slot = p.isBias ? &b.upb : &b.up; break;
        case TensorRole::MlpDown: slot = p.isBias ? &b.downb : &b.down; break;
        default: break;
        }
        if (!slot)
            throw unknown();
        *slot = d;
    }

    // Activation and gradient buffers for batches of B x S (grown, never shrunk).
    void allocate(int64_t B, int64_t S) {
        const ModelConfig &c = m_config;
        const int64_t rows = B * S, D = c.hiddenSize, F = c.intermediateSize;
        const int64_t qw = c.numHeads * c.headDim, kw = c.numKvHeads * c.headDim;
        const auto floats = [](Buffer &m, int64_t n) { m.ensure(size_t(n) * sizeof(float)); };
        // A block's activations: in every block's set, or with recomputation in the one work set, the blocks
        // keeping their inputs only.
        const auto activations = [&](Saved &s) {
            for (Buffer *m : {&s.n1, &s.mid, &s.n2})
                floats(*m, rows * D);
            floats(s.rstd1, rows);
            floats(s.rstd2, rows);
            floats(s.q, rows * qw);
            floats(s.ctx, rows * qw);
            floats(s.k, rows * kw);
            floats(s.v, rows * kw);
            floats(s.probs, B * c.numHeads * S * S);
            for (Buffer *m : {&s.gate, &s.up, &s.act})
                floats(*m, rows * F);
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
        floats(m_rstdFinal, rows);
        floats(m_lse, rows);
        for (Buffer *m : {&m_dact, &m_dgate, &m_dup})
            floats(*m, rows * F);
        floats(m_dctx, rows * qw);
        floats(m_dq, rows * qw);
        floats(m_dk, rows * kw);
        floats(m_dv, rows * kw);
    }

    Ops m_ops;
    ModelConfig m_config;
    AdamWOptions m_optimizer;
    int64_t m_steps; // AdamW steps taken (bias correction)
    std::vector<Param> m_params; // in the CausalLm's order
    std::vector<BlockParams> m_blocks;
    Param *m_embed = nullptr, *m_finalNorm = nullptr, *m_head = nullptr; // head null: tied to the embedding
    int m_rotaryDim = 0;
    int64_t m_ropePositions = 0;
    Buffer m_ropeCos, m_ropeSin;
    std::vector<Saved> m_saved; // per block (with recomputation: the inputs only)
    Saved m_work;               // with recomputation: the activations of the block being run
    bool m_recompute = false;
    // The last forward's batch, for its backward.
    std::vector<int32_t> m_ids, m_targets;
    AttentionDims m_dims;
    int64_t m_chunk = 0, m_count = 0;
    Buffer m_finalIn, m_h, m_rstdFinal, m_lse, m_t1;
    Buffer m_dh, m_dx, m_dmid, m_dn, m_dact, m_dgate, m_dup, m_dctx, m_dq, m_dk, m_dv;
};

} // namespace lathe::train
