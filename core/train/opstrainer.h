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
//
// The class below declares every member with its contract; the members are defined by responsibility in the three
// headers included at the end of this file: train/opstrainerstate.h (construction, binding, buffers, memory, host
// access), train/opstrainerforward.h and train/opstrainerbackward.h (with the optimizer step).

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
        int64_t keptChannels(int64_t all) const {
            return gather.in.rows.empty() ? all : int64_t(gather.in.rows.size());
        }
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
    OpsTrainer(Ops ops, const CausalLm<float> &lm, const AdamW<float> &optimizer);

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

    // The global-norm clipping and AdamW over the trainable parameters (train/opstrainerbackward.h).
    double step(double lr, double maxNorm) override;

    // Host access (train/opstrainerstate.h).
    void download(CausalLm<float> &model, bool gradients) const override;
    void downloadOptimizer(AdamW<float> &optimizer) const override;
    std::vector<std::vector<float>> rowAbsProductSums(const std::vector<std::string> &names) override;
    void zeroRows(const std::string &name, const std::vector<uint8_t> &keep) override;
    // train::weightNorms through the ops (the same functions on the reference ops, so the same bits there).
    std::vector<std::vector<float>> weightNorms(const std::vector<WeightNormRequest> &requests) override;
    void keepChannelNorms(bool keep) override { m_keepNorms = keep; }
    void downloadChannelNorms(CausalLm<float> &model) const override;

    void synchronize() override { m_ops.synchronize(); }
    void profileOps(bool on) override { m_ops.profileOps(on); }
    std::vector<OpTime> opTimes() override { return m_ops.opTimes(); }

    // What the method's linears hold on the device besides their parameters: fixed masks and PST's (a byte per
    // weight), row masks (a byte per row of S), and the weight-gradient, W_eff and PST's W~, score and work buffers
    // of the largest such linear.
    uint64_t linearKindBytes() const override;
    // The parameters, their gradients and moments, the activations and gradient buffers, and linearKindBytes.
    uint64_t deviceBytes() const override;

private:
    static float *f(const Buffer &b) { return b.template as<float>(); }

    size_t indexOf(const std::string &name) const {
        const auto it = m_index.find(name);
        require(it != m_index.end(), "GPU training", "the trainer holds no parameter " + name);
        return it->second;
    }

    // Where a block linear's weight of `role` goes (null for a role that is not a block linear).
    static Lin *weightSlot(BlockParams &b, TensorRole role) { return blockLinear(b, role); }
    // Attaches a CausalLm parameter to its place in the block or model tables (train/opstrainerstate.h).
    void bind(const Parameter<float> &p, Param *d);
    // Activation and gradient buffers for batches of B x S (grown, never shrunk; train/opstrainerstate.h).
    void allocate(int64_t B, int64_t S);

    // The step's parts: the forward's in train/opstrainerforward.h, the backward's in train/opstrainerbackward.h.

    // RMSNorm (Llama) or LayerNorm (its bias may be absent); mean is unused by RMSNorm.
    void normForward(const Param *w, const Param *b, const float *x, int64_t rows, float *y, float *mean,
                     float *rstd);
    void normBackward(const Param *w, const Param *b, const float *dy, const float *x, const float *mean,
                      const float *rstd, int64_t rows, float *dx);
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
    void projectionsForward(const BlockParams &w, const Gathered &g, const Saved &s, const float *in, int64_t rows);
    // Their backward from m_dq, m_dk, m_dv: the gradient of `in` accumulated into dn.
    void projectionsBackward(const BlockParams &w, const Gathered &g, const float *in, int64_t rows, float *dn);
    // The MLP's activation (act = silu(gate) * up, or act(up)), and the model's activation of n values (not
    // SwiGLU: BERT's head transform) and its backward, dx += ....
    void activationForward(const Saved &s, int64_t n);
    void activate(const float *x, int64_t n, float *y);
    void activateBack(const float *dy, const float *x, int64_t n, float *dx);
    Gelu gelu() const { return m_activation == cpu::Activation::GeluTanh ? Gelu::Tanh : Gelu::Erf; }

    // The forward pass over `batch`, keeping what backward needs; returns the mean loss: next-token, or BERT's
    // masked-LM loss over `batch` masked from maskSeed (CausalLm::forward's).
    float forward(const TokenBatch &batch, uint64_t maskSeed);

    // Block l's gathered step for the selection its CausalLm holds now (all: none): the gather at this batch's
    // dims, its index lists uploaded when the selection changed, and the rows and columns of each block parameter
    // that AdamW updates (CausalLm's markActive).
    void prepareGather(size_t l);

    // Block l's forward from its input m_saved[l].x, keeping its activations in `s`; its output goes to `out`
    // (null: not computed, when backward runs the block again for its activations). A gathered step runs the
    // kept MLP channels and KV groups only (narrower q, k, v, context and MLP activations).
    //   sequential: out = mid + down(mlp(norm2(mid))), mid = x + o(attention(norm1(x)))
    //   parallel (Phi-2): out = (x + o(attention(n1))) + down(mlp(n1)), n1 = norm1(x)
    //   post-norm (BERT): out = norm2(n2), n2 = mid + down(mlp(mid)), mid = norm1(n1), n1 = x + o(attention(x));
    //   its recomputing pass runs to norm2 too (its backward needs n2 and the statistics), writing out to m_t1.
    void blockForward(size_t l, Saved &s, float *out);

    // The backward of the last forward, its gradients times `scale` added to the parameters' gradients.
    void backward(float scale);

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

// The members' definitions, by responsibility.
#include "train/opstrainerstate.h"    // construction, parameter binding, buffers, memory, host access
#include "train/opstrainerforward.h"  // the forward pass
#include "train/opstrainerbackward.h" // the backward pass and the optimizer step
