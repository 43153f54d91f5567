#pragma once

// The training step written once over an ops backend (issue 17 item 9): CausalLm<float>'s forward and backward for
// the Llama family (RMSNorm, SwiGLU, RoPE: SmolLM2, stories260K, Qwen2's q/k/v biases), GPT-2 (learned positions,
// LayerNorm, GELU, the fused q/k/v projection), OPT (positions offset by 2, ReLU), Phi-2 (one norm feeding attention
// and MLP in parallel, partial RoPE, biases everywhere, a biased head) and BERT (token, position and segment
// embeddings with a LayerNorm, post-norm blocks with bidirectional attention, the masked-LM head's dense + GELU +
// LayerNorm before the tied decoder and its bias; the batch masked by the CausalLm's masking from the caller's
// seed, maskTokens), in CausalLm::Impl::blockForward / blockBackward's order, then clipGradNorm and AdamW, on
// buffers the backend owns. Block linears are dense, fixed-mask (recovery), low rank + sparse (LoSparse), PST's,
// or dense on a gathered step's rows and columns (SAT): train/opslinears.h runs each kind. The GPU trainer
// (gpu/cudatraining.cu) runs it all on the CUDA ops of gpu/trainops.h; tests/hosttrainops.h runs it on the CPU
// reference ops of train/ops.h, so tst_trainmodel checks this composition against CausalLm bit for bit without a
// GPU, and the GPU's own part is its ops, which `lathe-cli check-gpu` compares with the CPU one by one.
//
// An Ops type provides the op methods of gpu::TrainOps (the same signatures, on its buffers' float pointers; gemm,
// maskedAdd and rowMaskedAdd serve the masked and low-rank + sparse linears, pstAdapted, pstScores, pruneSmallest
// and pstBackward the PST ones) and:
//   using Buffer = ...;                 // move-only storage: resize(bytes), ensure(bytes), bytes(), as<T>()
//   void activate() const;              // makes the device current on the calling thread
//   std::string deviceName() const;
//   ComputePrecision precision() const;
//   AttentionStore attentionStore() const; // what attentionForward saves in its `probs` buffer for the backward
//   void upload(float *to, const float *host, int64_t n) const;      // host -> buffer
//   void download(float *host, const float *from, int64_t n) const;  // buffer -> host
//   void zero(float *x, int64_t n);
//   void copy(float *to, const float *from, int64_t n);
//   void copyColumns(float *to, int64_t toStride, const float *from, int64_t fromStride, int64_t rows, int64_t cols);
//                                       // rows x cols floats between row-major buffers of other widths
//   void uploadBytes(void *to, const void *host, size_t n) const;   // host -> buffer, n bytes (the masks)
//   void synchronize() const;           // waits for the queued work; a device fault is thrown here
//
// Memory: opsTrainerDeviceBytes (train/opsmemory.h; its buffers part is exactly what the trainer allocates).

#include "base/error.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "numeric/cpukernels.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/opslinears.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lathe::train {

template <class Ops> class OpsTrainer final : public DeviceTrainer {
    using Buffer = typename Ops::Buffer;

    using Linears = OpsLinears<Ops>;
    using Param = OpsParam<Buffer>;
    using Lin = typename Linears::Lin;
    using Sel = typename Linears::Sel;
    // A block's gathered step (SAT): CausalLm's BlockGather for the block's selection at the last forward, with
    // its index lists on the device (uploaded when the selection changes), and the channel norms of that forward.
    struct Gathered {
        BlockSelection uploaded;
        BlockGather gather;
        Buffer qRows, kRows, qkvRows, channels, norms;
        static Sel rowsOf(const Buffer &b, const std::vector<int32_t> &list) {
            return list.empty() ? Sel{} : Sel{b.template as<int32_t>(), nullptr, int64_t(list.size()), 0};
        }
        static Sel colsOf(const Buffer &b, const std::vector<int32_t> &list) {
            return list.empty() ? Sel{} : Sel{nullptr, b.template as<int32_t>(), 0, int64_t(list.size())};
        }
        Sel q() const { return rowsOf(qRows, gather.q.rows); }
        Sel kv() const { return rowsOf(kRows, gather.k.rows); }
        Sel qkv() const { return rowsOf(qkvRows, gather.qkv.rows); }
        Sel o() const { return colsOf(qRows, gather.o.cols); }
        Sel in() const { return rowsOf(channels, gather.in.rows); }
        Sel down() const { return colsOf(channels, gather.down.cols); }
        // The MLP channels the step runs, of `all`.
        int64_t keptChannels(int64_t all) const { return gather.in.rows.empty() ? all : int64_t(gather.in.rows.size()); }
    };
    // A block's parameters (biases, the MLP norm, the gate and either the fused q/k/v or q, k, v may be null).
    struct BlockParams {
        Param *attnNorm = nullptr, *attnNormB = nullptr, *mlpNorm = nullptr, *mlpNormB = nullptr;
        Lin q, k, v, qkv, o, gate, up, down;
        Param *qb = nullptr, *kb = nullptr, *vb = nullptr, *qkvb = nullptr, *ob = nullptr, *gateb = nullptr,
              *upb = nullptr, *downb = nullptr;
    };
    // What a block's forward keeps for its backward (mean1/mean2 with LayerNorm only; mid, n2 and the MLP norm's
    // statistics in sequential blocks only; gate with SwiGLU only). BERT's post-norm blocks (out = norm2(n2),
    // n2 = mid + mlp(mid), mid = norm1(n1), n1 = x + attention(x)) keep in n1 and n2 the sums entering their norms.
    struct Saved {
        Buffer x, n1, mean1, rstd1, q, k, v, probs, ctx, mid, n2, mean2, rstd2, gate, up, act;
    };
public:
    // Copies lm's parameters (which of them train) and the optimizer's options, moments and step count; LatheError
    // naming what it does not run (a learned mask, a method-added parameter). With lm's recomputation on, each block
    // keeps its input only and runs its forward again before its backward.
    OpsTrainer(Ops ops, const CausalLm<float> &lm, const AdamW<float> &optimizer)
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

    std::string describe() const override {
        int64_t n = 0;
        for (const Param &p : m_params)
            n += p.size();
        char buf[128];
        std::snprintf(buf, sizeof buf, ", %s products%s, %.1fM parameters (%llu MiB held)",
                      precisionName(m_ops.precision()),
                      m_ops.attentionStore() == AttentionStore::LogSumExp ? ", fused attention" : "",
                      double(n) / 1e6, static_cast<unsigned long long>(deviceBytes() >> 20));
        return m_ops.deviceName() + buf;
    }

    void zeroGradients() override {
        m_ops.activate();
        for (Param &p : m_params)
            if (p.trainable)
                m_ops.zero(p.grad(), p.size());
    }

    float loss(const TokenBatch &batch, uint64_t maskSeed = 0) override {
        const float l = forward(batch, maskSeed);
        m_ops.synchronize();
        return l;
    }

    float forwardBackward(const TokenBatch &batch, float scale = 1.0f, uint64_t maskSeed = 0) override {
        const float l = forward(batch, maskSeed);
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

    std::vector<std::vector<float>> rowAbsProductSums(const std::vector<std::string> &names) override {
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

    void zeroRows(const std::string &name, const std::vector<uint8_t> &keep) override {
        m_ops.activate();
        Param &d = m_params[indexOf(name)];
        require(int64_t(keep.size()) == d.rows, "GPU training", "the row mask of " + name + " has the wrong size");
        m_rowKeep.ensure(keep.size());
        m_ops.uploadBytes(m_rowKeep.template as<void>(), keep.data(), keep.size());
        m_ops.zeroRows(d.value(), m_rowKeep.template as<uint8_t>(), d.rows, d.cols);
    }

    // train::weightNorms through the ops (the same functions on the reference ops, so the same bits there).
    std::vector<std::vector<float>> weightNorms(const std::vector<WeightNormRequest> &requests) override {
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

    void synchronize() override { m_ops.synchronize(); }
    void profileOps(bool on) override { m_ops.profileOps(on); }
    std::vector<OpTime> opTimes() override { return m_ops.opTimes(); }

    void keepChannelNorms(bool keep) override { m_keepNorms = keep; }

    void downloadChannelNorms(CausalLm<float> &model) const override {
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

    // What the method's linears hold on the device besides their parameters: fixed masks and PST's (a byte per
    // weight), row masks (a byte per row of S), and the weight-gradient, W_eff and PST's W~, score and work buffers
    // of the largest such linear.
    uint64_t linearKindBytes() const override {
        uint64_t n = m_linears.bytes() + m_rowSums.bytes() + m_rowKeep.bytes();
        for (const Gathered &x : m_gathered)
            for (const Buffer *b : {&x.qRows, &x.kRows, &x.qkvRows, &x.channels, &x.norms})
                n += b->bytes();
        for (const Param &p : m_params)
            n += p.mask.bytes();
        return n;
    }

    // The parameters, their gradients and moments, the activations and gradient buffers, and linearKindBytes.
    uint64_t deviceBytes() const override {
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

private:
    static float *f(const Buffer &b) { return b.template as<float>(); }

    size_t indexOf(const std::string &name) const {
        const auto it = m_index.find(name);
        require(it != m_index.end(), "GPU training", "the trainer holds no parameter " + name);
        return it->second;
    }

    // Where a block linear's weight of `role` goes (null for a role that is not a block linear).
    static Lin *weightSlot(BlockParams &b, TensorRole role) { return blockLinear(b, role); }

    // RMSNorm (Llama) or LayerNorm (its bias may be absent); mean is unused by RMSNorm.
    void normForward(const Param *w, const Param *b, const float *x, int64_t rows, float *y, float *mean,
                     float *rstd) {
        const int64_t D = m_config.hiddenSize;
        const float eps = float(m_config.normEps);
        if (m_rms)
            m_ops.rmsNormForward(x, w->value(), rows, D, eps, y, rstd);
        else
            m_ops.layerNormForward(x, w->value(), orNull(b), rows, D, eps, y, mean, rstd);
    }
    void normBackward(const Param *w, const Param *b, const float *dy, const float *x, const float *mean,
                      const float *rstd, int64_t rows, float *dx) {
        const int64_t D = m_config.hiddenSize;
        if (m_rms)
            m_ops.rmsNormBackward(dy, x, w->value(), rstd, rows, D, dx, w->grad());
        else
            m_ops.layerNormBackward(dy, x, w->value(), mean, rstd, rows, D, dx, w->grad(), gradOrNull(b));
    }
    // The widths of a block's projections: the model's, its q and k/v widths, and this step's (the gathered
    // heads'), q, k/v and the three together.
    struct ProjectionWidths {
        int64_t D, fullQw, fullKw, qw, kw, all;
    };
    ProjectionWidths projectionWidths(const Gathered &g) const {
        const AttentionDims &dims = g.gather.dims;
        const int64_t qw = int64_t(dims.heads) * dims.headDim, kw = int64_t(dims.kvHeads) * dims.headDim;
        return {m_config.hiddenSize, m_config.numHeads * m_config.headDim, m_config.numKvHeads * m_config.headDim,
                qw, kw, qw + 2 * kw};
    }
    // q, k and v of a block from its attention input `in` (n1; BERT: the block input): three products, or GPT-2's
    // one fused product (its weight's rows: q's, k's, v's) split into them, as CausalLm computes them.
    // With a selection, of the kept groups' heads only (q, k, v narrower: their gathered widths).
    void projectionsForward(const BlockParams &w, const Gathered &g, const Saved &s, const float *in, int64_t rows) {
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
    // Their backward from m_dq, m_dk, m_dv: the gradient of `in` accumulated into dn.
    void projectionsBackward(const BlockParams &w, const Gathered &g, const float *in, int64_t rows, float *dn) {
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
    // The MLP's activation (act = silu(gate) * up, or act(up)), and the model's activation of n values (not
    // SwiGLU: BERT's head transform) and its backward, dx += ....
    void activationForward(const Saved &s, int64_t n) {
        if (m_swiglu)
            m_ops.swigluForward(f(s.gate), f(s.up), n, f(s.act));
        else
            activate(f(s.up), n, f(s.act));
    }
    void activate(const float *x, int64_t n, float *y) {
        if (m_activation == cpu::Activation::Relu)
            m_ops.reluForward(x, n, y);
        else
            m_ops.geluForward(gelu(), x, n, y);
    }
    void activateBack(const float *dy, const float *x, int64_t n, float *dx) {
        if (m_activation == cpu::Activation::Relu)
            m_ops.reluBackward(dy, x, n, dx);
        else
            m_ops.geluBackward(gelu(), dy, x, n, dx);
    }
    Gelu gelu() const { return m_activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf; }

    // The forward pass over `batch`, keeping what backward needs; returns the mean loss: next-token, or BERT's
    // masked-LM loss over `batch` masked from maskSeed (CausalLm::forward's).
    float forward(const TokenBatch &batch, uint64_t maskSeed) {
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

    // Block l's gathered step for the selection its CausalLm holds now (all: none): the gather at this batch's
    // dims, its index lists uploaded when the selection changed, and the rows and columns of each block parameter
    // that AdamW updates (CausalLm's markActive).
    void prepareGather(size_t l) {
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

    // Block l's forward from its input m_saved[l].x, keeping its activations in `s`; its output goes to `out`
    // (null: not computed, when backward runs the block again for its activations). A gathered step runs the
    // kept MLP channels and KV groups only (narrower q, k, v, context and MLP activations).
    //   sequential: out = mid + down(mlp(norm2(mid))), mid = x + o(attention(norm1(x)))
    //   parallel (Phi-2): out = (x + o(attention(n1))) + down(mlp(n1)), n1 = norm1(x)
    //   post-norm (BERT): out = norm2(n2), n2 = mid + down(mlp(mid)), mid = norm1(n1), n1 = x + o(attention(x));
    //   its recomputing pass runs to norm2 too (its backward needs n2 and the statistics), writing out to m_t1.
    void blockForward(size_t l, Saved &s, float *out) {
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

    // The backward of the last forward, its gradients times `scale` added to the parameters' gradients.
    void backward(float scale) {
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

    // Attaches a CausalLm parameter to its place in the block or model tables.
    void bind(const Parameter<float> &p, Param *d) {
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

    // Activation and gradient buffers for batches of B x S (grown, never shrunk).
    void allocate(int64_t B, int64_t S) {
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

    Ops m_ops;
    const CausalLm<float> *m_lm; // the model whose selections (and methods' linears) the forward reads
    ModelConfig m_config;
    AdamWOptions m_optimizer;
    int64_t m_steps; // AdamW steps taken (bias correction)
    // The family's block (CausalLm's flags; post: BERT's post-norm blocks, embedding norm and masked-LM head).
    bool m_rms = true, m_swiglu = true, m_parallel = false, m_post = false;
    cpu::Activation m_activation = cpu::Activation::Silu;
    int64_t m_positionOffset = 0, m_maxSeq = 0;
    std::vector<Param> m_params; // in the CausalLm's order
    std::vector<BlockParams> m_blocks;
    Param *m_embed = nullptr, *m_position = nullptr, *m_finalNorm = nullptr, *m_finalNormB = nullptr;
    Param *m_head = nullptr, *m_headB = nullptr; // head null: tied to the embedding
    // BERT: segment embeddings, the embedding norm, the masked-LM head's transform and its norm.
    Param *m_tokenType = nullptr, *m_embNorm = nullptr, *m_embNormB = nullptr, *m_transform = nullptr,
          *m_transformB = nullptr, *m_headNorm = nullptr, *m_headNormB = nullptr;
    int m_rotaryDim = 0;
    Buffer m_ropeCos, m_ropeSin;
    std::vector<Saved> m_saved; // per block (with recomputation: the inputs only)
    Saved m_work;               // with recomputation: the activations of the block being run
    bool m_recompute = false;
    // The last forward's batch, for its backward.
    std::vector<int32_t> m_ids, m_positions, m_types, m_targets; // m_ids: BERT's masked inputs
    AttentionDims m_dims; // of the whole model and the last forward's batch
    int64_t m_chunk = 0, m_count = 0;
    // m_h: the LM head's input (the final norm's output; BERT: the head transform's), its norm's statistics in
    // m_meanFinal and m_rstdFinal. BERT: the embeddings' sum and its norm's statistics, the transform's product
    // and activation.
    Buffer m_finalIn, m_h, m_meanFinal, m_rstdFinal, m_lse, m_t1;
    Buffer m_embIn, m_embMean, m_embRstd, m_tPre, m_tAct;
    Buffer m_dh, m_dx, m_dmid, m_dn, m_dact, m_dgate, m_dup, m_dctx, m_dq, m_dk, m_dv;
    bool m_fusedQkv = false;
    Buffer m_qkv; // GPT-2: the fused product, then its gradient
    Linears m_linears{m_ops}; // the block linears' kinds and scratch
    // Gathered steps (SAT): per block.
    std::vector<Gathered> m_gathered;
    bool m_keepNorms = false;
    // rowAbsProductSums' sums (and weightNorms') and zeroRows' mask (the largest parameter's rows or groups)
    Buffer m_rowSums, m_rowKeep;
    std::unordered_map<std::string, size_t> m_index; // parameter name -> position in m_params
};

} // namespace lathe::train
