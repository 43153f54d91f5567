#pragma once

// The training engine's operations on the GPU (issue 17 item 9): the same ops as core/train/ops.h, each forward
// beside its backward, on device buffers in the same row-major layouts (one row per token, the sequences of a batch
// stacked: row = b * seq + t) and with the same contracts: a forward saves what its backward needs (norm statistics,
// attention probabilities, the per-row log-sum-exp of the LM head), and a backward ACCUMULATES into the gradients it
// is given (dx += ..., dw += ...), so callers zero gradients once per step. core/train/ops.h is the reference:
// gpu/trainopscheck.cpp compares every op here with it (`lathe-cli check-gpu`, tolerances there).
//
// Precision: parameters, gradients, optimizer state and activations are fp32 (the master copy). The linears, the
// LM head and the attention's products multiply in the precision chosen at construction: pedantic fp32 (no TF32:
// checkable against the CPU to rounding), or bf16 operands rounded from the fp32 buffers on the fly with fp32
// accumulation and fp32 results (tensor cores). Norms, softmax, the loss and the optimizer stay fp32.
//
// Sums over rows (norm weight and bias gradients, embedding gradients) use a fixed order, so a step's bits do not
// depend on scheduling: no atomics. Everything runs on the default stream of the calling thread's current device
// (GpuContext::activate). Not thread-safe: an object owns its scratch buffers. Only the gpu/ target includes this.

#include "devicememory.h"

#include "engine/deviceforward.h"
#include "numeric/cpukernels.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/ops.h"

#include <cublas_v2.h>

#include <cstdint>
#include <vector>

namespace lathe::gpu {

class TrainOps {
public:
    // precision: Fp32 or Bf16 products (LatheError for Fp16). store: what the attention saves for its backward
    // (train::AttentionStore): the probabilities, or each row's log-sum-exp with the fused kernels of
    // trainflashkernels.cuh (LatheError unless train::fusedAttentionRuns for the precision; the head width is
    // checked by each call).
    TrainOps(cublasHandle_t blas, ComputePrecision precision,
             train::AttentionStore store = train::AttentionStore::Probabilities);
    ComputePrecision precision() const { return m_precision; }
    train::AttentionStore attentionStore() const { return m_store; }

    // ---- embedding: y[r] = table[ids[r]] (ids on the host, checked against `vocab` there) ----
    void embeddingForward(const float *table, int64_t vocab, int64_t width, const std::vector<int32_t> &ids, float *y);
    // dtable[ids[r]] += dy[r]: rows grouped by id on the host, each id's rows summed in row order by one thread
    // block (no atomics).
    void embeddingBackward(const float *dy, const std::vector<int32_t> &ids, int64_t width, float *dtable);

    // ---- norms (rstd, mean: one float per row, saved by the forward) ----
    void rmsNormForward(const float *x, const float *w, int64_t rows, int64_t width, float eps, float *y, float *rstd);
    // dx += ...; dw += ... when dw is not null.
    void rmsNormBackward(const float *dy, const float *x, const float *w, const float *rstd, int64_t rows,
                         int64_t width, float *dx, float *dw);
    void layerNormForward(const float *x, const float *w, const float *b, int64_t rows, int64_t width, float eps,
                          float *y, float *mean, float *rstd);
    void layerNormBackward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t rows, int64_t width, float *dx, float *dw, float *db);

    // ---- products: row-major C (m x n) = alpha op(A) op(B) + beta C, in the object's precision ----
    void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

    // ---- linear: y = x W^T + b (W: out x in; b may be null) ----
    void linearForward(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out,
                       float *y);
    // dx += dy W; dW += dy^T x; db += column sums of dy; each skipped when null.
    void linearBackward(const float *dy, const float *x, const float *w, int64_t rows, int64_t in, int64_t out,
                        float *dx, float *dw, float *db);

    // ---- RoPE, rotate-half, on the first rotaryDim dimensions of every head, in place ----
    // cos, sin: (positions x rotaryDim/2) on the device, row p for position p = row % seq.
    void ropeForward(float *x, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim, const float *cos,
                     const float *sin);
    void ropeBackward(float *dx, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim, const float *cos,
                      const float *sin);

    // ---- attention with grouped KV heads ----
    // q: (rows x heads*headDim), k, v: (rows x kvHeads*headDim) -> ctx (rows x heads*headDim). `probs` receives what
    // the backward reads (train::attentionSavedFloats floats): with the Probabilities store the probabilities,
    // [batch][head][query][key] (zero above the diagonal when causal), floats with fp32 products, bf16 values (half
    // the bytes) with bf16 products; with the LogSumExp store each row's log-sum-exp, [batch][head][query] floats.
    void attentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d, float *ctx,
                          float *probs);
    // dq, dk, dv += ...; ctx is the forward's output (the fused backward's dO . O per row). A work buffer is held
    // for the call: train::attentionSequencesPerCall(...) * heads * seq^2 floats, or batch * heads * seq with the
    // fused kernels.
    void attentionBackward(const float *dctx, const float *q, const float *k, const float *v, const float *ctx,
                           const train::AttentionDims &d, const float *probs, float *dq, float *dk, float *dv);

    // ---- element-wise (n elements) ----
    // out = a + b (the residual sums; out may be a or b).
    void add(const float *a, const float *b, int64_t n, float *out);
    void swigluForward(const float *gate, const float *up, int64_t n, float *mid);
    void swigluBackward(const float *dmid, const float *gate, const float *up, int64_t n, float *dgate, float *dup);
    void geluForward(train::Gelu kind, const float *x, int64_t n, float *y);
    void geluBackward(train::Gelu kind, const float *dy, const float *x, int64_t n, float *dx);
    void reluForward(const float *x, int64_t n, float *y);
    void reluBackward(const float *dy, const float *x, int64_t n, float *dx);

    // ---- fused, vocabulary-chunked LM head + softmax cross-entropy (train::crossEntropyForward) ----
    // h: (rows x width), w: (vocab x width), b: vocab or null, targets on the host (-1: no target). Returns the mean
    // loss over the rows with a target and its count; lse (rows floats, device) receives each row's log-normalizer.
    // Never holds more than rows x chunk logits.
    float crossEntropyForward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                              int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk, float *lse,
                              int64_t *count);
    // The mean loss's gradient times `scale`: dh += ..., dw += ..., db += ... (dw, db may be null).
    void crossEntropyBackward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                              int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk, const float *lse,
                              int64_t count, float scale, float *dh, float *dw, float *db);

    // ---- optimizer ----
    // One fused AdamW update of n weights with their gradient and moments.
    void adamw(float *w, float *m, float *v, const float *g, int64_t n, const cpu::AdamWConstants &k);
    // Sum of squares over the buffers (for the global gradient norm and its clipping), in a fixed order, in fp64.
    double sumOfSquares(const std::vector<std::pair<const float *, int64_t>> &buffers);
    // x *= factor (the clipping).
    void scale(float *x, int64_t n, float factor);
    // dw += g ⊙ mask (a 0/1 byte per entry): a fixed-mask linear's weight gradient (train::MaskedLinear).
    void maskedAdd(float *dw, const float *g, const uint8_t *mask, int64_t n);
    // dst[r] += src[r] for the rows r whose mask byte is 1 (rows x cols, row-major): a low-rank + sparse linear's S
    // without its pruned rows, and their gradient (train::LowRankSparseLinear).
    void rowMaskedAdd(float *dst, const float *src, const uint8_t *rowMask, int64_t rows, int64_t cols);

    // ---- LoSparse's per-step work on S ----
    // out[r] = the sum over row r of |v ⊙ g| (train::rowAbsProductSums), one block per row, a fixed order.
    void rowAbsProductSums(const float *v, const float *g, int64_t rows, int64_t cols, float *out);
    // The rows of x (rows x cols) whose keep byte is 0 set to zero.
    void zeroRows(float *x, const uint8_t *keep, int64_t rows, int64_t cols);

    // ---- gathered linears (SAT): index lists on the device, null meaning all ----
    // to (nRows x nCols) = from[rows][cols], from row-major with fromCols columns.
    void gather(float *to, const float *from, int64_t fromCols, const int32_t *rows, int64_t nRows, const int32_t *cols,
                int64_t nCols);
    // to[rows][cols] += from (nRows x nCols); the lists are distinct, so no two threads meet.
    void scatterAdd(float *to, int64_t toCols, const float *from, const int32_t *rows, int64_t nRows,
                    const int32_t *cols, int64_t nCols);
    // AdamW on the listed rows and columns of a parameter with `cols` columns only (a bias: cols 1, its entries as
    // rows): the others, moments included, stay as they are (train::AdamW with Parameter::activeRows).
    void adamwSome(float *w, float *m, float *v, const float *g, int64_t cols, const int32_t *rows, int64_t nRows,
                   const int32_t *activeCols, int64_t nCols, const cpu::AdamWConstants &k);
    // SAT's scores (train::activationNorms): out[0, channels) the column norms of act (rows x channels), then one
    // norm per group of groupWidth columns of ctx; sums of squares in a fixed order.
    void activationNorms(const float *act, int64_t rows, int64_t channels, const float *ctx, int groups,
                         int64_t groupWidth, float *out);

    // ---- PST (train::PstLinear; the same contracts as train::pstAdapted, pstScores, pstBackward) ----
    // adapted = W + beta U V: a copy and one product in the object's precision.
    void pstAdapted(const float *w, const train::PstFactors<float> &f, const train::PstDims &d, float *adapted);
    // scores = |adapted| + alpha1 A B + alpha2 (R 1^T + 1 C^T): a product, then one element-wise pass.
    void pstScores(const float *adapted, const train::PstFactors<float> &f, const train::PstDims &d, float *scores);
    // mask (n bytes, 1 keeps) pruning the `prune` smallest of n scores, ties by position: train::pruneSmallest's
    // mask, bit for bit, found by a radix select on the device (four 8-bit digits: a histogram pass and a one-thread
    // pick each), then the ties counted per chunk, scanned and resolved in position order. No host round trip.
    // Unlike the CPU it does not throw on NaN: a NaN sorts above every number and is kept (the loss shows it).
    void pruneSmallest(const float *scores, int64_t n, int64_t prune, uint8_t *mask);
    // dScores and dAdapted element-wise into the work buffers (and dW += dAdapted), then dU, dV, dA, dB as products
    // in the object's precision, dR and dC as fixed-order row and column sums of alpha2 dScores.
    void pstBackward(const float *g, const float *adapted, const uint8_t *mask, const train::PstFactors<float> &f,
                     const train::PstDims &d, const train::PstGradients<float> &grads, float *dScores,
                     float *dAdapted);

    // ---- profiling (DeviceTrainer::profileOps): every op above is timed by a pair of events around it, the
    // outermost op only when one calls another; opTimes waits, returns the totals since the last call (largest
    // first) and starts new ones ----
    void profileOps(bool on) { m_profile.on = on; }
    std::vector<train::OpTime> opTimes();

private:
    class Timed;
    struct Profile {
        bool on = false;
        int depth = 0;
        struct Span {
            const char *op;
            cudaEvent_t start, stop;
            bool nested; // a part inside an op (Timed::Part)
        };
        std::vector<Span> pending;
        std::vector<cudaEvent_t> spare;
        Profile() = default;
        Profile(Profile &&) = default;
        Profile &operator=(Profile &&) = delete;
        ~Profile();
        cudaEvent_t event() noexcept;
    };
    struct Operand;
    Operand operand(const float *x, int64_t n, DeviceMemory &scratch);
    // Column sums over rows of f(r, c), in a fixed order: partials over row chunks, then their sum.
    template <class F> void columnSums(int64_t rows, int64_t cols, F f, float *out);
    const int32_t *uploadIds(const std::vector<int32_t> &ids, DeviceMemory &to);
    void gemmOperands(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const Operand &a,
                      int64_t lda, const Operand &b, int64_t ldb, float beta, float *c, int64_t ldc);
    Operand chunkLogits(const Operand &h, const float *w, const float *b, int64_t rows, int64_t width, int64_t c0,
                        int64_t n, float *logits);
    // The fused kernels (trainflashkernels.cuh): tiles of queries and keys in shared memory, bf16 tensor-core
    // products, an online softmax; the backward recomputes the probabilities from the saved log-sum-exps.
    void fusedAttentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d,
                               float *ctx, float *lse);
    void fusedAttentionBackward(const float *dctx, const float *q, const float *k, const float *v, const float *ctx,
                                const train::AttentionDims &d, const float *lse, float *dq, float *dk, float *dv);
    void headGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const Operand &a,
                  int64_t aOffset, int64_t aSeq, int64_t aHead, int64_t aDiv, int64_t lda, const Operand &b,
                  int64_t bOffset, int64_t bSeq, int64_t bHead, int64_t bDiv, int64_t ldb, float beta, float *c,
                  int64_t cSeq, int64_t cHead, int64_t ldc, int64_t seqs, int64_t perSeq);

    cublasHandle_t m_blas;
    ComputePrecision m_precision;
    train::AttentionStore m_store;
    DeviceMemory m_ids, m_ids2, m_partials, m_logits, m_bf16a, m_bf16b, m_dP, m_reduce, m_select, m_pointers;
    DeviceMemory m_attnA, m_attnB, m_attnC, m_attnD, m_attnE; // the attention's bf16 operands
    DeviceMemory m_headH, m_headG; // the LM head's bf16 input and (backward) loss gradient
    Profile m_profile;
};

} // namespace lathe::gpu
