// The training ops' attention (gpu/trainops.h): grouped-query attention's forward and backward over whole score
// blocks per head, batched cuBLAS products through device arrays of pointers.

#include "trainopskernels.cuh"

#include "base/error.h"

#include <algorithm>
#include <cmath>

namespace lathe::gpu {

namespace {

// ---- attention rows: one block per (head, query) row of seq scores (the forward's softmax is the inference
// pass's softmaxKernel, in place) ----

// dS = P (dP - rowsum(dP P)) scale into ds (in place over dP in fp32; a bf16 copy with bf16 products); zero above
// the diagonal.
template <class P, class G>
__global__ void softmaxBackwardKernel(const P *p, const float *dp, G *ds, int64_t seq, bool causal, float scale) {
    const int64_t row = blockIdx.x, i = row % seq;
    const int64_t keys = causal ? i + 1 : seq;
    const P *pr = p + row * seq;
    const float *gr = dp + row * seq;
    G *out = ds + row * seq;
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < keys; j += blockDim.x)
        dot += gr[j] * toFloat(pr[j]);
    dot = blockReduce(dot, false);
    for (int64_t j = threadIdx.x; j < seq; j += blockDim.x)
        out[j] = fromFloat<G>(j < keys ? toFloat(pr[j]) * (gr[j] - dot) * scale : 0.0f);
}
} // namespace

// ---- attention ----
//
// Whole (seq x seq) score matrices per head (the causal half above the diagonal is computed and zeroed: products
// per query tile that skip it, measured on an H200, did not change the step time, which the softmax's passes over
// the squares and the launches set), for as many sequences at a time as train::attentionSequencesPerCall allows.
// The products run in the object's precision: pedantic fp32, or bf16 copies of q, k, v and the output gradient with
// fp32 accumulation. Scores and the softmax (and its backward) are fp32; with bf16 products the softmax rounds the
// probabilities once into the saved buffer, which holds them in bf16 (half its floats), and the backward writes
// the score gradient straight into its bf16 operand.
// Each product is one batched cuBLAS call over every (sequence, head) pair of the chunk, through device arrays of
// pointers (headGemm): one launch where a loop over sequences and group positions took 3 B. cuBLAS sees row-major
// (seq x width) activations as column-major (width x seq): a head's slice is a (d x seq) matrix with leading
// dimension width, and a row-major (queries x keys) score block is a column-major (keys x queries) one. Head h
// reads key/value group h / (heads / kvHeads).

namespace {

// Where entry i = s * perSeq + j of a batched product finds an operand: base + s * seqStride + (j / div) *
// headStride elements of `elementBytes` each.
struct HeadSpan {
    const char *base;
    int64_t seqStride, headStride, div, elementBytes;
};

__global__ void headPointersKernel(HeadSpan a, HeadSpan b, HeadSpan c, int64_t perSeq, int64_t count, void **out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count)
        return;
    const int64_t s = i / perSeq, j = i % perSeq;
    const HeadSpan spans[3] = {a, b, c};
    for (int x = 0; x < 3; ++x)
        out[x * count + i] = const_cast<char *>(spans[x].base) +
                             (s * spans[x].seqStride + (j / spans[x].div) * spans[x].headStride) * spans[x].elementBytes;
}

} // namespace

// Column-major C = alpha op(A) op(B) + beta C for every (sequence, head) entry of seqs x perSeq, the operands'
// addresses from their HeadSpans (A and B of the object's precision, C fp32).
void TrainOps::headGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const Operand &a,
                        int64_t aOffset, int64_t aSeq, int64_t aHead, int64_t aDiv, int64_t lda, const Operand &b,
                        int64_t bOffset, int64_t bSeq, int64_t bHead, int64_t bDiv, int64_t ldb, float beta, float *c,
                        int64_t cSeq, int64_t cHead, int64_t ldc, int64_t seqs, int64_t perSeq) {
    const int64_t count = seqs * perSeq;
    m_pointers.ensure(size_t(3 * count) * sizeof(void *));
    void **ptrs = m_pointers.as<void *>();
    const HeadSpan A{static_cast<const char *>(a.at(aOffset)), aSeq, aHead, aDiv, int64_t(a.elementBytes)},
        B{static_cast<const char *>(b.at(bOffset)), bSeq, bHead, bDiv, int64_t(b.elementBytes)},
        C{reinterpret_cast<const char *>(c), cSeq, cHead, 1, int64_t(sizeof(float))};
    headPointersKernel<<<blocksFor(count), kThreads>>>(A, B, C, perSeq, count, ptrs);
    checkLaunch();
    const cudaDataType_t type = m_precision == ComputePrecision::Fp32 ? CUDA_R_32F : CUDA_R_16BF;
    LATHE_CUDA_CHECK(cublasGemmBatchedEx(m_blas, transA ? CUBLAS_OP_T : CUBLAS_OP_N, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         int(m), int(n), int(k), &alpha, ptrs, type, int(lda), ptrs + count, type,
                                         int(ldb), &beta, ptrs + 2 * count,
                                         CUDA_R_32F, int(ldc), int(count), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void TrainOps::attentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d,
                                float *ctx, float *probs) {
    if (m_store == train::AttentionStore::LogSumExp)
        return fusedAttentionForward(q, k, v, d, ctx, probs);
    const Timed timed(*this, __func__);
    const int64_t S = d.seq, D = d.headDim, H = d.heads, KVH = d.kvHeads, group = H / KVH;
    const int64_t qw = H * D, kw = KVH * D, rows = d.batch * S, SS = S * S;
    assert(H % KVH == 0);
    if (!rows)
        return;
    const Operand Q = operand(q, rows * qw, m_attnA), K = operand(k, rows * kw, m_attnB),
                  V = operand(v, rows * kw, m_attnC);
    const int64_t chunk = train::attentionSequencesPerCall(d.batch, d.heads, d.seq);
    const bool bf16 = m_precision != ComputePrecision::Fp32;
    if (bf16)
        m_dP.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(float));
    for (int64_t b0 = 0; b0 < d.batch; b0 += chunk) {
        const int64_t n = std::min(chunk, d.batch - b0);
        // fp32: the scores and then the probabilities in place in `probs`; bf16: the scores in scratch, the
        // probabilities rounded once into `probs` (bf16), which the products and the backward read.
        float *scores = bf16 ? m_dP.as<float>() : probs + b0 * H * SS;
        // P[h][i][j] = scale q_i . k_j: column-major (keys x queries) = K^T Q.
        headGemm(true, false, S, S, D, float(d.scale), K, b0 * S * kw, S * kw, D, group, kw, Q, b0 * S * qw, S * qw,
                 D, 1, qw, 0.0f, scores, H * SS, SS, S, n, H);
        Operand P{scores, sizeof(float)};
        if (bf16) {
            __nv_bfloat16 *pb = reinterpret_cast<__nv_bfloat16 *>(probs) + b0 * H * SS;
            softmaxKernel<__nv_bfloat16><<<unsigned(n * H * S), kRowThreads>>>(scores, S, S, 0, d.causal, pb);
            P = {pb, sizeof(__nv_bfloat16)};
        } else {
            softmaxKernel<float><<<unsigned(n * H * S), kRowThreads>>>(scores, S, S, 0, d.causal, scores);
        }
        checkLaunch();
        // ctx_i = sum_j P[i][j] v_j: column-major (d x queries) = V (d x keys) P (keys x queries).
        headGemm(false, false, D, S, S, 1.0f, V, b0 * S * kw, S * kw, D, group, kw, P, 0, H * SS, SS, 1, S, 0.0f,
                 ctx + b0 * S * qw, S * qw, D, qw, n, H);
    }
}

// dP = dO V^T; dS = P (dP - rowsum(dP P)) scale; dQ += dS K; dK += dS^T Q; dV += P^T dO. The group's heads add into
// their shared dK and dV one position g after another (one batched call each), so the sum's order is fixed.
void TrainOps::attentionBackward(const float *dctx, const float *q, const float *k, const float *v, const float *ctx,
                                 const train::AttentionDims &d, const float *probs, float *dq, float *dk, float *dv) {
    if (m_store == train::AttentionStore::LogSumExp)
        return fusedAttentionBackward(dctx, q, k, v, ctx, d, probs, dq, dk, dv);
    const Timed timed(*this, __func__);
    const int64_t S = d.seq, D = d.headDim, H = d.heads, KVH = d.kvHeads, group = H / KVH;
    const int64_t qw = H * D, kw = KVH * D, rows = d.batch * S, SS = S * S;
    if (!rows)
        return;
    const int64_t chunk = train::attentionSequencesPerCall(d.batch, d.heads, d.seq);
    m_dP.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(float));
    float *dS = m_dP.as<float>();
    const Operand Q = operand(q, rows * qw, m_attnA), K = operand(k, rows * kw, m_attnB),
                  V = operand(v, rows * kw, m_attnC), O = operand(dctx, rows * qw, m_attnE);
    const bool bf16 = m_precision != ComputePrecision::Fp32;
    if (bf16)
        m_attnD.ensure(size_t(std::min(chunk, d.batch) * H * SS) * sizeof(__nv_bfloat16));
    for (int64_t b0 = 0; b0 < d.batch; b0 += chunk) {
        const int64_t n = std::min(chunk, d.batch - b0);
        // dP[i][j] = dO_i . v_j: column-major (keys x queries) = V^T dO.
        headGemm(true, false, S, S, D, 1.0f, V, b0 * S * kw, S * kw, D, group, kw, O, b0 * S * qw, S * qw, D, 1, qw,
                 0.0f, dS, H * SS, SS, S, n, H);
        // dS from the saved probabilities: in place in fp32; with bf16 products straight into the bf16 operand.
        Operand dSo{dS, sizeof(float)}, P{probs + b0 * H * SS, sizeof(float)};
        if (bf16) {
            const __nv_bfloat16 *pb = reinterpret_cast<const __nv_bfloat16 *>(probs) + b0 * H * SS;
            softmaxBackwardKernel<<<unsigned(n * H * S), kRowThreads>>>(pb, dS, m_attnD.as<__nv_bfloat16>(), S,
                                                                        d.causal, float(d.scale));
            dSo = {m_attnD.as(), sizeof(__nv_bfloat16)};
            P = {pb, sizeof(__nv_bfloat16)};
        } else {
            softmaxBackwardKernel<<<unsigned(n * H * S), kRowThreads>>>(probs + b0 * H * SS, dS, dS, S, d.causal,
                                                                        float(d.scale));
        }
        checkLaunch();
        // dq_i += sum_j dS[i][j] k_j: column-major (d x queries) += K (d x keys) dS (keys x queries).
        headGemm(false, false, D, S, S, 1.0f, K, b0 * S * kw, S * kw, D, group, kw, dSo, 0, H * SS, SS, 1, S, 1.0f,
                 dq + b0 * S * qw, S * qw, D, qw, n, H);
        for (int64_t g = 0; g < group; ++g) {
            // dk_j += sum_i dS[i][j] q_i: column-major (d x keys) += Q (d x queries) dS^T (queries x keys), for the
            // heads kvh * group + g.
            headGemm(false, true, D, S, S, 1.0f, Q, b0 * S * qw + g * D, S * qw, group * D, 1, qw, dSo, g * SS,
                     H * SS, group * SS, 1, S, 1.0f, dk + b0 * S * kw, S * kw, D, kw, n, KVH);
            // dv_j += sum_i P[i][j] dO_i.
            headGemm(false, true, D, S, S, 1.0f, O, b0 * S * qw + g * D, S * qw, group * D, 1, qw, P, g * SS, H * SS,
                     group * SS, 1, S, 1.0f, dv + b0 * S * kw, S * kw, D, kw, n, KVH);
        }
    }
}

} // namespace lathe::gpu
