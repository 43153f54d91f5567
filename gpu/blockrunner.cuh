#pragma once

// The per-block machinery of the GPU engine, shared by the forward pass (cudaforward.cu) and SliceGPT
// (cudaslicegpt.cu): weights uploaded in the compute type T, cuBLAS linears, the kernels of forwardkernels.cuh and
// cuBLAS attention, on row-major (batch*seq x width) activations as in core/transformer.cpp. Only included by .cu
// files in gpu/.

#include "cudacheck.h"
#include "devicememory.h"
#include "forwardkernels.cuh"

#include "base/error.h"
#include "engine/blockops.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "model/layerweights.h"
#include "model/model.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace lathe::gpu {

template <typename T> constexpr cudaDataType_t cudaType();
template <> constexpr cudaDataType_t cudaType<float>() { return CUDA_R_32F; }
template <> constexpr cudaDataType_t cudaType<__nv_bfloat16>() { return CUDA_R_16BF; }
template <> constexpr cudaDataType_t cudaType<__half>() { return CUDA_R_16F; }

inline DeviceActivation deviceActivation(cpu::Activation a) {
    switch (a) {
    case cpu::Activation::Silu: return DeviceActivation::Silu;
    case cpu::Activation::Relu: return DeviceActivation::Relu;
    case cpu::Activation::GeluTanh: return DeviceActivation::GeluTanh;
    case cpu::Activation::GeluErf: return DeviceActivation::GeluErf;
    }
    return DeviceActivation::Silu;
}

inline DeviceMemory uploadFloats(const float *host, size_t n) {
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

// Runs the blocks of one model on the device. Owns the work buffers (grown to the largest pass seen); the cuBLAS
// handle belongs to the caller. Not thread-safe.
template <typename T> class BlockRunner {
public:
    BlockRunner(const Model &model, cublasHandle_t cublas, int64_t vocabRows)
        : m_model(model), m_cublas(cublas), m_vocabRows(vocabRows) {
        m_activation = deviceActivation(cpu::parseActivation(model.config.activation, model.sourcePath));
    }

    float *hidden() const { return m_hidden.as<float>(); }
    float *hiddenScratch() const { return m_hiddenScratch.as<float>(); }
    T *normed() const { return m_normed.as<T>(); }
    float *logits() const { return m_logits.as<float>(); }
    static constexpr int64_t kHeadRows = kDeviceHeadRows; // LM head rows per chunk (engine/deviceforward.h)

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

    // The compute type, for core's formulas.
    static constexpr ComputePrecision kPrecision = std::is_same_v<T, float>    ? ComputePrecision::Fp32
                                                   : std::is_same_v<T, __half> ? ComputePrecision::Fp16
                                                                               : ComputePrecision::Bf16;
    // The blocks' weights as uploadBlock places them on the device, by core's formula (engine/deviceforward.h):
    // each block's own widths, norms, biases and a sliced model's shortcut matrices counted.
    DeviceBlockWeights blockWeights() const { return deviceBlockWeights(m_model, kPrecision); }
    // Work buffers of a pass over `rows` tokens in sequences of `seq` (and LM-head chunks when logits are made):
    // ensureBuffers's, by core's formula (engine/deviceforward.h), which the preflight uses too.
    size_t activationBytes(int64_t rows, int64_t seq) const {
        return size_t(deviceForwardActivationBytes(m_model.config, m_vocabRows, rows, seq, sizeof(T)));
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
        if (m_vocabRows > 0)
            m_logits.ensure(size_t(std::min(kHeadRows, rows) * m_vocabRows) * sizeof(float));
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
                                                        n.b.empty() ? nullptr : n.b.template as<float>(), y, nullptr,
                                                        nullptr);
        LATHE_CUDA_CHECK(cudaGetLastError());
    }

    // Scaled dot-product attention of every sequence: m_qT, m_kT, m_vT (T) -> m_ctx (T, rows x heads*headDim).
    // Causal attention in query blocks of this many rows: block [q0, q0 + n) only needs keys [0, q0 + n), which
    // skips nearly half of the score matrix (its GEMM work and its memory traffic) at long sequences. The
    // environment variable LATHE_GPU_ATTENTION=full computes whole score matrices instead (one block), the simplest
    // form, for checking the blocked one against.
    static int64_t queryBlock(int64_t seq) {
        static const bool full = [] {
            const char *v = std::getenv("LATHE_GPU_ATTENTION");
            return v && std::string(v) == "full";
        }();
        return full ? seq : std::min<int64_t>(seq, 256);
    }

    void attention(int64_t batches, int64_t seq) {
        const ModelConfig &c = m_model.config;
        const int64_t d = c.headDim, H = c.numHeads, KVH = c.numKvHeads, group = H / KVH;
        const float scale = float(1.0 / std::sqrt(double(d))), one = 1.0f, zero = 0.0f;
        const cudaDataType_t t = cudaType<T>();
        const int64_t block = queryBlock(seq);
        for (int64_t b = 0; b < batches; ++b) {
            const T *k = m_kT.as<T>() + b * seq * KVH * d;
            const T *v = m_vT.as<T>() + b * seq * KVH * d;
            for (int64_t q0 = 0; q0 < seq; q0 += block) {
                const int64_t nq = std::min(block, seq - q0), keys = q0 + nq; // queries [q0, q0+nq), keys [0, keys)
                const T *q = m_qT.as<T>() + (b * seq + q0) * H * d;
                T *ctx = m_ctx.as<T>() + (b * seq + q0) * H * d;
                float *scores = m_scores.as<float>();
                T *probs = m_probs.as<T>();
                // Head h = kvh * group + g reads kv head kvh. For a fixed g, consecutive kv heads step the query
                // pointer by group*d, the key pointer by d and the (nq x keys) score block by group*nq*keys.
                for (int64_t g = 0; g < group; ++g) {
                    // scores[h][i][j] = scale * q_i . k_j: column-major (keys x queries) = K^T-op(K) x Q.
                    LATHE_CUDA_CHECK(cublasGemmStridedBatchedEx(
                        m_cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(keys), int(nq), int(d), &scale, k, t, int(KVH * d), d,
                        q + g * d, t, int(H * d), group * d, &zero, scores + g * nq * keys, CUDA_R_32F, int(keys),
                        group * nq * keys, int(KVH), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                }
                softmaxKernel<T><<<unsigned(H * nq), kRowThreads>>>(scores, keys, nq, q0, true, probs);
                LATHE_CUDA_CHECK(cudaGetLastError());
                for (int64_t g = 0; g < group; ++g) {
                    // ctx[i][h*d + e] = sum_j P[h][i][j] v[j][kvh*d + e]: column-major (d x queries) = V x P^T-view.
                    LATHE_CUDA_CHECK(cublasGemmStridedBatchedEx(
                        m_cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(d), int(nq), int(keys), &one, v, t, int(KVH * d), d,
                        probs + g * nq * keys, t, int(keys), group * nq * keys, &zero, ctx + g * d, t, int(H * d),
                        group * d, int(KVH), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                }
            }
        }
    }

    // One block on `hidden` (rows = batches*seq, width w.q.in); `hidden` and `scratch` are rows x hiddenSize fp32
    // buffers that shortcut matrices swap. `part` (sequential blocks) splits the block as Transformer::runBlock
    // does: Attention returns once the attention sub-layer has been added, `hidden` holding the residual entering
    // the MLP; Mlp starts from that residual (width w.up.in).
    void runBlock(const DeviceBlock &w, float *&hidden, float *&scratch, int64_t batches, int64_t seq,
                  BlockPart part = BlockPart::Whole) {
        const ModelConfig &c = m_model.config;
        const int64_t rows = batches * seq;
        const bool phi = c.family == ArchFamily::Phi;
        T *normed = m_normed.as<T>();
        float *attnOut = m_attnOut.as<float>();
        if (part != BlockPart::Mlp)
            attentionPart(w, hidden, scratch, batches, seq, phi);
        if (part == BlockPart::Attention)
            return;
        if (!phi) // sequential blocks, whole or the MLP half: the MLP norm of the residual
            norm(hidden, rows, w.up.in, w.mlpNorm, normed);
        runMlp(w, normed, hidden, scratch, rows, phi ? attnOut : nullptr, phi ? w.attnShortcut : w.mlpShortcut);
    }

private:
    // The attention sub-layer. Sequential blocks: `hidden` becomes the residual entering the MLP. Phi-2: `hidden`
    // is unchanged and `normed` (the one norm's output) feeds the MLP too.
    void attentionPart(const DeviceBlock &w, float *&hidden, float *&scratch, int64_t batches, int64_t seq,
                       bool phi) {
        const ModelConfig &c = m_model.config;
        const int64_t rows = batches * seq;
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
        if (!phi) {
            shortcut(w.attnShortcut, hidden, scratch, rows);
            residualKernel<<<gridFor(rows * w.o.out), 256>>>(hidden, attnOut, nullptr, rows * w.o.out);
            LATHE_CUDA_CHECK(cudaGetLastError());
        }
    }

    // The MLP on `mlpIn`, added to the residual `hidden` (carried across by `residualShortcut`), with Phi-2's
    // attention output `attnOut` added too.
    void runMlp(const DeviceBlock &w, const T *mlpIn, float *&hidden, float *&scratch, int64_t rows,
                const float *attnOut, const DeviceLinear &residualShortcut) {
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
        shortcut(residualShortcut, hidden, scratch, rows);
        residualKernel<<<gridFor(rows * w.down.out), 256>>>(hidden, out, attnOut, rows * w.down.out);
        LATHE_CUDA_CHECK(cudaGetLastError());
    }

    const Model &m_model;
    cublasHandle_t m_cublas;
    int64_t m_vocabRows;
    DeviceActivation m_activation = DeviceActivation::Silu;
    int64_t m_ropeRows = 0;
    int m_ropeHalf = 0;
    DeviceMemory m_ropeCos, m_ropeSin;
    DeviceMemory m_hidden, m_hiddenScratch, m_normed, m_q, m_k, m_v, m_qT, m_kT, m_vT, m_ctx, m_attnOut, m_up, m_gate,
        m_mid, m_mlpOut, m_scores, m_probs, m_logits;
};

} // namespace lathe::gpu
