#pragma once

// The ops backend of train::OpsTrainer (core/train/opstrainer.h) on the CPU: each op copies its operands into
// the matrices train/ops.h takes and calls the CPU reference, so the trainer the GPU runs can be checked against
// CausalLm here, without a GPU (tst_devicetraining opsTrainerComposition). Only the ops the trainer uses; slow, for
// tests only.

#include "engine/deviceforward.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/ops.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace lathe::test {

class HostTrainOps {
public:
    using M = train::Matrix<float>;
    using V = train::Vector<float>;

    // OpsTrainer's Buffer: floats on the heap, aligned as Eigen aligns a matrix's (so that a vectorised pass
    // over one meets the same alignment as over the CausalLm's), the contents discarded when it grows.
    class Buffer {
    public:
        void resize(size_t bytes) { m_data.assign((bytes + 3) / 4, 0.0f); }
        void ensure(size_t bytes) {
            if (bytes > this->bytes())
                resize(bytes);
        }
        size_t bytes() const { return m_data.size() * 4; }
        template <class T> T *as() const { return reinterpret_cast<T *>(const_cast<float *>(m_data.data())); }

    private:
        std::vector<float, Eigen::aligned_allocator<float>> m_data;
    };

    // store: what attentionForward saves (Probabilities: the CPU reference's own state; LogSumExp: the GPU's fused
    // kernels' contract, each row's log-sum-exp from which the backward recomputes the probabilities, by
    // train::attentionLogSumExp and attentionFromLogSumExp).
    explicit HostTrainOps(train::AttentionStore store = train::AttentionStore::Probabilities) : m_store(store) {}
    train::AttentionStore attentionStore() const { return m_store; }
    void activate() const {}
    std::string deviceName() const { return "CPU (reference ops)"; }
    ComputePrecision precision() const { return ComputePrecision::Fp32; }
    void upload(float *to, const float *host, int64_t n) const { std::copy(host, host + n, to); }
    void uploadBytes(void *to, const void *host, size_t n) const { std::memcpy(to, host, n); }
    void download(float *host, const float *from, int64_t n) const { std::copy(from, from + n, host); }
    void zero(float *x, int64_t n) { std::fill(x, x + n, 0.0f); }
    void copy(float *to, const float *from, int64_t n) { std::copy(from, from + n, to); }
    void copyColumns(float *to, int64_t toStride, const float *from, int64_t fromStride, int64_t rows, int64_t cols) {
        for (int64_t r = 0; r < rows; ++r)
            std::copy(from + r * fromStride, from + r * fromStride + cols, to + r * toStride);
    }
    void synchronize() const {}
    // The reference ops are not timed (the GPU's are: gpu/trainops.h).
    void profileOps(bool) {}
    std::vector<train::OpTime> opTimes() { return {}; }

    void embeddingForward(const float *table, int64_t vocab, int64_t width, const std::vector<int32_t> &ids, float *y) {
        const auto split = engineScope();
        M out;
        train::embeddingForward(mat(table, vocab, width), ids, out);
        put(out, y);
    }
    // train::embeddingBackward's loop, written on the pointer (the table's row count is not known here).
    void embeddingBackward(const float *dy, const std::vector<int32_t> &ids, int64_t width, float *dtable) {
        for (size_t r = 0; r < ids.size(); ++r)
            for (int64_t c = 0; c < width; ++c)
                dtable[int64_t(ids[r]) * width + c] += dy[int64_t(r) * width + c];
    }
    void rmsNormForward(const float *x, const float *w, int64_t rows, int64_t width, float eps, float *y, float *rstd) {
        const auto split = engineScope();
        M out;
        train::NormState<float> s;
        train::rmsNormForward(mat(x, rows, width), vec(w, width), eps, out, s);
        put(out, y);
        put(s.rstd, rstd);
    }
    void rmsNormBackward(const float *dy, const float *x, const float *w, const float *rstd, int64_t rows,
                         int64_t width, float *dx, float *dw) {
        const auto split = engineScope();
        train::NormState<float> s;
        s.rstd = vec(rstd, rows);
        M dX = mat(dx, rows, width);
        // The weight's gradient summed from zero, then added (as CausalLm's norms and the GPU's column sums do).
        V dW = V::Zero(width);
        train::rmsNormBackward(mat(dy, rows, width), mat(x, rows, width), vec(w, width), s, dX, dw ? &dW : nullptr);
        put(dX, dx);
        if (dw)
            Eigen::Map<V>(dw, width) += dW;
    }
    void layerNormForward(const float *x, const float *w, const float *b, int64_t rows, int64_t width, float eps,
                          float *y, float *mean, float *rstd) {
        const auto split = engineScope();
        M out;
        train::NormState<float> s;
        train::layerNormForward(mat(x, rows, width), vec(w, width), b ? vec(b, width) : V(V::Zero(width)), eps, out,
                                s);
        put(out, y);
        put(s.mean, mean);
        put(s.rstd, rstd);
    }
    void layerNormBackward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t rows, int64_t width, float *dx, float *dw, float *db) {
        const auto split = engineScope();
        train::NormState<float> s;
        s.mean = vec(mean, rows);
        s.rstd = vec(rstd, rows);
        M dX = mat(dx, rows, width);
        V dW = V::Zero(width), dB = V::Zero(width); // summed from zero, then added, as CausalLm's norms
        train::layerNormBackward(mat(dy, rows, width), mat(x, rows, width), vec(w, width), s, dX, dw ? &dW : nullptr,
                                 db ? &dB : nullptr);
        put(dX, dx);
        if (dw)
            Eigen::Map<V>(dw, width) += dW;
        if (db)
            Eigen::Map<V>(db, width) += dB;
    }
    void linearForward(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out,
                       float *y) {
        const auto split = engineScope();
        M Y;
        train::linearForward(mat(x, rows, in), mat(w, out, in), b ? vec(b, out) : V(), Y);
        put(Y, y);
    }
    void linearBackward(const float *dy, const float *x, const float *w, int64_t rows, int64_t in, int64_t out,
                        float *dx, float *dw, float *db) {
        const auto split = engineScope();
        M dX = dx ? mat(dx, rows, in) : M(), dW = dw ? mat(dw, out, in) : M();
        V dB = db ? vec(db, out) : V();
        train::linearBackward(mat(dy, rows, out), mat(x, rows, in), mat(w, out, in), dx ? &dX : nullptr,
                              dw ? &dW : nullptr, db ? &dB : nullptr);
        if (dx)
            put(dX, dx);
        if (dw)
            put(dW, dw);
        if (db)
            put(dB, db);
    }
    void ropeForward(float *x, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim, const float *cos,
                     const float *sin) {
        rope(x, rows, seq, heads, headDim, rotaryDim, cos, sin, false);
    }
    void ropeBackward(float *dx, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim, const float *cos,
                      const float *sin) {
        rope(dx, rows, seq, heads, headDim, rotaryDim, cos, sin, true);
    }
    void attentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d, float *ctx,
                          float *probs) {
        const auto split = engineScope();
        const int64_t rows = d.batch * d.seq, qw = int64_t(d.heads) * d.headDim, kw = int64_t(d.kvHeads) * d.headDim;
        M out;
        train::AttentionState<float> s;
        train::attentionForward(mat(q, rows, qw), mat(k, rows, kw), mat(v, rows, kw), d, out, s);
        put(out, ctx);
        if (m_store == train::AttentionStore::LogSumExp) {
            const std::vector<float> lse = train::attentionLogSumExp(mat(q, rows, qw), mat(k, rows, kw), d);
            std::copy(lse.begin(), lse.end(), probs);
        } else {
            std::copy(s.probs.begin(), s.probs.end(), probs);
        }
    }
    // ctx (the forward's output) is what the fused kernels' backward reads besides the log-sum-exps; the reference
    // does not need it.
    void attentionBackward(const float *dctx, const float *q, const float *k, const float *v, const float * /*ctx*/,
                           const train::AttentionDims &d, const float *probs, float *dq, float *dk, float *dv) {
        const auto split = engineScope();
        const int64_t rows = d.batch * d.seq, qw = int64_t(d.heads) * d.headDim, kw = int64_t(d.kvHeads) * d.headDim;
        train::AttentionState<float> s;
        if (m_store == train::AttentionStore::LogSumExp)
            s = train::attentionFromLogSumExp(mat(q, rows, qw), mat(k, rows, kw), d, probs);
        else
            s.probs.assign(probs, probs + d.batch * d.heads * d.seq * d.seq);
        M dQ = mat(dq, rows, qw), dK = mat(dk, rows, kw), dV = mat(dv, rows, kw);
        train::attentionBackward(mat(dctx, rows, qw), mat(q, rows, qw), mat(k, rows, kw), mat(v, rows, kw), d, s, dQ,
                                 dK, dV);
        put(dQ, dq);
        put(dK, dk);
        put(dV, dv);
    }
    void add(const float *a, const float *b, int64_t n, float *out) {
        for (int64_t i = 0; i < n; ++i)
            out[i] = a[i] + b[i];
    }
    void swigluForward(const float *gate, const float *up, int64_t n, float *mid) {
        const auto split = engineScope();
        M out;
        train::swigluForward(mat(gate, 1, n), mat(up, 1, n), out);
        put(out, mid);
    }
    void swigluBackward(const float *dmid, const float *gate, const float *up, int64_t n, float *dgate, float *dup) {
        const auto split = engineScope();
        M dG = mat(dgate, 1, n), dU = mat(dup, 1, n);
        train::swigluBackward(mat(dmid, 1, n), mat(gate, 1, n), mat(up, 1, n), dG, dU);
        put(dG, dgate);
        put(dU, dup);
    }
    void geluForward(train::Gelu kind, const float *x, int64_t n, float *y) {
        M out;
        train::geluForward(kind, mat(x, 1, n), out);
        put(out, y);
    }
    void geluBackward(train::Gelu kind, const float *dy, const float *x, int64_t n, float *dx) {
        M dX = mat(dx, 1, n);
        train::geluBackward(kind, mat(dy, 1, n), mat(x, 1, n), dX);
        put(dX, dx);
    }
    void reluForward(const float *x, int64_t n, float *y) {
        M out;
        train::reluForward(mat(x, 1, n), out);
        put(out, y);
    }
    void reluBackward(const float *dy, const float *x, int64_t n, float *dx) {
        M dX = mat(dx, 1, n);
        train::reluBackward(mat(dy, 1, n), mat(x, 1, n), dX);
        put(dX, dx);
    }
    float crossEntropyForward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                              int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk, float *lse,
                              int64_t *count) {
        const auto split = engineScope();
        train::CrossEntropyState<float> s;
        const float loss = train::crossEntropyForward(mat(h, rows, width), mat(w, vocab, width),
                                                      b ? vec(b, vocab) : V(), targets, chunk, s);
        put(s.logSumExp, lse);
        *count = s.count;
        return loss;
    }
    void crossEntropyBackward(const float *h, const float *w, const float *b, int64_t rows, int64_t width,
                              int64_t vocab, const std::vector<int32_t> &targets, int64_t chunk, const float *lse,
                              int64_t count, float scale, float *dh, float *dw, float *db) {
        const auto split = engineScope();
        train::CrossEntropyState<float> s;
        s.logSumExp = vec(lse, rows);
        s.count = count;
        M dH = mat(dh, rows, width), dW = dw ? mat(dw, vocab, width) : M();
        V dB = db ? vec(db, vocab) : V();
        train::crossEntropyBackward(mat(h, rows, width), mat(w, vocab, width), b ? vec(b, vocab) : V(), targets, chunk,
                                    s, scale, dH, dw ? &dW : nullptr, db ? &dB : nullptr);
        put(dH, dh);
        if (dw)
            put(dW, dw);
        if (db)
            put(dB, db);
    }
    void adamw(float *w, float *m, float *v, const float *g, int64_t n, const cpu::AdamWConstants &k) {
        cpu::cpuKernels().adamw(w, m, v, g, n, k);
    }
    // As clipGradNorm: each buffer's squares summed in fp32 (Eigen), the buffers in fp64.
    double sumOfSquares(const std::vector<std::pair<const float *, int64_t>> &buffers) {
        double sq = 0;
        for (const auto &[x, n] : buffers)
            sq += double(Eigen::Map<const V>(x, n).squaredNorm());
        return sq;
    }
    void scale(float *x, int64_t n, float factor) { Eigen::Map<V>(x, n) *= factor; }
    void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
        const auto split = engineScope();
        sgemmSplit(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); // as train/ops.cpp's gemm
    }
    // As LowRankSparseLinear: dst.row(r) += src.row(r) for the kept rows.
    void rowMaskedAdd(float *dst, const float *src, const uint8_t *rowMask, int64_t rows, int64_t cols) {
        for (int64_t r = 0; r < rows; ++r)
            if (rowMask[r])
                for (int64_t c = 0; c < cols; ++c)
                    dst[r * cols + c] += src[r * cols + c];
    }
    // As MaskedLinear::backward: grad += g ⊙ mask, the product first.
    void maskedAdd(float *dw, const float *g, const uint8_t *mask, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
            dw[i] += g[i] * float(mask[i]);
    }
    // Gathered linears (SAT): DenseLinear's gatherBlock and scatterAddBlock, AdamW's restricted update and
    // CausalLm's channel norms, on the index lists the trainer keeps in its buffers (null: all).
    void gather(float *to, const float *from, int64_t fromCols, const int32_t *rows, int64_t nRows, const int32_t *cols,
                int64_t nCols) {
        for (int64_t i = 0; i < nRows; ++i)
            for (int64_t j = 0; j < nCols; ++j)
                to[i * nCols + j] = from[int64_t(rows ? rows[i] : i) * fromCols + (cols ? cols[j] : j)];
    }
    void scatterAdd(float *to, int64_t toCols, const float *from, const int32_t *rows, int64_t nRows,
                    const int32_t *cols, int64_t nCols) {
        for (int64_t i = 0; i < nRows; ++i)
            for (int64_t j = 0; j < nCols; ++j)
                to[int64_t(rows ? rows[i] : i) * toCols + (cols ? cols[j] : j)] += from[i * nCols + j];
    }
    // As AdamW::step for a parameter with active rows and columns.
    void adamwSome(float *w, float *m, float *v, const float *g, int64_t cols, const int32_t *rows, int64_t nRows,
                   const int32_t *activeCols, int64_t nCols, const cpu::AdamWConstants &k) {
        std::vector<float> keep;
        if (activeCols) {
            keep.assign(size_t(cols), 0.0f);
            for (int64_t j = 0; j < nCols; ++j)
                keep[size_t(activeCols[j])] = 1.0f;
        }
        for (int64_t i = 0; i < nRows; ++i) {
            const int64_t at = int64_t(rows ? rows[i] : i) * cols;
            if (cols == 1)
                cpu::cpuKernels().adamw(w + at, m + at, v + at, g + at, 1, k);
            else if (keep.empty())
                cpu::cpuKernels().adamw(w + at, m + at, v + at, g + at, cols, k);
            else
                cpu::cpuKernels().adamwMasked(w + at, m + at, v + at, g + at, keep.data(), cols, k);
        }
    }
    void activationNorms(const float *act, int64_t rows, int64_t channels, const float *ctx, int groups,
                         int64_t groupWidth, float *out) {
        train::activationNorms(act, rows, channels, ctx, groups, groupWidth, out);
    }
    // LoSparse's importance pass (the function the method runs) and its zeroing of pruned rows.
    void rowAbsProductSums(const float *v, const float *g, int64_t rows, int64_t cols, float *out) {
        train::rowAbsProductSums(v, g, rows, cols, out);
    }
    void zeroRows(float *x, const uint8_t *keep, int64_t rows, int64_t cols) {
        for (int64_t r = 0; r < rows; ++r)
            if (!keep[r])
                std::fill(x + r * cols, x + (r + 1) * cols, 0.0f);
    }
    // PST's passes, the functions PstLinear runs.
    void pstAdapted(const float *w, const train::PstFactors<float> &f, const train::PstDims &d, float *adapted) {
        train::pstAdapted(w, f, d, adapted);
    }
    void pstScores(const float *adapted, const train::PstFactors<float> &f, const train::PstDims &d, float *scores) {
        train::pstScores(adapted, f, d, scores);
    }
    void pruneSmallest(const float *scores, int64_t n, int64_t prune, uint8_t *mask) {
        train::pruneSmallest(scores, n, prune, mask);
    }
    void pstBackward(const float *g, const float *adapted, const uint8_t *mask, const train::PstFactors<float> &f,
                     const train::PstDims &d, const train::PstGradients<float> &grads, float *dScores,
                     float *dAdapted) {
        train::pstBackward(g, adapted, mask, f, d, grads, dScores, dAdapted);
    }

private:
    // Every op runs inside the BLAS split scope CausalLm's forward and backward open, so its GEMMs are the same
    // calls and the results the same bits.
    static BlasSplitScope engineScope() { return BlasSplitScope(engineSplitsBlas()); }
    static M mat(const float *p, int64_t rows, int64_t cols) { return Eigen::Map<const M>(p, rows, cols); }
    static V vec(const float *p, int64_t n) { return Eigen::Map<const V>(p, n); }
    template <class E> static void put(const E &from, float *to) {
        std::copy(from.data(), from.data() + from.size(), to);
    }
    void rope(float *x, int64_t rows, int64_t seq, int heads, int headDim, int rotaryDim, const float *cos,
              const float *sin, bool backward) {
        const auto split = engineScope();
        train::RopeAngles<float> a;
        a.rotaryDim = rotaryDim;
        a.cos = mat(cos, seq, rotaryDim / 2);
        a.sin = mat(sin, seq, rotaryDim / 2);
        M X = mat(x, rows, int64_t(heads) * headDim);
        if (backward)
            train::ropeBackward(X, seq, heads, headDim, a);
        else
            train::ropeForward(X, seq, heads, headDim, a);
        put(X, x);
    }

    train::AttentionStore m_store;
};

} // namespace lathe::test
