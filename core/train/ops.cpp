#include "train/ops.h"

#include "base/error.h"
#include "base/parallel.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <type_traits>

namespace lathe::train {

namespace {

// C = alpha op(A) op(B) + beta C on row-major matrices (the blas.h contract): fp32 through BLAS (split over the
// threads inside the step's BlasSplitScope, threaded by BLAS outside), fp64 through Eigen (the finite-difference
// checks).
template <class T>
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha, const T *a, int64_t lda, const T *b,
          int64_t ldb, T beta, T *c, int64_t ldc) {
    if constexpr (std::is_same_v<T, float>) {
        sgemmSplit(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    } else {
        using Strided = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;
        const Strided A(a, transA ? k : m, transA ? m : k, Eigen::OuterStride<>(lda));
        const Strided B(b, transB ? n : k, transB ? k : n, Eigen::OuterStride<>(ldb));
        Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
        Matrix<T> prod;
        if (transA && transB)
            prod.noalias() = A.transpose() * B.transpose();
        else if (transA)
            prod.noalias() = A.transpose() * B;
        else if (transB)
            prod.noalias() = A * B.transpose();
        else
            prod.noalias() = A * B;
        C = (beta == T(0) ? Matrix<T>(alpha * prod) : Matrix<T>(beta * C + alpha * prod));
    }
}

// The element-wise ops split their rows (or elements) over cpuWorkThreads(), so that `--threads 1` means one
// thread. Every row is computed exactly as a single thread would compute it, so the bits never depend on the
// thread count; sums over rows (norm and bias gradients) are split by column and keep the row order.
template <class F> void forRanges(int64_t n, int64_t grain, F &&f) {
    parallelFor(n, grain, [&](int64_t b, int64_t e) { f(b, e); }, cpuWorkThreads());
}

// Rows per part for the row-parallel ops: a few thousand values each at the least.
constexpr int64_t kRowGrain = 16, kElementGrain = 1 << 14;

// y = x w^T for a block of w's rows (the LM head's chunk), y resized.
template <class T> void timesTransposed(const Matrix<T> &x, const T *w, int64_t wRows, Matrix<T> &y) {
    y.resize(x.rows(), wRows);
    gemm<T>(false, true, x.rows(), wRows, x.cols(), T(1), x.data(), x.cols(), w, x.cols(), T(0), y.data(), wRows);
}

} // namespace

// ---- products ----

template <class T>
void matmul(const Matrix<T> &a, bool transA, const Matrix<T> &b, bool transB, T alpha, T beta, Matrix<T> &c) {
    const int64_t m = transA ? a.cols() : a.rows(), k = transA ? a.rows() : a.cols();
    const int64_t n = transB ? b.rows() : b.cols();
    assert((transB ? b.cols() : b.rows()) == k);
    if (beta == T(0))
        c.resize(m, n);
    assert(c.rows() == m && c.cols() == n);
    gemm<T>(transA, transB, m, n, k, alpha, a.data(), a.cols(), b.data(), b.cols(), beta, c.data(), n);
}

// ---- embedding ----

template <class T> void embeddingForward(const Matrix<T> &table, const std::vector<int32_t> &ids, Matrix<T> &y) {
    y.resize(int64_t(ids.size()), table.cols());
    for (size_t r = 0; r < ids.size(); ++r) {
        require(ids[r] >= 0 && ids[r] < table.rows(), "embedding", "token id " + std::to_string(ids[r]) +
                                                                       " is outside the vocabulary");
        y.row(int64_t(r)) = table.row(ids[r]);
    }
}

template <class T> void embeddingBackward(const Matrix<T> &dy, const std::vector<int32_t> &ids, Matrix<T> &dtable) {
    assert(dy.rows() == int64_t(ids.size()) && dy.cols() == dtable.cols());
    for (size_t r = 0; r < ids.size(); ++r)
        dtable.row(ids[r]) += dy.row(int64_t(r));
}

// ---- norms ----

template <class T>
void rmsNormForward(const Matrix<T> &x, const Vector<T> &w, T eps, Matrix<T> &y, NormState<T> &s) {
    const int64_t n = x.cols();
    y.resize(x.rows(), n);
    s.mean.resize(0);
    s.rstd.resize(x.rows());
    forRanges(x.rows(), kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T ms = x.row(r).squaredNorm() / T(n);
            s.rstd(r) = T(1) / std::sqrt(ms + eps);
            y.row(r) = (x.row(r).array() * s.rstd(r) * w.transpose().array()).matrix();
        }
    });
}

// With xhat = x * rstd and g = dy * w: dx = rstd * (g - xhat * mean(g * xhat)); dw = sum over rows of dy * xhat.
template <class T>
void rmsNormBackward(const Matrix<T> &dy, const Matrix<T> &x, const Vector<T> &w, const NormState<T> &s,
                     Matrix<T> &dx, Vector<T> *dw) {
    const int64_t n = x.cols();
    forRanges(x.rows(), kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const auto xhat = (x.row(r).array() * s.rstd(r)).eval();
            const auto g = (dy.row(r).array() * w.transpose().array()).eval();
            const T dot = (g * xhat).sum() / T(n);
            dx.row(r).array() += s.rstd(r) * (g - xhat * dot);
        }
    });
    if (dw)
        forRanges(n, kRowGrain, [&](int64_t c0, int64_t c1) {
            for (int64_t r = 0; r < x.rows(); ++r)
                for (int64_t c = c0; c < c1; ++c)
                    (*dw)(c) += dy(r, c) * (x(r, c) * s.rstd(r));
        });
}

template <class T>
void layerNormForward(const Matrix<T> &x, const Vector<T> &w, const Vector<T> &b, T eps, Matrix<T> &y,
                      NormState<T> &s) {
    const int64_t n = x.cols();
    y.resize(x.rows(), n);
    s.mean.resize(x.rows());
    s.rstd.resize(x.rows());
    forRanges(x.rows(), kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T mean = x.row(r).sum() / T(n);
            const T var = (x.row(r).array() - mean).square().sum() / T(n);
            s.mean(r) = mean;
            s.rstd(r) = T(1) / std::sqrt(var + eps);
            y.row(r) =
                ((x.row(r).array() - mean) * s.rstd(r) * w.transpose().array() + b.transpose().array()).matrix();
        }
    });
}

// With xhat = (x - mean) * rstd and g = dy * w: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
template <class T>
void layerNormBackward(const Matrix<T> &dy, const Matrix<T> &x, const Vector<T> &w, const NormState<T> &s,
                       Matrix<T> &dx, Vector<T> *dw, Vector<T> *db) {
    const int64_t n = x.cols();
    forRanges(x.rows(), kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const auto xhat = ((x.row(r).array() - s.mean(r)) * s.rstd(r)).eval();
            const auto g = (dy.row(r).array() * w.transpose().array()).eval();
            const T meanG = g.sum() / T(n), meanGX = (g * xhat).sum() / T(n);
            dx.row(r).array() += s.rstd(r) * (g - meanG - xhat * meanGX);
        }
    });
    if (dw || db)
        forRanges(n, kRowGrain, [&](int64_t c0, int64_t c1) {
            for (int64_t r = 0; r < x.rows(); ++r)
                for (int64_t c = c0; c < c1; ++c) {
                    if (dw)
                        (*dw)(c) += dy(r, c) * ((x(r, c) - s.mean(r)) * s.rstd(r));
                    if (db)
                        (*db)(c) += dy(r, c);
                }
        });
}

// ---- linear ----

template <class T> void linearForward(const Matrix<T> &x, const Matrix<T> &w, const Vector<T> &b, Matrix<T> &y) {
    assert(x.cols() == w.cols());
    timesTransposed(x, w.data(), w.rows(), y);
    if (b.size())
        y.rowwise() += b.transpose();
}

template <class T>
void linearBackward(const Matrix<T> &dy, const Matrix<T> &x, const Matrix<T> &w, Matrix<T> *dx, Matrix<T> *dw,
                    Vector<T> *db) {
    const int64_t rows = dy.rows(), out = w.rows(), in = w.cols();
    if (dx)
        gemm<T>(false, false, rows, in, out, T(1), dy.data(), out, w.data(), in, T(1), dx->data(), in);
    if (dw)
        gemm<T>(true, false, out, in, rows, T(1), dy.data(), out, x.data(), in, T(1), dw->data(), in);
    if (db)
        *db += dy.colwise().sum().transpose();
}

// ---- RoPE ----

namespace {

// Rotates the first rotaryDim dimensions of every head by +angle (sign 1) or -angle (sign -1).
template <class T>
void rotate(Matrix<T> &x, int64_t seq, int heads, int headDim, const RopeAngles<T> &rope, T sign) {
    const int half = rope.rotaryDim / 2;
    assert(x.cols() == int64_t(heads) * headDim && rope.cos.rows() >= seq && rope.rotaryDim <= headDim);
    forRanges(x.rows(), kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t pos = r % seq;
            for (int h = 0; h < heads; ++h) {
                T *v = x.data() + r * x.cols() + int64_t(h) * headDim;
                for (int i = 0; i < half; ++i) {
                    const T c = rope.cos(pos, i), s = sign * rope.sin(pos, i);
                    const T a = v[i], b = v[i + half];
                    v[i] = a * c - b * s;
                    v[i + half] = b * c + a * s;
                }
            }
        }
    });
}

} // namespace

template <class T> void ropeForward(Matrix<T> &x, int64_t seq, int heads, int headDim, const RopeAngles<T> &rope) {
    rotate(x, seq, heads, headDim, rope, T(1));
}

// The rotation is orthogonal: the gradient goes back through its transpose, the rotation by -angle.
template <class T> void ropeBackward(Matrix<T> &dx, int64_t seq, int heads, int headDim, const RopeAngles<T> &rope) {
    rotate(dx, seq, heads, headDim, rope, T(-1));
}

// ---- attention ----

namespace {

// Causal attention runs in tiles of kAttentionTile queries: a tile's scores, context and query gradient need only
// the keys up to its last query, and a key tile's K and V gradients only the queries from its first key, so the
// GEMMs skip the masked blocks above the diagonal (at 512 tokens, 37.5% of the work). A tile smaller than this
// skips more but its GEMMs run slower.
constexpr int64_t kAttentionTile = 128;

// Softmax over the first `keys` entries of a row, in place, and zeros in [keys, width). fp32 goes through the CPU
// kernels (vectorized, exp to ~2e-7 relative), fp64 through libm (the finite-difference checks).
template <class T> void softmaxPrefix(T *row, int64_t keys, int64_t width) {
    if constexpr (std::is_same_v<T, float>) {
        cpu::cpuKernels().softmaxRows(row, 1, keys, 0, false, nullptr);
    } else {
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < keys; ++j)
            mx = std::max(mx, row[j]);
        T sum = 0;
        for (int64_t j = 0; j < keys; ++j)
            sum += (row[j] = std::exp(row[j] - mx));
        const T inv = T(1) / sum;
        for (int64_t j = 0; j < keys; ++j)
            row[j] *= inv;
    }
    std::fill(row + keys, row + width, T(0));
}

} // namespace

// Per (sequence, head) and query tile: the scores by one GEMM over the strided head columns, the causal softmax
// row by row, the context by a second GEMM. Inside the diagonal tile the GEMMs compute masked scores too, which
// the softmax zeroes. The heads are split over the threads, each running single-threaded GEMMs (a BlasSplitScope):
// a head's GEMMs are too small to thread well, and the softmax between them would otherwise run on one core.
template <class T>
void attentionForward(const Matrix<T> &q, const Matrix<T> &k, const Matrix<T> &v, const AttentionDims &d,
                      Matrix<T> &ctx, AttentionState<T> &state) {
    const int64_t S = d.seq, D = d.headDim, qw = int64_t(d.heads) * D, kw = int64_t(d.kvHeads) * D;
    assert(q.rows() == d.batch * S && q.cols() == qw && k.cols() == kw && v.cols() == kw);
    const int group = d.heads / d.kvHeads;
    const int64_t tile = d.causal ? std::min(S, kAttentionTile) : S;
    ctx.resize(q.rows(), qw);
    state.probs.resize(size_t(d.batch * d.heads * S * S));
    const int threads = cpuWorkThreads();
    const BlasSplitScope singleThreadedBlas(threads > 1);
    parallelFor(d.batch * d.heads, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t item = i0; item < i1; ++item) {
            const int64_t b = item / d.heads;
            const int h = int(item % d.heads), kvh = h / group;
            T *P = state.probs.data() + (b * d.heads + h) * S * S;
            const T *qh = q.data() + b * S * qw + int64_t(h) * D;
            const T *kh = k.data() + b * S * kw + int64_t(kvh) * D;
            const T *vh = v.data() + b * S * kw + int64_t(kvh) * D;
            T *ch = ctx.data() + b * S * qw + int64_t(h) * D;
            for (int64_t q0 = 0; q0 < S; q0 += tile) {
                const int64_t rows = std::min(tile, S - q0), nk = d.causal ? q0 + rows : S;
                gemm<T>(false, true, rows, nk, D, T(d.scale), qh + q0 * qw, qw, kh, kw, T(0), P + q0 * S, S);
                for (int64_t i = q0; i < q0 + rows; ++i)
                    softmaxPrefix(P + i * S, d.causal ? i + 1 : S, S);
                gemm<T>(false, false, rows, D, nk, T(1), P + q0 * S, S, vh, kw, T(0), ch + q0 * qw, qw);
            }
        }
    }, threads);
}

// Per head: dV += P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P)); dQ += scale dS K; dK += scale dS^T Q, in
// the forward pass's tiles: dP, dS and dQ by query tile (keys up to the tile's end), dK and dV by key tile
// (queries from the tile's start), where P and dS are zero beyond the diagonal tile.
// Grouped heads share K and V: the heads run in parallel as in the forward pass, each writing its K and V
// gradients to its own buffer, and those are added to dK and dV in head order afterwards, so the sum does not
// depend on the thread count.
template <class T>
void attentionBackward(const Matrix<T> &dctx, const Matrix<T> &q, const Matrix<T> &k, const Matrix<T> &v,
                       const AttentionDims &d, const AttentionState<T> &state, Matrix<T> &dq, Matrix<T> &dk,
                       Matrix<T> &dv) {
    const int64_t S = d.seq, D = d.headDim, qw = int64_t(d.heads) * D, kw = int64_t(d.kvHeads) * D;
    const int group = d.heads / d.kvHeads;
    const int64_t items = d.batch * d.heads;
    const int64_t tile = d.causal ? std::min(S, kAttentionTile) : S;
    // Per (sequence, head): its K gradient then its V gradient, S x D each.
    std::vector<T> dkv(static_cast<size_t>(items * 2 * S * D));
    const int threads = cpuWorkThreads();
    const BlasSplitScope singleThreadedBlas(threads > 1);
    parallelFor(items, 1, [&](int64_t i0, int64_t i1) {
        std::vector<T> dP(static_cast<size_t>(S * S));
        for (int64_t item = i0; item < i1; ++item) {
            const int64_t b = item / d.heads;
            const int h = int(item % d.heads), kvh = h / group;
            const T *P = state.probs.data() + item * S * S;
            const T *dO = dctx.data() + b * S * qw + int64_t(h) * D;
            const int64_t qOff = b * S * qw + int64_t(h) * D, kOff = b * S * kw + int64_t(kvh) * D;
            T *dkh = dkv.data() + item * 2 * S * D, *dvh = dkh + S * D;
            for (int64_t q0 = 0; q0 < S; q0 += tile) {
                const int64_t rows = std::min(tile, S - q0), nk = d.causal ? q0 + rows : S;
                T *dS = dP.data() + q0 * S;
                gemm<T>(false, true, rows, nk, D, T(1), dO + q0 * qw, qw, v.data() + kOff, kw, T(0), dS, S);
                for (int64_t i = q0; i < q0 + rows; ++i) {
                    const T *p = P + i * S;
                    T *g = dP.data() + i * S;
                    const int64_t keys = d.causal ? i + 1 : S;
                    if constexpr (std::is_same_v<T, float>) {
                        cpu::cpuKernels().softmaxBackward(p, g, keys, float(d.scale));
                    } else {
                        T rowDot = 0;
                        for (int64_t j = 0; j < keys; ++j)
                            rowDot += g[j] * p[j];
                        for (int64_t j = 0; j < keys; ++j)
                            g[j] = p[j] * (g[j] - rowDot) * T(d.scale);
                    }
                    std::fill(g + keys, g + nk, T(0));
                }
                gemm<T>(false, false, rows, D, nk, T(1), dS, S, k.data() + kOff, kw, T(1), dq.data() + qOff + q0 * qw,
                        qw);
            }
            for (int64_t k0 = 0; k0 < S; k0 += tile) {
                const int64_t cols = std::min(tile, S - k0), r0 = d.causal ? k0 : 0;
                gemm<T>(true, false, cols, D, S - r0, T(1), P + r0 * S + k0, S, dO + r0 * qw, qw, T(0),
                        dvh + k0 * D, D);
                gemm<T>(true, false, cols, D, S - r0, T(1), dP.data() + r0 * S + k0, S, q.data() + qOff + r0 * qw, qw,
                        T(0), dkh + k0 * D, D);
            }
        }
    }, threads);
    // The shared gradients, by rows of the sequence (disjoint), each summing its heads in order.
    forRanges(d.batch * S, kRowGrain, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
            const int64_t b = row / S, i = row % S;
            for (int h = 0; h < d.heads; ++h) {
                const int64_t item = b * d.heads + h;
                const T *dkh = dkv.data() + item * 2 * S * D + i * D, *dvh = dkh + S * D;
                T *dkRow = dk.data() + row * kw + int64_t(h / group) * D, *dvRow = dv.data() + row * kw +
                                                                                  int64_t(h / group) * D;
                for (int64_t c = 0; c < D; ++c) {
                    dkRow[c] += dkh[c];
                    dvRow[c] += dvh[c];
                }
            }
        }
    });
}

namespace {

// score(b, h, i, j) = scale q_i . k_j for head h (its KV head h / group), or -inf for a masked pair.
template <class T>
T attentionScore(const Matrix<T> &q, const Matrix<T> &k, const AttentionDims &d, int64_t b, int h, int64_t i,
                 int64_t j) {
    if (d.causal && j > i)
        return -std::numeric_limits<T>::infinity();
    const int64_t D = d.headDim, kvh = h / (d.heads / d.kvHeads);
    const T *qi = q.data() + (b * d.seq + i) * q.cols() + int64_t(h) * D;
    const T *kj = k.data() + (b * d.seq + j) * k.cols() + kvh * D;
    T dot = 0;
    for (int64_t c = 0; c < D; ++c)
        dot += qi[c] * kj[c];
    return T(d.scale) * dot;
}

} // namespace

template <class T>
std::vector<T> attentionLogSumExp(const Matrix<T> &q, const Matrix<T> &k, const AttentionDims &d) {
    const int64_t S = d.seq;
    std::vector<T> lse(size_t(d.batch * d.heads * S));
    std::vector<T> row(static_cast<size_t>(S));
    for (int64_t b = 0; b < d.batch; ++b)
        for (int h = 0; h < d.heads; ++h)
            for (int64_t i = 0; i < S; ++i) {
                const int64_t keys = d.causal ? i + 1 : S;
                T top = -std::numeric_limits<T>::infinity();
                for (int64_t j = 0; j < keys; ++j)
                    top = std::max(top, row[size_t(j)] = attentionScore(q, k, d, b, h, i, j));
                T sum = 0;
                for (int64_t j = 0; j < keys; ++j)
                    sum += std::exp(row[size_t(j)] - top);
                lse[size_t((b * d.heads + h) * S + i)] = top + std::log(sum);
            }
    return lse;
}

template <class T>
AttentionState<T> attentionFromLogSumExp(const Matrix<T> &q, const Matrix<T> &k, const AttentionDims &d,
                                         const T *lse) {
    const int64_t S = d.seq;
    AttentionState<T> s;
    s.probs.assign(size_t(d.batch * d.heads * S * S), T(0));
    for (int64_t b = 0; b < d.batch; ++b)
        for (int h = 0; h < d.heads; ++h)
            for (int64_t i = 0; i < S; ++i) {
                const int64_t row = (b * d.heads + h) * S + i;
                for (int64_t j = 0; j < (d.causal ? i + 1 : S); ++j)
                    s.probs[size_t(row * S + j)] = std::exp(attentionScore(q, k, d, b, h, i, j) - lse[row]);
            }
    return s;
}

// ---- activations ----

namespace {

template <class T> T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

} // namespace

template <class T> void swigluForward(const Matrix<T> &gate, const Matrix<T> &up, Matrix<T> &mid) {
    mid.resize(gate.rows(), gate.cols());
    forRanges(gate.size(), kElementGrain, [&](int64_t b, int64_t e) {
        if constexpr (std::is_same_v<T, float>) {
            cpu::cpuKernels().swiglu(gate.data() + b, up.data() + b, mid.data() + b, e - b);
        } else {
            for (int64_t i = b; i < e; ++i) {
                const T g = gate.data()[i];
                mid.data()[i] = g * sigmoid(g) * up.data()[i];
            }
        }
    });
}

// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g).
template <class T>
void swigluBackward(const Matrix<T> &dmid, const Matrix<T> &gate, const Matrix<T> &up, Matrix<T> &dgate,
                    Matrix<T> &dup) {
    forRanges(gate.size(), kElementGrain, [&](int64_t b, int64_t e) {
        if constexpr (std::is_same_v<T, float>) {
            cpu::cpuKernels().swigluBackward(dmid.data() + b, gate.data() + b, up.data() + b, dgate.data() + b,
                                             dup.data() + b, e - b);
        } else {
            for (int64_t i = b; i < e; ++i) {
                const T g = gate.data()[i], s = sigmoid(g), d = dmid.data()[i];
                dgate.data()[i] += d * up.data()[i] * s * (T(1) + g * (T(1) - s));
                dup.data()[i] += d * g * s;
            }
        }
    });
}

namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654, kGeluCubic = 0.044715, kInvSqrt2 = 0.7071067811865476,
                 kInvSqrt2Pi = 0.3989422804014327;

// GELU and its derivative at x.
template <class T> std::pair<T, T> gelu(Gelu kind, T x) {
    if (kind == Gelu::Tanh) {
        const T u = T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x);
        const T t = std::tanh(u);
        const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * x * x);
        return {T(0.5) * x * (T(1) + t), T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du};
    }
    const T cdf = T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2)));
    return {x * cdf, cdf + x * T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x)};
}

} // namespace

template <class T> void geluForward(Gelu kind, const Matrix<T> &x, Matrix<T> &y) {
    y.resize(x.rows(), x.cols());
    forRanges(x.size(), kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            y.data()[i] = gelu(kind, x.data()[i]).first;
    });
}

template <class T> void geluBackward(Gelu kind, const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx) {
    forRanges(x.size(), kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            dx.data()[i] += dy.data()[i] * gelu(kind, x.data()[i]).second;
    });
}

template <class T> void reluForward(const Matrix<T> &x, Matrix<T> &y) {
    y.resize(x.rows(), x.cols());
    forRanges(x.size(), kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            y.data()[i] = std::max(x.data()[i], T(0));
    });
}

template <class T> void reluBackward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx) {
    forRanges(x.size(), kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            if (x.data()[i] > T(0))
                dx.data()[i] += dy.data()[i];
    });
}

// ---- fused, chunked LM head + cross-entropy ----

namespace {

// log(exp(a) + exp(b)), NaN if either is (a model with NaN weights must show a NaN loss).
double logAddExp(double a, double b) {
    if (std::isnan(a) || std::isnan(b))
        return std::numeric_limits<double>::quiet_NaN();
    const double hi = std::max(a, b), lo = std::min(a, b);
    if (std::isinf(hi))
        return hi;
    return hi + std::log1p(std::exp(lo - hi));
}

} // namespace

template <class T>
T crossEntropyForward(const Matrix<T> &h, const Matrix<T> &w, const Vector<T> &b, const std::vector<int32_t> &targets,
                      int64_t chunk, CrossEntropyState<T> &state) {
    const int64_t rows = h.rows(), vocab = w.rows();
    assert(int64_t(targets.size()) == rows && w.cols() == h.cols() && chunk > 0);
    // Each row's log-normalizer, chunk by chunk: the chunk's log-sum-exp (fp32 through the CPU kernels, ~1e-7
    // relative), combined in fp64.
    std::vector<double> lse(size_t(rows), -std::numeric_limits<double>::infinity());
    Vector<T> target = Vector<T>::Zero(rows);
    Matrix<T> logits;
    for (int64_t c0 = 0; c0 < vocab; c0 += chunk) {
        const int64_t n = std::min(chunk, vocab - c0);
        timesTransposed(h, w.data() + c0 * w.cols(), n, logits);
        if (b.size())
            logits.rowwise() += b.segment(c0, n).transpose();
        forRanges(rows, 1, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                double chunkLse;
                if constexpr (std::is_same_v<T, float>) {
                    chunkLse = cpu::cpuKernels().logSumExp(logits.row(r).data(), n);
                } else {
                    const T m = logits.row(r).maxCoeff();
                    chunkLse = double(m) + std::log((logits.row(r).array() - m).exp().sum());
                }
                lse[size_t(r)] = logAddExp(lse[size_t(r)], chunkLse);
                const int32_t t = targets[size_t(r)];
                if (t >= c0 && t < c0 + n)
                    target(r) = logits(r, t - c0);
            }
        });
    }
    state.logSumExp = Eigen::Map<const Vector<double>>(lse.data(), rows).cast<T>();
    state.count = 0;
    T loss = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t t = targets[size_t(r)];
        if (t < 0)
            continue;
        require(t < vocab, "cross-entropy", "target id " + std::to_string(t) + " is outside the vocabulary");
        loss += state.logSumExp(r) - target(r);
        ++state.count;
    }
    return state.count ? loss / T(state.count) : T(0);
}

template <class T>
void crossEntropyBackward(const Matrix<T> &h, const Matrix<T> &w, const Vector<T> &b,
                          const std::vector<int32_t> &targets, int64_t chunk, const CrossEntropyState<T> &state,
                          T scale, Matrix<T> &dh, Matrix<T> *dw, Vector<T> *db) {
    const int64_t rows = h.rows(), vocab = w.rows();
    if (!state.count)
        return;
    const T norm = scale / T(state.count);
    Matrix<T> g;
    for (int64_t c0 = 0; c0 < vocab; c0 += chunk) {
        const int64_t n = std::min(chunk, vocab - c0);
        timesTransposed(h, w.data() + c0 * w.cols(), n, g);
        if (b.size())
            g.rowwise() += b.segment(c0, n).transpose();
        forRanges(rows, 1, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const int32_t t = targets[size_t(r)];
                if (t < 0) {
                    g.row(r).setZero();
                    continue;
                }
                if constexpr (std::is_same_v<T, float>)
                    cpu::cpuKernels().scaledExp(g.row(r).data(), n, state.logSumExp(r), norm);
                else
                    g.row(r) = ((g.row(r).array() - state.logSumExp(r)).exp() * norm).matrix();
                if (t >= c0 && t < c0 + n)
                    g(r, t - c0) -= norm;
            }
        });
        const int64_t width = h.cols();
        gemm<T>(false, false, rows, width, n, T(1), g.data(), n, w.data() + c0 * width, width, T(1), dh.data(), width);
        if (dw)
            gemm<T>(true, false, n, width, rows, T(1), g.data(), n, h.data(), width, T(1), dw->data() + c0 * width,
                    width);
        if (db)
            db->segment(c0, n) += g.colwise().sum().transpose();
    }
}

// ---- instantiations ----

#define LATHE_TRAIN_OPS(T)                                                                                             \
    template void matmul<T>(const Matrix<T> &, bool, const Matrix<T> &, bool, T, T, Matrix<T> &);                     \
    template void embeddingForward<T>(const Matrix<T> &, const std::vector<int32_t> &, Matrix<T> &);                 \
    template void embeddingBackward<T>(const Matrix<T> &, const std::vector<int32_t> &, Matrix<T> &);                \
    template void rmsNormForward<T>(const Matrix<T> &, const Vector<T> &, T, Matrix<T> &, NormState<T> &);           \
    template void rmsNormBackward<T>(const Matrix<T> &, const Matrix<T> &, const Vector<T> &, const NormState<T> &,  \
                                     Matrix<T> &, Vector<T> *);                                                       \
    template void layerNormForward<T>(const Matrix<T> &, const Vector<T> &, const Vector<T> &, T, Matrix<T> &,       \
                                      NormState<T> &);                                                                \
    template void layerNormBackward<T>(const Matrix<T> &, const Matrix<T> &, const Vector<T> &, const NormState<T> &, \
                                       Matrix<T> &, Vector<T> *, Vector<T> *);                                        \
    template void linearForward<T>(const Matrix<T> &, const Matrix<T> &, const Vector<T> &, Matrix<T> &);            \
    template void linearBackward<T>(const Matrix<T> &, const Matrix<T> &, const Matrix<T> &, Matrix<T> *,            \
                                    Matrix<T> *, Vector<T> *);                                                        \
    template void ropeForward<T>(Matrix<T> &, int64_t, int, int, const RopeAngles<T> &);                             \
    template void ropeBackward<T>(Matrix<T> &, int64_t, int, int, const RopeAngles<T> &);                            \
    template void attentionForward<T>(const Matrix<T> &, const Matrix<T> &, const Matrix<T> &,                       \
                                      const AttentionDims &, Matrix<T> &, AttentionState<T> &);                       \
    template void attentionBackward<T>(const Matrix<T> &, const Matrix<T> &, const Matrix<T> &, const Matrix<T> &,   \
                                       const AttentionDims &, const AttentionState<T> &, Matrix<T> &, Matrix<T> &,    \
                                       Matrix<T> &);                                                                  \
    template std::vector<T> attentionLogSumExp<T>(const Matrix<T> &, const Matrix<T> &, const AttentionDims &);     \
    template AttentionState<T> attentionFromLogSumExp<T>(const Matrix<T> &, const Matrix<T> &, const AttentionDims &, \
                                                         const T *);                                                  \
    template void swigluForward<T>(const Matrix<T> &, const Matrix<T> &, Matrix<T> &);                               \
    template void swigluBackward<T>(const Matrix<T> &, const Matrix<T> &, const Matrix<T> &, Matrix<T> &,            \
                                    Matrix<T> &);                                                                     \
    template void geluForward<T>(Gelu, const Matrix<T> &, Matrix<T> &);                                              \
    template void geluBackward<T>(Gelu, const Matrix<T> &, const Matrix<T> &, Matrix<T> &);                          \
    template void reluForward<T>(const Matrix<T> &, Matrix<T> &);                                                    \
    template void reluBackward<T>(const Matrix<T> &, const Matrix<T> &, Matrix<T> &);                                \
    template T crossEntropyForward<T>(const Matrix<T> &, const Matrix<T> &, const Vector<T> &,                       \
                                      const std::vector<int32_t> &, int64_t, CrossEntropyState<T> &);                 \
    template void crossEntropyBackward<T>(const Matrix<T> &, const Matrix<T> &, const Vector<T> &,                   \
                                          const std::vector<int32_t> &, int64_t, const CrossEntropyState<T> &, T,      \
                                          Matrix<T> &, Matrix<T> *, Vector<T> *);

LATHE_TRAIN_OPS(float)
LATHE_TRAIN_OPS(double)
#undef LATHE_TRAIN_OPS

} // namespace lathe::train
