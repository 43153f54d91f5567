// The decoder forward pass on a CUDA device (core/deviceforward.h), the GPU twin of core/transformer.cpp.
//
// Layout and precision: activations are row-major (batch*seq x width) as on the CPU. Linear layers are cuBLAS
// GEMMs with inputs (weights and the activation feeding them) in the compute type T and fp32 accumulation and
// output; the residual stream, norms, softmax, biases and the shortcut matrices of sliced models stay fp32.
// Attention is unfused: per sequence, QK^T for all heads by strided batched GEMMs (grouped-query heads by one
// batched call per position in the group, the layouts addressed through leading dimensions, so no transposes),
// a row softmax with the causal mask, and P V written straight into the (rows x heads*headDim) context in T.
// Weights: every block resident when the model fits in device memory, else each block loaded from the checkpoint
// and uploaded right before it runs.

#include "cudaforward.h"
#include "cudacheck.h"
#include "devicememory.h"
#include "forwardkernels.cuh"

#include "../core/blockops.h"
#include "../core/deviceforward.h"
#include "../core/error.h"
#include "../core/layerweights.h"
#include "../core/model.h"
#include "../core/transformer.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <type_traits>
#include <vector>

namespace lathe::gpu {

namespace {

template <typename T> constexpr cudaDataType_t cudaType();
template <> constexpr cudaDataType_t cudaType<float>() { return CUDA_R_32F; }
template <> constexpr cudaDataType_t cudaType<__nv_bfloat16>() { return CUDA_R_16BF; }
template <> constexpr cudaDataType_t cudaType<__half>() { return CUDA_R_16F; }

DeviceActivation deviceActivation(cpu::Activation a) {
    switch (a) {
    case cpu::Activation::Silu: return DeviceActivation::Silu;
    case cpu::Activation::Relu: return DeviceActivation::Relu;
    case cpu::Activation::GeluTanh: return DeviceActivation::GeluTanh;
    case cpu::Activation::GeluErf: return DeviceActivation::GeluErf;
    }
    return DeviceActivation::Silu;
}

DeviceMemory uploadFloats(const float *host, size_t n) {
    DeviceMemory d(n * sizeof(float));
    if (n)
        LATHE_CUDA_CHECK(cudaMemcpy(d.as(), host, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

// A weight matrix (out x in) in T, its optional fp32 bias.
struct DeviceLinear {
    DeviceMemory w, b;
    int64_t out = 0, in = 0;
    bool present() const { return !w.empty(); }
};

struct DeviceNorm {
    DeviceMemory w, b; // fp32; both empty for the weight-less norms of a sliced model
};

struct DeviceBlock {
    DeviceNorm attnNorm, mlpNorm;
    DeviceLinear q, k, v, o, gate, up, down;
    DeviceLinear attnShortcut, mlpShortcut; // fp32 weights; empty = identity
    size_t bytes = 0;
};

template <typename T> class CudaForward final : public DeviceForward {
public:
    CudaForward(const Model &model, const DeviceForwardOptions &options) : m_model(model), m_options(options) {
        const ModelConfig &c = model.config;
        require(c.family != ArchFamily::Bert, model.sourcePath,
                "the GPU forward pass runs decoders; BERT runs on the CPU", "use --device cpu");
        Transformer::checkSupported(model);
        m_activation = deviceActivation(cpu::parseActivation(c.activation, model.sourcePath));
        m_positionOffset = c.family == ArchFamily::Opt ? 2 : 0;
        LATHE_CUDA_CHECK(cudaSetDevice(options.device));
        LATHE_CUDA_CHECK(cudaGetDeviceProperties(&m_props, options.device));
        LATHE_CUDA_CHECK(cublasCreate(&m_cublas));
        // Pedantic fp32 for T = float (no TF32), so the fp32 path can be checked tightly against the CPU.
        LATHE_CUDA_CHECK(cublasSetMathMode(m_cublas, CUBLAS_DEFAULT_MATH));

        const EmbeddingWeights e = loadEmbeddingWeights(model);
        m_vocab = e.token.rows();
        m_embedWidth = e.token.cols();
        m_token = uploadFloats(e.token.data(), size_t(e.token.size()));
        if (e.position.size()) {
            m_position = uploadFloats(e.position.data(), size_t(e.position.size()));
            m_positions = e.position.rows();
        }
        const HeadWeights h = loadHeadWeights(model);
        m_finalNorm = uploadNorm(h.finalNorm);
        m_head = h.lmHead.present() ? uploadLinear(h.lmHead) : uploadLinear(LinearWeights{e.token, Vec()});

        // Resident when all blocks fit with room for the activations of a 2048-token pass; otherwise streamed.
        size_t freeBytes = 0, totalBytes = 0;
        LATHE_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
        const size_t blockBytes = estimateBlockBytes();
        const size_t reserve = activationBytes(2048) + (size_t(1) << 30);
        m_resident = options.allowResident && blockBytes * size_t(c.numLayers) + reserve < freeBytes;
        m_blocks.resize(size_t(c.numLayers));
        if (m_resident)
            for (int l = 0; l < int(c.numLayers); ++l)
                m_blocks[size_t(l)] = uploadBlock(loadBlockWeights(model, l));
    }

    ~CudaForward() override {
        if (m_cublas)
            cublasDestroy(m_cublas);
    }

    std::string describe() const override {
        const double gb = double(estimateBlockBytes()) * double(m_model.config.numLayers) / 1e9;
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s, %s, %s (%.1f GB of block weights)", m_props.name,
                      precisionName(m_options.precision), m_resident ? "weights resident" : "blocks streamed", gb);
        return buf;
    }

    Mat logits(const TokenBatch &batch) override {
        forwardToFinal(batch);
        const int64_t rows = batch.batch * batch.seq;
        Mat out(rows, m_vocab);
        for (int64_t r0 = 0; r0 < rows; r0 += kHeadRows) {
            const int64_t n = std::min(kHeadRows, rows - r0);
            headChunk(r0, n);
            LATHE_CUDA_CHECK(cudaMemcpy(out.data() + r0 * m_vocab, m_logits.as(), size_t(n * m_vocab) * sizeof(float),
                                        cudaMemcpyDeviceToHost));
        }
        return out;
    }

    double sumNextTokenNll(const TokenBatch &batch, int64_t *count) override {
        forwardToFinal(batch);
        const int64_t rows = batch.batch * batch.seq;
        // Target of row r: the next token of the same sequence; the last row of each sequence predicts nothing.
        std::vector<int32_t> targets(size_t(rows), 0);
        for (int64_t r = 0; r + 1 < rows; ++r)
            targets[size_t(r)] = batch.tokens[size_t(r + 1)];
        m_targets.ensure(size_t(rows) * sizeof(int32_t));
        LATHE_CUDA_CHECK(cudaMemcpy(m_targets.as(), targets.data(), targets.size() * sizeof(int32_t),
                                    cudaMemcpyHostToDevice));
        m_nll.ensure(size_t(kHeadRows) * sizeof(double));
        std::vector<double> nll(static_cast<size_t>(rows));
        for (int64_t r0 = 0; r0 < rows; r0 += kHeadRows) {
            const int64_t n = std::min(kHeadRows, rows - r0);
            headChunk(r0, n);
            nllKernel<<<unsigned(n), kRowThreads>>>(m_logits.as<float>(), m_vocab, m_targets.as<int32_t>() + r0,
                                                    m_nll.as<double>());
            LATHE_CUDA_CHECK(cudaGetLastError());
            LATHE_CUDA_CHECK(cudaMemcpy(nll.data() + r0, m_nll.as(), size_t(n) * sizeof(double), cudaMemcpyDeviceToHost));
        }
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r) {
            if ((r + 1) % batch.seq == 0)
                continue;
            if (!std::isfinite(nll[size_t(r)]))
                throw LatheError("the model produced non-finite logits on the GPU",
                                 "the weights may hold NaN or Inf values (lathe-cli inspect MODEL --scan), or fp16 "
                                 "overflowed: try --precision bf16 or fp32");
            sum += nll[size_t(r)];
        }
        if (count)
            *count = batch.batch * (batch.seq - 1);
        return sum;
    }

    void run(const TokenBatch &batch) override {
        forwardToFinal(batch);
        const int64_t rows = batch.batch * batch.seq;
        for (int64_t r0 = 0; r0 < rows; r0 += kHeadRows)
            headChunk(r0, std::min(kHeadRows, rows - r0));
        LATHE_CUDA_CHECK(cudaDeviceSynchronize());
    }

    double gemmPeakGflops(int64_t n) override {
        DeviceMemory a(size_t(n * n) * sizeof(T)), b(size_t(n * n) * sizeof(T)), c(size_t(n * n) * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemset(a.as(), 0, a.bytes()));
        LATHE_CUDA_CHECK(cudaMemset(b.as(), 0, b.bytes()));
        cudaEvent_t start, stop;
        LATHE_CUDA_CHECK(cudaEventCreate(&start));
        LATHE_CUDA_CHECK(cudaEventCreate(&stop));
        float best = 1e30f;
        for (int rep = 0; rep < 6; ++rep) {
            LATHE_CUDA_CHECK(cudaEventRecord(start));
            gemm(a.as(), b.as(), c.as<float>(), n, n, n);
            LATHE_CUDA_CHECK(cudaEventRecord(stop));
            LATHE_CUDA_CHECK(cudaEventSynchronize(stop));
            float ms = 0;
            LATHE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
            if (rep > 0) // the first call picks the algorithm
                best = std::min(best, ms);
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        return 2.0 * double(n) * double(n) * double(n) / (double(best) * 1e-3) / 1e9;
    }

private:
    static constexpr int64_t kHeadRows = 2048; // LM head rows per chunk: (2048 x vocab) fp32 logits at a time

    // y (rows x out, fp32) = x (rows x in, T) W^T (+ b). Row-major y = x W^T is column-major y^T = W x^T, with the
    // row-major (out x in) W read as the column-major (in x out) W^T.
    void linear(const void *x, const DeviceLinear &w, float *y, int64_t rows) {
        gemm(w.w.as(), x, y, w.out, rows, w.in);
        if (!w.b.empty()) {
            addBiasKernel<<<gridFor(rows * w.out), 256>>>(y, w.b.as<float>(), rows, w.out);
            LATHE_CUDA_CHECK(cudaGetLastError());
        }
    }
    // Column-major C (m x n, fp32) = A^T (m x k) B (k x n): A is (k x m) with lda = k, B (k x n) with ldb = k.
    void gemm(const void *a, const void *b, float *c, int64_t m, int64_t n, int64_t k) {
        const float one = 1.0f, zero = 0.0f;
        LATHE_CUDA_CHECK(cublasGemmEx(m_cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &one, a, cudaType<T>(),
                                      int(k), b, cudaType<T>(), int(k), &zero, c, CUDA_R_32F, int(m),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    // hidden (rows x in) <- hidden S^T for a fp32 shortcut S (out x in), through `scratch`; then swaps.
    void shortcut(const DeviceLinear &s, float *&hidden, float *&scratch, int64_t rows) {
        if (!s.present())
            return;
        const float one = 1.0f, zero = 0.0f;
        LATHE_CUDA_CHECK(cublasSgemm(m_cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.out), int(rows), int(s.in), &one,
                                     s.w.as<float>(), int(s.in), hidden, int(s.in), &zero, scratch, int(s.out)));
        std::swap(hidden, scratch);
    }

    DeviceNorm uploadNorm(const NormWeights &n) {
        DeviceNorm d;
        if (n.weight.size())
            d.w = uploadFloats(n.weight.data(), size_t(n.weight.size()));
        if (n.bias.size())
            d.b = uploadFloats(n.bias.data(), size_t(n.bias.size()));
        return d;
    }
    // fp32 host weights -> T on the device (through an fp32 staging buffer and a conversion kernel).
    DeviceLinear uploadLinear(const LinearWeights &w, bool keepFloat = false) {
        DeviceLinear d;
        if (!w.present())
            return d;
        d.out = w.w.rows();
        d.in = w.w.cols();
        const size_t n = size_t(w.w.size());
        DeviceMemory staging = uploadFloats(w.w.data(), n);
        if (keepFloat || std::is_same_v<T, float>) {
            d.w = std::move(staging);
        } else {
            d.w.resize(n * sizeof(T));
            convertKernel<T><<<gridFor(int64_t(n)), 256>>>(staging.as<float>(), int64_t(n), d.w.as<T>());
            LATHE_CUDA_CHECK(cudaGetLastError());
            LATHE_CUDA_CHECK(cudaDeviceSynchronize());
        }
        if (w.hasBias())
            d.b = uploadFloats(w.b.data(), size_t(w.b.size()));
        return d;
    }
    DeviceBlock uploadBlock(const BlockWeights &w) {
        DeviceBlock d;
        d.attnNorm = uploadNorm(w.attnNorm);
        d.mlpNorm = uploadNorm(w.mlpNorm);
        d.q = uploadLinear(w.q);
        d.k = uploadLinear(w.k);
        d.v = uploadLinear(w.v);
        d.o = uploadLinear(w.o);
        d.gate = uploadLinear(w.gate);
        d.up = uploadLinear(w.up);
        d.down = uploadLinear(w.down);
        if (w.attnShortcut.size())
            d.attnShortcut = uploadLinear(LinearWeights{w.attnShortcut, Vec()}, true);
        if (w.mlpShortcut.size())
            d.mlpShortcut = uploadLinear(LinearWeights{w.mlpShortcut, Vec()}, true);
        return d;
    }

    size_t estimateBlockBytes() const {
        const ModelConfig &c = m_model.config;
        const int64_t d = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
        const int64_t f = c.intermediateSize * (c.family == ArchFamily::Llama ? 3 : 2);
        return size_t(d * (2 * q + 2 * kv) + d * f) * sizeof(T);
    }
    size_t activationBytes(int64_t seq) const {
        const ModelConfig &c = m_model.config;
        const int64_t d = c.hiddenSize, q = c.numHeads * c.headDim, f = c.intermediateSize;
        const size_t perRow = size_t(8 * d + 4 * q + 3 * f) * sizeof(float);
        return perRow * size_t(seq) + size_t(c.numHeads * seq * seq) * (sizeof(float) + sizeof(T)) +
               size_t(kHeadRows * m_vocab) * sizeof(float);
    }

    // Work buffers for `rows` tokens in sequences of `seq`; grown, never shrunk.
    void ensureBuffers(int64_t rows, int64_t seq) {
        const ModelConfig &c = m_model.config;
        const size_t d = size_t(c.hiddenSize), q = size_t(c.numHeads * c.headDim), kv = size_t(c.numKvHeads * c.headDim),
                     f = size_t(c.intermediateSize), n = size_t(rows);
        m_hidden.ensure(n * d * sizeof(float));
        m_hiddenScratch.ensure(n * d * sizeof(float));
        m_normed.ensure(n * d * sizeof(T));
        m_q.ensure(n * q * sizeof(float));
        m_k.ensure(n * kv * sizeof(float));
        m_v.ensure(n * kv * sizeof(float));
        m_qT.ensure(n * q * sizeof(T));
        m_kT.ensure(n * kv * sizeof(T));
        m_vT.ensure(n * kv * sizeof(T));
        m_ctx.ensure(n * q * sizeof(T));
        m_attnOut.ensure(n * d * sizeof(float));
        m_up.ensure(n * f * sizeof(float));
        m_gate.ensure(n * f * sizeof(float));
        m_mid.ensure(n * f * sizeof(T));
        m_mlpOut.ensure(n * d * sizeof(float));
        m_scores.ensure(size_t(c.numHeads * seq * seq) * sizeof(float));
        m_probs.ensure(size_t(c.numHeads * seq * seq) * sizeof(T));
        m_logits.ensure(size_t(std::min(kHeadRows, rows) * m_vocab) * sizeof(float));
        m_ids.ensure(n * sizeof(int32_t));
        if (m_ropeRows < seq) {
            const cpu::RopeTable rope = ropeTableFor(c, seq, m_model.sourcePath);
            m_ropeHalf = rope.rotaryDim / 2;
            if (m_ropeHalf > 0) {
                m_ropeCos = uploadFloats(rope.cos.data(), size_t(rope.cos.size()));
                m_ropeSin = uploadFloats(rope.sin.data(), size_t(rope.sin.size()));
            }
            m_ropeRows = seq;
        }
    }

    void norm(const float *x, int64_t rows, int64_t width, const DeviceNorm &n, T *y) {
        const ModelConfig &c = m_model.config;
        const bool sliced = c.slicing.active();
        const bool layerNorm = !sliced && c.family != ArchFamily::Llama;
        const float divisor = sliced ? float(c.slicing.normDivisor) : float(width);
        normKernel<T><<<unsigned(rows), kRowThreads>>>(x, width, layerNorm, divisor, float(c.normEps),
                                                        n.w.empty() ? nullptr : n.w.template as<float>(),
                                                        n.b.empty() ? nullptr : n.b.template as<float>(), y);
        LATHE_CUDA_CHECK(cudaGetLastError());
    }

    // Scaled dot-product attention of every sequence: m_qT, m_kT, m_vT (T) -> m_ctx (T, rows x heads*headDim).
    void attention(int64_t batches, int64_t seq) {
        const ModelConfig &c = m_model.config;
        const int64_t d = c.headDim, H = c.numHeads, KVH = c.numKvHeads, group = H / KVH;
        const float scale = float(1.0 / std::sqrt(double(d))), one = 1.0f, zero = 0.0f;
        const cudaDataType_t t = cudaType<T>();
        for (int64_t b = 0; b < batches; ++b) {
            const T *q = m_qT.as<T>() + b * seq * H * d;
            const T *k = m_kT.as<T>() + b * seq * KVH * d;
            const T *v = m_vT.as<T>() + b * seq * KVH * d;
            T *ctx = m_ctx.as<T>() + b * seq * H * d;
            // Head h = kvh * group + g reads kv head kvh. For a fixed g, consecutive kv heads step the query
            // pointer by group*d, the key pointer by d and the score block by group*seq*seq.
            for (int64_t g = 0; g < group; ++g) {
                // scores[h][i][j] = scale * q_i . k_j: column-major (keys x queries) = K^T-op(K) x Q.
                LATHE_CUDA_CHECK(cublasGemmStridedBatchedEx(
                    m_cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(seq), int(seq), int(d), &scale, k, t, int(KVH * d), d,
                    q + g * d, t, int(H * d), group * d, &zero, m_scores.as<float>() + g * seq * seq, CUDA_R_32F,
                    int(seq), group * seq * seq, int(KVH), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            }
            softmaxKernel<T><<<unsigned(H * seq), kRowThreads>>>(m_scores.as<float>(), seq, true, m_probs.as<T>());
            LATHE_CUDA_CHECK(cudaGetLastError());
            for (int64_t g = 0; g < group; ++g) {
                // ctx[i][h*d + e] = sum_j P[h][i][j] v[j][kvh*d + e]: column-major (d x queries) = V x P^T-view.
                LATHE_CUDA_CHECK(cublasGemmStridedBatchedEx(
                    m_cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(d), int(seq), int(seq), &one, v, t, int(KVH * d), d,
                    m_probs.as<T>() + g * seq * seq, t, int(seq), group * seq * seq, &zero, ctx + g * d, t, int(H * d),
                    group * d, int(KVH), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            }
        }
    }

    void runBlock(const DeviceBlock &w, float *&hidden, float *&scratch, int64_t batches, int64_t seq) {
        const ModelConfig &c = m_model.config;
        const int64_t rows = batches * seq;
        const bool phi = c.family == ArchFamily::Phi;
        const int64_t inWidth = w.q.in;
        T *normed = m_normed.as<T>();
        norm(hidden, rows, inWidth, w.attnNorm, normed);
        linear(normed, w.q, m_q.as<float>(), rows);
        linear(normed, w.k, m_k.as<float>(), rows);
        linear(normed, w.v, m_v.as<float>(), rows);
        const float *cosT = m_ropeHalf ? m_ropeCos.as<float>() : nullptr;
        const float *sinT = m_ropeHalf ? m_ropeSin.as<float>() : nullptr;
        ropeConvertKernel<T><<<unsigned(rows), kRowThreads>>>(m_q.as<float>(), int(c.numHeads), int(c.headDim), seq,
                                                               cosT, sinT, m_ropeHalf, m_qT.as<T>());
        ropeConvertKernel<T><<<unsigned(rows), kRowThreads>>>(m_k.as<float>(), int(c.numKvHeads), int(c.headDim), seq,
                                                               cosT, sinT, m_ropeHalf, m_kT.as<T>());
        const int64_t kvElems = rows * c.numKvHeads * c.headDim;
        convertKernel<T><<<gridFor(kvElems), 256>>>(m_v.as<float>(), kvElems, m_vT.as<T>());
        LATHE_CUDA_CHECK(cudaGetLastError());
        attention(batches, seq);
        float *attnOut = m_attnOut.as<float>();
        linear(m_ctx.as(), w.o, attnOut, rows);

        const T *mlpIn = normed;
        if (!phi) {
            shortcut(w.attnShortcut, hidden, scratch, rows);
            residualKernel<<<gridFor(rows * w.o.out), 256>>>(hidden, attnOut, nullptr, rows * w.o.out);
            LATHE_CUDA_CHECK(cudaGetLastError());
            norm(hidden, rows, w.o.out, w.mlpNorm, normed);
        }
        float *up = m_up.as<float>();
        linear(mlpIn, w.up, up, rows);
        const int64_t midElems = rows * w.up.out;
        if (w.gate.present())
            linear(mlpIn, w.gate, m_gate.as<float>(), rows);
        activationKernel<T><<<gridFor(midElems), 256>>>(m_activation, up, w.gate.present() ? m_gate.as<float>() : nullptr,
                                                        midElems, m_mid.as<T>());
        LATHE_CUDA_CHECK(cudaGetLastError());
        float *out = m_mlpOut.as<float>();
        linear(m_mid.as(), w.down, out, rows);
        shortcut(phi ? w.attnShortcut : w.mlpShortcut, hidden, scratch, rows);
        residualKernel<<<gridFor(rows * w.down.out), 256>>>(hidden, out, phi ? attnOut : nullptr, rows * w.down.out);
        LATHE_CUDA_CHECK(cudaGetLastError());
    }

    // Embedding and every block; leaves the final-norm output (T) in m_normed and its width in m_finalWidth.
    void forwardToFinal(const TokenBatch &batch) {
        const ModelConfig &c = m_model.config;
        require(batch.batch > 0 && batch.seq > 0 && int64_t(batch.tokens.size()) == batch.batch * batch.seq,
                m_model.sourcePath, "the token batch is empty or its size does not match batch x seq");
        const int64_t maxSeq = m_positions ? m_positions - m_positionOffset : c.maxPositions;
        if (maxSeq > 0 && batch.seq > maxSeq)
            throw LatheError("sequence length " + std::to_string(batch.seq) + " is above the model's maximum of " +
                                 std::to_string(maxSeq) + " positions",
                             "use a shorter --seq-len");
        for (int32_t id : batch.tokens)
            if (id < 0 || id >= m_vocab)
                throw LatheError("token id " + std::to_string(id) + " is outside the vocabulary (" +
                                     std::to_string(m_vocab) + " tokens)",
                                 "the tokenizer does not match this model");
        const int64_t rows = batch.batch * batch.seq;
        ensureBuffers(rows, batch.seq);
        LATHE_CUDA_CHECK(cudaMemcpy(m_ids.as(), batch.tokens.data(), size_t(rows) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice));
        float *hidden = m_hidden.as<float>(), *scratch = m_hiddenScratch.as<float>();
        embedKernel<<<unsigned(rows), kRowThreads>>>(m_ids.as<int32_t>(), m_token.as<float>(),
                                                     m_position.empty() ? nullptr : m_position.as<float>(), batch.seq,
                                                     m_positionOffset, m_embedWidth, hidden);
        LATHE_CUDA_CHECK(cudaGetLastError());
        int64_t width = m_embedWidth;
        for (int l = 0; l < int(c.numLayers); ++l) {
            std::optional<DeviceBlock> streamed;
            if (!m_resident)
                streamed = uploadBlock(loadBlockWeights(m_model, l));
            const DeviceBlock &w = m_resident ? m_blocks[size_t(l)] : *streamed;
            runBlock(w, hidden, scratch, batch.batch, batch.seq);
            width = w.down.out;
            if (streamed)
                LATHE_CUDA_CHECK(cudaDeviceSynchronize()); // before the streamed weights are freed
        }
        norm(hidden, rows, width, m_finalNorm, m_normed.as<T>());
        m_finalWidth = width;
    }

    // Logits of final rows [r0, r0 + n) into m_logits.
    void headChunk(int64_t r0, int64_t n) { linear(m_normed.as<T>() + r0 * m_finalWidth, m_head, m_logits.as<float>(), n); }

    const Model &m_model;
    DeviceForwardOptions m_options;
    cudaDeviceProp m_props{};
    cublasHandle_t m_cublas = nullptr;
    DeviceActivation m_activation = DeviceActivation::Silu;
    int m_positionOffset = 0;
    int64_t m_vocab = 0, m_embedWidth = 0, m_positions = 0, m_finalWidth = 0;
    DeviceMemory m_token, m_position;
    DeviceNorm m_finalNorm;
    DeviceLinear m_head;
    bool m_resident = true;
    std::vector<DeviceBlock> m_blocks;
    int64_t m_ropeRows = 0;
    int m_ropeHalf = 0;
    DeviceMemory m_ropeCos, m_ropeSin;
    DeviceMemory m_hidden, m_hiddenScratch, m_normed, m_q, m_k, m_v, m_qT, m_kT, m_vT, m_ctx, m_attnOut, m_up, m_gate,
        m_mid, m_mlpOut, m_scores, m_probs, m_logits, m_ids, m_targets, m_nll;
};

std::unique_ptr<DeviceForward> makeCudaForward(const Model &model, const DeviceForwardOptions &options) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        throw LatheError(std::string("no usable CUDA device: ") +
                             (e != cudaSuccess ? cudaGetErrorString(e) : "none present"),
                         "run with --device cpu");
    }
    require(options.device >= 0 && options.device < count, "cuda", "there is no CUDA device " + std::to_string(options.device));
    switch (options.precision) {
    case ComputePrecision::Fp32: return std::make_unique<CudaForward<float>>(model, options);
    case ComputePrecision::Bf16: return std::make_unique<CudaForward<__nv_bfloat16>>(model, options);
    case ComputePrecision::Fp16: return std::make_unique<CudaForward<__half>>(model, options);
    }
    return nullptr;
}

} // namespace

void registerCudaForward() { setDeviceForwardFactory(&makeCudaForward); }

} // namespace lathe::gpu
