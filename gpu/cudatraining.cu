// The training step on the GPU (core/train/devicetraining.h): CausalLm<float>'s forward and backward for the Llama
// family, clipGradNorm and AdamW, composed from gpu/trainops.h. Block by block it runs what
// CausalLm::Impl::blockForward / blockBackward run for a sequential pre-norm block with a SwiGLU MLP, in the same
// order, so the CPU engine is its reference (`lathe-cli check-gpu`: "train step ...").

#include "cudatraining.h"

#include "cudacheck.h"
#include "devicememory.h"
#include "gpucontext.h"
#include "trainops.h"

#include "base/error.h"
#include "engine/transformer.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace lathe::gpu {

namespace {

// One parameter on the device: value, gradient and both AdamW moments, fp32, in the CausalLm's layout.
struct DeviceParam {
    std::string name;
    int64_t rows = 0, cols = 0;
    bool decay = true;
    DeviceMemory w, g, m, v;
    int64_t size() const { return rows * cols; }
    float *value() const { return w.as<float>(); }
    float *grad() const { return g.as<float>(); }
};

// A block's parameters (biases may be null).
struct BlockParams {
    DeviceParam *attnNorm = nullptr, *mlpNorm = nullptr;
    DeviceParam *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *gate = nullptr, *up = nullptr,
                *down = nullptr;
    DeviceParam *qb = nullptr, *kb = nullptr, *vb = nullptr, *ob = nullptr, *gateb = nullptr, *upb = nullptr,
                *downb = nullptr;
};

// What a block's forward keeps for its backward (CausalLm's Saved for a sequential pre-norm SwiGLU block).
struct Saved {
    DeviceMemory x, n1, rstd1, q, k, v, probs, ctx, mid, n2, rstd2, gate, up, act;
};

float *f(const DeviceMemory &m) { return m.as<float>(); }
const float *orNull(const DeviceParam *p) { return p ? p->value() : nullptr; }
float *gradOrNull(const DeviceParam *p) { return p ? p->grad() : nullptr; }

class CudaTrainer final : public train::DeviceTrainer {
public:
    CudaTrainer(GpuContext &ctx, const train::CausalLm<float> &lm, const train::AdamW<float> &optimizer,
                ComputePrecision precision)
        : m_ctx(ctx), m_config(lm.config()), m_optimizer(optimizer.options()), m_steps(optimizer.steps()),
          m_ops((ctx.activate(), ctx.blas()),
                precision == ComputePrecision::Fp32 ? TrainPrecision::Fp32 : TrainPrecision::Bf16) {
        require(precision != ComputePrecision::Fp16, "GPU training", "fp16 products are not supported for training",
                "use bf16 (the default) or fp32");
        const ModelConfig &c = m_config;
        if (c.family != ArchFamily::Llama)
            throw LatheError("training on the GPU runs the Llama family only (SmolLM2, stories260K, Qwen2) so far",
                             "train this model on the CPU (--device cpu)");
        if (lm.recompute())
            throw LatheError("training on the GPU does not recompute blocks yet", "drop the recompute option");
        for (const auto &slot : lm.linears())
            if (!dynamic_cast<const train::DenseLinear<float> *>(slot.kind))
                throw LatheError(std::string("training on the GPU runs dense linears only; this model's ") +
                                     slot.kind->kindName() + " linear in block " + std::to_string(slot.layer) +
                                     " is not",
                                 "run this method on the CPU (--device cpu)");
        m_blocks.resize(size_t(c.numLayers));
        m_params.reserve(lm.parameters().size());
        // A resumed run's moments, one pair per parameter (train::AdamW's layout), or none before the first step.
        const auto &m1 = optimizer.firstMoments(), &m2 = optimizer.secondMoments();
        size_t index = 0;
        for (const train::Parameter<float> &p : lm.parameters()) {
            if (!p.trainable() || p.extra)
                throw LatheError("training on the GPU trains every parameter of the checkpoint; '" + p.name + "' is " +
                                     (p.extra ? "added by a method" : "frozen"),
                                 "train this on the CPU (--device cpu)");
            DeviceParam &d = m_params.emplace_back();
            d.name = p.name;
            d.rows = p.value.rows();
            d.cols = p.value.cols();
            d.decay = p.decay;
            const size_t bytes = size_t(d.size()) * sizeof(float);
            d.w.resize(bytes);
            d.g.resize(bytes);
            d.m.resize(bytes);
            d.v.resize(bytes);
            LATHE_CUDA_CHECK(cudaMemcpy(d.w.as(), p.value.data(), bytes, cudaMemcpyHostToDevice));
            const bool resumed = index < m1.size() && m1[index].size() == d.size() && m2[index].size() == d.size();
            if (resumed) {
                LATHE_CUDA_CHECK(cudaMemcpy(d.m.as(), m1[index].data(), bytes, cudaMemcpyHostToDevice));
                LATHE_CUDA_CHECK(cudaMemcpy(d.v.as(), m2[index].data(), bytes, cudaMemcpyHostToDevice));
            } else {
                LATHE_CUDA_CHECK(cudaMemset(d.m.as(), 0, bytes));
                LATHE_CUDA_CHECK(cudaMemset(d.v.as(), 0, bytes));
            }
            LATHE_CUDA_CHECK(cudaMemset(d.g.as(), 0, bytes));
            bind(p, &d);
            ++index;
        }
        require(m_embed && m_finalNorm, "GPU training", "the model has no token embedding or final norm");
        for (size_t l = 0; l < m_blocks.size(); ++l) {
            const BlockParams &b = m_blocks[l];
            if (!b.attnNorm || !b.mlpNorm || !b.q || !b.k || !b.v || !b.o || !b.gate || !b.up || !b.down)
                throw LatheError("block " + std::to_string(l) + " lacks one of the Llama block's tensors",
                                 "train this model on the CPU (--device cpu)");
        }
        const cpu::RopeTable rope = ropeTableFor(c, c.maxPositions, "");
        m_rotaryDim = rope.rotaryDim;
        m_ropePositions = rope.cos.rows();
        m_ropeCos.resize(size_t(rope.cos.size()) * sizeof(float));
        m_ropeSin.resize(size_t(rope.sin.size()) * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(m_ropeCos.as(), rope.cos.data(), m_ropeCos.bytes(), cudaMemcpyHostToDevice));
        LATHE_CUDA_CHECK(cudaMemcpy(m_ropeSin.as(), rope.sin.data(), m_ropeSin.bytes(), cudaMemcpyHostToDevice));
        m_saved.resize(m_blocks.size());
    }

    std::string describe() const override {
        int64_t n = 0;
        for (const DeviceParam &p : m_params)
            n += p.size();
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.1fM parameters", double(n) / 1e6);
        return m_ctx.properties().name + std::string(", ") +
               (m_ops.precision() == TrainPrecision::Fp32 ? "fp32" : "bf16") + " products, " + buf + " (" +
               std::to_string(deviceBytes() >> 20) + " MiB on the device)";
    }

    void zeroGradients() override {
        m_ctx.activate();
        for (DeviceParam &p : m_params)
            LATHE_CUDA_CHECK(cudaMemsetAsync(p.g.as(), 0, p.g.bytes()));
    }

    float loss(const TokenBatch &batch) override {
        const float l = forward(batch);
        synchronize();
        return l;
    }

    float forwardBackward(const TokenBatch &batch, float scale) override {
        const float l = forward(batch);
        backward(scale);
        synchronize(); // a fault shows up here, in this call, rather than in a later one
        return l;
    }

    // The forward pass over `batch`, keeping what backward needs; returns the mean next-token loss.
    float forward(const TokenBatch &batch) {
        m_ctx.activate();
        const ModelConfig &c = m_config;
        require(batch.seq >= 2 && int64_t(batch.tokens.size()) == batch.batch * batch.seq, "GPU training",
                "a batch needs batch x seq tokens, seq >= 2");
        require(batch.mask.empty(), "GPU training", "padded batches are not supported in training");
        require(batch.seq <= m_ropePositions, "GPU training",
                "windows of " + std::to_string(batch.seq) + " tokens are longer than the model's " +
                    std::to_string(m_ropePositions) + " positions");
        const int64_t B = batch.batch, S = batch.seq, rows = B * S, D = c.hiddenSize, F = c.intermediateSize;
        const int H = int(c.numHeads), KVH = int(c.numKvHeads), d = int(c.headDim);
        const int64_t qw = int64_t(H) * d, kw = int64_t(KVH) * d;
        std::vector<int32_t> &targets = m_targets;
        targets.assign(batch.tokens.size(), -1);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t + 1 < S; ++t)
                targets[size_t(b * S + t)] = batch.tokens[size_t(b * S + t + 1)];
        const TrainAttentionDims dims{B, S, H, KVH, d, float(1.0 / std::sqrt(double(d))), true};
        const float eps = float(c.normEps);
        allocate(B, S);
        m_ids = batch.tokens;
        m_dims = dims;

        // ---- forward ----
        m_ops.embeddingForward(m_embed->value(), m_embed->rows, D, batch.tokens, f(m_saved[0].x));
        for (size_t l = 0; l < m_blocks.size(); ++l) {
            const BlockParams &w = m_blocks[l];
            Saved &s = m_saved[l];
            m_ops.rmsNormForward(f(s.x), w.attnNorm->value(), rows, D, eps, f(s.n1), f(s.rstd1));
            m_ops.linearForward(f(s.n1), w.q->value(), orNull(w.qb), rows, D, qw, f(s.q));
            m_ops.linearForward(f(s.n1), w.k->value(), orNull(w.kb), rows, D, kw, f(s.k));
            m_ops.linearForward(f(s.n1), w.v->value(), orNull(w.vb), rows, D, kw, f(s.v));
            if (m_rotaryDim > 0) {
                m_ops.ropeForward(f(s.q), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
                m_ops.ropeForward(f(s.k), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
            }
            m_ops.attentionForward(f(s.q), f(s.k), f(s.v), dims, f(s.ctx), f(s.probs));
            float *attnOut = f(m_t1);
            m_ops.linearForward(f(s.ctx), w.o->value(), orNull(w.ob), rows, qw, D, attnOut);
            m_ops.add(f(s.x), attnOut, rows * D, f(s.mid));
            m_ops.rmsNormForward(f(s.mid), w.mlpNorm->value(), rows, D, eps, f(s.n2), f(s.rstd2));
            m_ops.linearForward(f(s.n2), w.gate->value(), orNull(w.gateb), rows, D, F, f(s.gate));
            m_ops.linearForward(f(s.n2), w.up->value(), orNull(w.upb), rows, D, F, f(s.up));
            m_ops.swigluForward(f(s.gate), f(s.up), rows * F, f(s.act));
            float *down = f(m_t1);
            m_ops.linearForward(f(s.act), w.down->value(), orNull(w.downb), rows, F, D, down);
            float *next = l + 1 < m_blocks.size() ? f(m_saved[l + 1].x) : f(m_finalIn);
            m_ops.add(f(s.mid), down, rows * D, next);
        }
        m_ops.rmsNormForward(f(m_finalIn), m_finalNorm->value(), rows, D, eps, f(m_h), f(m_rstdFinal));
        const DeviceParam *head = m_head ? m_head : m_embed;
        const int64_t vocab = head->rows;
        const int64_t chunk = std::clamp<int64_t>((int64_t(64) << 20) / rows, 1024, vocab);
        m_chunk = chunk;
        return m_ops.crossEntropyForward(f(m_h), head->value(), nullptr, rows, D, vocab, targets, chunk, f(m_lse),
                                         &m_count);
    }

    // The backward of the last forward, its gradients times `scale` added to the parameters' gradients.
    void backward(float scale) {
        const ModelConfig &c = m_config;
        const TrainAttentionDims &dims = m_dims;
        const int64_t S = dims.seq, rows = dims.batch * S, D = c.hiddenSize, F = c.intermediateSize;
        const int H = dims.heads, KVH = dims.kvHeads, d = dims.headDim;
        const int64_t qw = int64_t(H) * d, kw = int64_t(KVH) * d;
        const DeviceParam *head = m_head ? m_head : m_embed;
        const int64_t vocab = head->rows;
        // ---- backward ----
        float *dx = f(m_dx);
        zero(m_dh, rows * D);
        m_ops.crossEntropyBackward(f(m_h), head->value(), nullptr, rows, D, vocab, m_targets, m_chunk, f(m_lse),
                                   m_count, scale, f(m_dh), head->grad(), nullptr);
        zero(m_dx, rows * D);
        m_ops.rmsNormBackward(f(m_dh), f(m_finalIn), m_finalNorm->value(), f(m_rstdFinal), rows, D, dx,
                              m_finalNorm->grad());
        for (size_t l = m_blocks.size(); l-- > 0;) {
            const BlockParams &w = m_blocks[l];
            const Saved &s = m_saved[l];
            // out = mid + down(swiglu(gate(n2), up(n2))), n2 = norm2(mid); dx holds d out.
            zero(m_dact, rows * F);
            m_ops.linearBackward(dx, f(s.act), w.down->value(), rows, F, D, f(m_dact), w.down->grad(),
                                 gradOrNull(w.downb));
            zero(m_dgate, rows * F);
            zero(m_dup, rows * F);
            m_ops.swigluBackward(f(m_dact), f(s.gate), f(s.up), rows * F, f(m_dgate), f(m_dup));
            zero(m_dn, rows * D);
            m_ops.linearBackward(f(m_dgate), f(s.n2), w.gate->value(), rows, D, F, f(m_dn), w.gate->grad(),
                                 gradOrNull(w.gateb));
            m_ops.linearBackward(f(m_dup), f(s.n2), w.up->value(), rows, D, F, f(m_dn), w.up->grad(),
                                 gradOrNull(w.upb));
            // d mid = d out + norm2's backward of d n2.
            float *dmid = f(m_dmid);
            copy(dmid, dx, rows * D);
            m_ops.rmsNormBackward(f(m_dn), f(s.mid), w.mlpNorm->value(), f(s.rstd2), rows, D, dmid,
                                  w.mlpNorm->grad());
            // mid = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = norm1(x).
            zero(m_dctx, rows * qw);
            m_ops.linearBackward(dmid, f(s.ctx), w.o->value(), rows, qw, D, f(m_dctx), w.o->grad(), gradOrNull(w.ob));
            zero(m_dq, rows * qw);
            zero(m_dk, rows * kw);
            zero(m_dv, rows * kw);
            m_ops.attentionBackward(f(m_dctx), f(s.q), f(s.k), f(s.v), dims, f(s.probs), f(m_dq), f(m_dk), f(m_dv));
            if (m_rotaryDim > 0) {
                m_ops.ropeBackward(f(m_dq), rows, S, H, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
                m_ops.ropeBackward(f(m_dk), rows, S, KVH, d, m_rotaryDim, f(m_ropeCos), f(m_ropeSin));
            }
            zero(m_dn, rows * D);
            m_ops.linearBackward(f(m_dq), f(s.n1), w.q->value(), rows, D, qw, f(m_dn), w.q->grad(), gradOrNull(w.qb));
            m_ops.linearBackward(f(m_dk), f(s.n1), w.k->value(), rows, D, kw, f(m_dn), w.k->grad(), gradOrNull(w.kb));
            m_ops.linearBackward(f(m_dv), f(s.n1), w.v->value(), rows, D, kw, f(m_dn), w.v->grad(), gradOrNull(w.vb));
            // d x = d mid + norm1's backward of d n1.
            copy(dx, dmid, rows * D);
            m_ops.rmsNormBackward(f(m_dn), f(s.x), w.attnNorm->value(), f(s.rstd1), rows, D, dx, w.attnNorm->grad());
        }
        m_ops.embeddingBackward(dx, m_ids, D, m_embed->grad());
    }

    double step(double lr, double maxNorm) override {
        m_ctx.activate();
        std::vector<std::pair<const float *, int64_t>> grads;
        for (const DeviceParam &p : m_params)
            grads.emplace_back(p.grad(), p.size());
        const double norm = std::sqrt(m_ops.sumOfSquares(grads));
        if (maxNorm > 0 && norm > maxNorm) {
            const float scale = float(maxNorm / (norm + 1e-6));
            for (DeviceParam &p : m_params)
                m_ops.scale(p.grad(), p.size(), scale);
        }
        ++m_steps;
        const double c1 = 1.0 - std::pow(m_optimizer.beta1, double(m_steps));
        const double c2 = 1.0 - std::pow(m_optimizer.beta2, double(m_steps));
        for (DeviceParam &p : m_params) {
            const bool decay = p.decay && p.rows > 1 && p.cols > 1 && m_optimizer.weightDecay > 0;
            const TrainAdamW k{float(m_optimizer.beta1), float(m_optimizer.beta2),
                               decay ? float(1.0 - lr * m_optimizer.weightDecay) : 1.0f, float(lr / c1),
                               float(std::sqrt(c2)), float(m_optimizer.eps)};
            m_ops.adamw(p.value(), p.m.as<float>(), p.v.as<float>(), p.grad(), p.size(), k);
        }
        synchronize();
        return norm;
    }

    void download(train::CausalLm<float> &model, bool gradients) const override {
        m_ctx.activate();
        train::ParameterSet<float> &params = model.parameters();
        require(params.size() == m_params.size(), "GPU training", "the model's parameters differ from the trainer's");
        for (size_t i = 0; i < m_params.size(); ++i) {
            const DeviceParam &d = m_params[i];
            train::Parameter<float> &p = params[i];
            require(p.name == d.name && p.value.size() == d.size(), "GPU training",
                    "parameter " + p.name + " differs from the trainer's " + d.name);
            LATHE_CUDA_CHECK(cudaMemcpy(p.value.data(), d.w.as(), d.w.bytes(), cudaMemcpyDeviceToHost));
            if (gradients) {
                p.grad.resize(p.value.rows(), p.value.cols());
                LATHE_CUDA_CHECK(cudaMemcpy(p.grad.data(), d.g.as(), d.g.bytes(), cudaMemcpyDeviceToHost));
            }
        }
    }

    void downloadOptimizer(train::AdamW<float> &optimizer) const override {
        m_ctx.activate();
        auto &m1 = optimizer.firstMoments(), &m2 = optimizer.secondMoments();
        m1.resize(m_params.size());
        m2.resize(m_params.size());
        for (size_t i = 0; i < m_params.size(); ++i) {
            const DeviceParam &d = m_params[i];
            m1[i].resize(d.rows, d.cols);
            m2[i].resize(d.rows, d.cols);
            LATHE_CUDA_CHECK(cudaMemcpy(m1[i].data(), d.m.as(), d.m.bytes(), cudaMemcpyDeviceToHost));
            LATHE_CUDA_CHECK(cudaMemcpy(m2[i].data(), d.v.as(), d.v.bytes(), cudaMemcpyDeviceToHost));
        }
        optimizer.setSteps(m_steps);
    }

    void synchronize() override { LATHE_CUDA_CHECK(cudaDeviceSynchronize()); }

    uint64_t deviceBytes() const override {
        uint64_t n = m_ropeCos.bytes() + m_ropeSin.bytes();
        for (const DeviceParam &p : m_params)
            n += p.w.bytes() + p.g.bytes() + p.m.bytes() + p.v.bytes();
        for (const Saved &s : m_saved)
            for (const DeviceMemory *m : {&s.x, &s.n1, &s.rstd1, &s.q, &s.k, &s.v, &s.probs, &s.ctx, &s.mid, &s.n2,
                                          &s.rstd2, &s.gate, &s.up, &s.act})
                n += m->bytes();
        for (const DeviceMemory *m : {&m_finalIn, &m_h, &m_rstdFinal, &m_lse, &m_t1, &m_dh, &m_dx, &m_dmid, &m_dn,
                                      &m_dact, &m_dgate, &m_dup, &m_dctx, &m_dq, &m_dk, &m_dv})
            n += m->bytes();
        return n;
    }

private:
    // Attaches a CausalLm parameter to its place in the block or model tables.
    void bind(const train::Parameter<float> &p, DeviceParam *d) {
        if (p.role == TensorRole::TokenEmbedding) {
            m_embed = d;
            return;
        }
        if (p.role == TensorRole::FinalNorm) {
            m_finalNorm = d;
            return;
        }
        if (p.role == TensorRole::LmHead && !p.isBias) {
            m_head = d;
            return;
        }
        if (p.layer < 0 || size_t(p.layer) >= m_blocks.size())
            throw LatheError("GPU training does not know the tensor '" + p.name + "'",
                             "train this model on the CPU (--device cpu)");
        BlockParams &b = m_blocks[size_t(p.layer)];
        DeviceParam **slot = nullptr;
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
            throw LatheError("GPU training does not know the tensor '" + p.name + "' (" + roleName(p.role) + ")",
                             "train this model on the CPU (--device cpu)");
        *slot = d;
    }

    // Activation and gradient buffers for batches of B x S (grown, never shrunk).
    void allocate(int64_t B, int64_t S) {
        const ModelConfig &c = m_config;
        const int64_t rows = B * S, D = c.hiddenSize, F = c.intermediateSize;
        const int64_t qw = c.numHeads * c.headDim, kw = c.numKvHeads * c.headDim;
        const auto floats = [](DeviceMemory &m, int64_t n) { m.ensure(size_t(n) * sizeof(float)); };
        for (Saved &s : m_saved) {
            for (DeviceMemory *m : {&s.x, &s.n1, &s.mid, &s.n2})
                floats(*m, rows * D);
            floats(s.rstd1, rows);
            floats(s.rstd2, rows);
            floats(s.q, rows * qw);
            floats(s.ctx, rows * qw);
            floats(s.k, rows * kw);
            floats(s.v, rows * kw);
            floats(s.probs, B * c.numHeads * S * S);
            for (DeviceMemory *m : {&s.gate, &s.up, &s.act})
                floats(*m, rows * F);
        }
        for (DeviceMemory *m : {&m_finalIn, &m_h, &m_t1, &m_dh, &m_dx, &m_dmid, &m_dn})
            floats(*m, rows * D);
        floats(m_rstdFinal, rows);
        floats(m_lse, rows);
        for (DeviceMemory *m : {&m_dact, &m_dgate, &m_dup})
            floats(*m, rows * F);
        floats(m_dctx, rows * qw);
        floats(m_dq, rows * qw);
        floats(m_dk, rows * kw);
        floats(m_dv, rows * kw);
    }

    void zero(DeviceMemory &m, int64_t n) { LATHE_CUDA_CHECK(cudaMemsetAsync(m.as(), 0, size_t(n) * sizeof(float))); }
    void copy(float *to, const float *from, int64_t n) {
        LATHE_CUDA_CHECK(cudaMemcpyAsync(to, from, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice));
    }

    GpuContext &m_ctx;
    ModelConfig m_config;
    train::AdamWOptions m_optimizer;
    int64_t m_steps; // AdamW steps taken (bias correction)
    TrainOps m_ops;
    std::vector<DeviceParam> m_params; // in the CausalLm's order (reserved: the tables below point into it)
    std::vector<BlockParams> m_blocks;
    DeviceParam *m_embed = nullptr, *m_finalNorm = nullptr, *m_head = nullptr; // head null: tied
    int m_rotaryDim = 0;
    int64_t m_ropePositions = 0;
    DeviceMemory m_ropeCos, m_ropeSin;
    std::vector<Saved> m_saved;
    // The last forward's batch, for its backward.
    std::vector<int32_t> m_ids, m_targets;
    TrainAttentionDims m_dims;
    int64_t m_chunk = 0, m_count = 0;
    DeviceMemory m_finalIn, m_h, m_rstdFinal, m_lse, m_t1;
    DeviceMemory m_dh, m_dx, m_dmid, m_dn, m_dact, m_dgate, m_dup, m_dctx, m_dq, m_dk, m_dv;
};

} // namespace

std::unique_ptr<train::DeviceTrainer> makeCudaTrainer(GpuContext &ctx, const train::CausalLm<float> &model,
                                                      const train::AdamW<float> &optimizer,
                                                      ComputePrecision precision) {
    return std::make_unique<CudaTrainer>(ctx, model, optimizer, precision);
}

} // namespace lathe::gpu
