#include "train/linearkinds.h"

#include "base/error.h"
#include "base/parallel.h"
#include "numeric/blas.h"
#include "base/random.h"
#include "numeric/linalg.h"

#include <algorithm>
#include <bit>
#include <type_traits>
#include <cmath>

namespace lathe::train {

namespace {

// A parameter's gradient when it is trainable, else null (the op skips that gradient).
template <class T> Matrix<T> *gradOf(Parameter<T> *p) { return p && p->trainable() ? &p->grad : nullptr; }

// The (out x in) gradient of W_eff for y = x W_eff^T: G = dy^T x (through BLAS, as linearBackward computes dW).
template <class T> Matrix<T> weightGradient(const Matrix<T> &dy, const Matrix<T> &x) {
    Matrix<T> g = Matrix<T>::Zero(dy.cols(), x.cols());
    const Matrix<T> none(dy.cols(), x.cols());
    linearBackward<T>(dy, x, none, nullptr, &g, nullptr);
    return g;
}

// w ⊙ mask (a 0/1 byte per entry, row-major), split over the threads: a memory-bound pass over a weight.
template <class T> Matrix<T> applyMask(const Matrix<T> &w, const std::vector<uint8_t> &mask) {
    Matrix<T> out(w.rows(), w.cols());
    parallelFor(w.size(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            out.data()[i] = w.data()[i] * T(mask[size_t(i)]); // a product, not a branch: masks are random
    }, cpuWorkThreads());
    return out;
}

template <class T> Parameter<T> &addParameter(ParameterSet<T> &params, std::string name, Matrix<T> value, TensorRole role,
                                              int layer, bool decay = true) {
    Parameter<T> p;
    p.name = std::move(name);
    p.role = role;
    p.layer = layer;
    p.decay = decay;
    p.extra = true;
    p.value = std::move(value);
    return params.add(std::move(p));
}

// "model.layers.0.mlp.up_proj.weight" -> "model.layers.0.mlp.up_proj".
std::string linearName(const std::string &weightName) {
    const std::string suffix = ".weight";
    return weightName.size() > suffix.size() && weightName.compare(weightName.size() - suffix.size(), suffix.size(), suffix) == 0
               ? weightName.substr(0, weightName.size() - suffix.size())
               : weightName;
}

template <class T> Matrix<T> standardNormalMatrix(int64_t rows, int64_t cols, uint64_t stream) {
    Matrix<T> m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = T(standardNormal(stream, uint64_t(i)));
    return m;
}

} // namespace

// ---- every kind ----

template <class T> void LinearKind<T>::addBias(Matrix<T> &y, const LinearSelection &sel) const {
    if (!m_bias)
        return;
    const T *b = m_bias->value.data();
    if (sel.rows.empty()) {
        y.rowwise() += Eigen::Map<const Vector<T>>(b, m_out).transpose();
    } else {
        for (size_t j = 0; j < sel.rows.size(); ++j)
            y.col(int64_t(j)).array() += b[sel.rows[j]];
    }
}

template <class T> void LinearKind<T>::biasBackward(const Matrix<T> &dy, const LinearSelection &sel) const {
    if (!m_bias || !m_bias->trainable())
        return;
    const Vector<T> sums = dy.colwise().sum().transpose();
    for (int64_t j = 0; j < sums.size(); ++j)
        m_bias->grad.data()[sel.rows.empty() ? j : sel.rows[size_t(j)]] += sums[j];
}

template <class T> void LinearKind<T>::requireAll(const LinearSelection &sel) const {
    if (!sel.all())
        throw LatheError(m_weightName + ": a " + kindName() + " linear cannot run on a subset of its channels",
                         "gathered (SAT) runs need dense linears");
}

// ---- dense and gathered ----

BlockGather blockGather(const AttentionDims &dims, const BlockSelection &sel) {
    BlockGather g;
    g.dims = dims;
    if (!sel.mlpChannels.empty()) {
        g.in.rows = sel.mlpChannels;
        g.down.cols = sel.mlpChannels;
    }
    if (!sel.kvGroups.empty()) {
        const int perGroup = dims.heads / dims.kvHeads, d = dims.headDim;
        for (const int32_t grp : sel.kvGroups) {
            for (int h = grp * perGroup; h < (grp + 1) * perGroup; ++h)
                for (int j = 0; j < d; ++j)
                    g.q.rows.push_back(h * d + j);
            for (int j = 0; j < d; ++j)
                g.k.rows.push_back(grp * d + j);
        }
        g.v.rows = g.k.rows;
        g.o.cols = g.q.rows;
        const int32_t qw = dims.heads * d, kw = dims.kvHeads * d;
        g.qkv.rows = g.q.rows;
        for (const int32_t r : g.k.rows)
            g.qkv.rows.push_back(qw + r);
        for (const int32_t r : g.k.rows)
            g.qkv.rows.push_back(qw + kw + r);
        g.dims.heads = int(sel.kvGroups.size()) * perGroup;
        g.dims.kvHeads = int(sel.kvGroups.size());
    }
    return g;
}

// Column norms of the row-major activation: sums of squares row by row over column ranges (contiguous reads, split
// over the threads) rather than Eigen's strided column walk, which ran on one core every step.
template <class T>
void activationNorms(const T *act, int64_t rows, int64_t channels, const T *ctx, int groups, int64_t groupWidth,
                     T *out) {
    const Eigen::Map<const Matrix<T>> a(act, rows, channels), c(ctx, rows, int64_t(groups) * groupWidth);
    Eigen::Map<Vector<T>> norms(out, channels);
    norms.setZero();
    parallelFor(channels, 64, [&](int64_t c0, int64_t c1) {
        for (int64_t r = 0; r < rows; ++r)
            norms.segment(c0, c1 - c0) += a.row(r).segment(c0, c1 - c0).transpose().cwiseAbs2();
        norms.segment(c0, c1 - c0) = norms.segment(c0, c1 - c0).cwiseSqrt();
    }, cpuWorkThreads());
    for (int g = 0; g < groups; ++g)
        out[channels + g] = c.middleCols(int64_t(g) * groupWidth, groupWidth).norm();
}

template <class T>
DenseLinear<T>::DenseLinear(Parameter<T> *weight, Parameter<T> *bias)
    : LinearKind<T>(weight->name, weight->value.rows(), weight->value.cols(), bias), m_w(weight) {}

namespace {

// W restricted to the selected rows and columns, as a contiguous (out' x in') matrix.
template <class T> Matrix<T> gatherBlock(const Matrix<T> &w, const LinearSelection &sel) {
    const int64_t rows = sel.rows.empty() ? w.rows() : int64_t(sel.rows.size());
    const int64_t cols = sel.cols.empty() ? w.cols() : int64_t(sel.cols.size());
    Matrix<T> out(rows, cols);
    parallelFor(rows, 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t r = sel.rows.empty() ? i : sel.rows[size_t(i)];
            if (sel.cols.empty())
                out.row(i) = w.row(r);
            else
                for (int64_t j = 0; j < cols; ++j)
                    out(i, j) = w(r, sel.cols[size_t(j)]);
        }
    }, cpuWorkThreads());
    return out;
}

// The inverse: adds the (out' x in') block g into the full-size gradient (selected rows are distinct, so the row
// ranges of the threads never meet).
template <class T> void scatterAddBlock(const Matrix<T> &g, const LinearSelection &sel, Matrix<T> &grad) {
    parallelFor(g.rows(), 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t r = sel.rows.empty() ? i : sel.rows[size_t(i)];
            if (sel.cols.empty())
                grad.row(r) += g.row(i);
            else
                for (int64_t j = 0; j < g.cols(); ++j)
                    grad(r, sel.cols[size_t(j)]) += g(i, j);
        }
    }, cpuWorkThreads());
}

} // namespace

template <class T> void DenseLinear<T>::forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel) {
    if (sel.all()) {
        linearForward<T>(x, m_w->value, Vector<T>(), y);
    } else {
        const Matrix<T> w = gatherBlock(m_w->value, sel);
        assert(x.cols() == w.cols());
        linearForward<T>(x, w, Vector<T>(), y);
    }
    this->addBias(y, sel);
}

template <class T>
void DenseLinear<T>::backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel) {
    if (sel.all()) {
        linearBackward<T>(dy, x, m_w->value, dx, gradOf(m_w), nullptr);
    } else {
        const Matrix<T> w = gatherBlock(m_w->value, sel);
        Matrix<T> g;
        if (m_w->trainable())
            g = Matrix<T>::Zero(w.rows(), w.cols());
        linearBackward<T>(dy, x, w, dx, m_w->trainable() ? &g : nullptr, nullptr);
        if (m_w->trainable())
            scatterAddBlock(g, sel, m_w->grad);
    }
    this->biasBackward(dy, sel);
}

// ---- masks ----

namespace {

// Order-preserving unsigned keys of floating-point values: a < b exactly when key(a) < key(b), for every value but
// NaN; -0 and +0 share a key, as they compare equal.
template <class T> using KeyOf = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <class T> KeyOf<T> orderKey(T v) {
    using K = KeyOf<T>;
    constexpr K top = K(1) << (sizeof(K) * 8 - 1);
    const K bits = std::bit_cast<K>(v == T(0) ? T(0) : v);
    return (bits & top) ? K(~bits) : K(bits | top);
}

template <class T> T fromOrderKey(KeyOf<T> key) {
    using K = KeyOf<T>;
    constexpr K top = K(1) << (sizeof(K) * 8 - 1);
    return std::bit_cast<T>((key & top) ? K(key & ~top) : K(~key));
}

// Contiguous parts of n values for the selection's passes: one per thread, 64 Ki values each at the least. Parts,
// not parallelFor's ranges, so that the tie counts of one pass line up with the next. forEach runs
// f(part, begin, end) for every part, split over the threads.
struct Parts {
    int64_t n;
    int count;
    int64_t size;
    explicit Parts(int64_t values)
        : n(values), count(int(std::clamp<int64_t>(n / (1 << 16), 1, cpuWorkThreads()))),
          size((n + count - 1) / count) {}
    template <class F> void forEach(F &&f) const {
        parallelFor(count, 1, [&](int64_t p0, int64_t p1) {
            for (int64_t p = p0; p < p1; ++p)
                f(p, p * size, std::min(n, (p + 1) * size));
        }, cpuWorkThreads());
    }
};

// Finds the bin of a histogram that holds the k-th smallest key, and k within that bin.
inline int64_t binOfKth(const std::vector<int64_t> &hist, int64_t &k) {
    for (size_t bin = 0;; ++bin) {
        if (k < hist[bin])
            return int64_t(bin);
        k -= hist[bin];
    }
}

// The k-th smallest (0-based) of n values, by a radix selection on their keys, 11 bits at a time. The first two
// digits are histograms split over the threads (the first one in four interleaved copies per thread: the top bits
// of similar values fall in a few bins, and one copy would serialise on them); the second pass also keeps the
// keys in the chosen first bin, and the remaining digits are found among those. Replaces nth_element, which ran on
// one core and was a quarter of a PST step; the answer is the same value. Throws on NaN.
template <class T> T kthSmallest(const T *v, int64_t n, int64_t k) {
    using K = KeyOf<T>;
    constexpr int keyBits = int(sizeof(K) * 8), digitBits = 11, bins = 1 << digitBits, copies = 4;
    constexpr K digitMask = K(bins - 1);
    const Parts parts(n);
    std::vector<int64_t> counts(size_t(parts.count) * copies * bins, 0), hist(bins, 0);
    // The digit at bit `shift` of the k-th smallest key, from the parts' histograms (k becomes its rank in that
    // bin); the histograms are cleared for the next pass.
    auto pickDigit = [&](int shift) {
        std::fill(hist.begin(), hist.end(), 0);
        for (size_t c = 0; c < counts.size(); ++c)
            hist[c % bins] += counts[c];
        std::fill(counts.begin(), counts.end(), 0);
        return K(K(binOfKth(hist, k)) << shift);
    };
    std::vector<uint8_t> partNan(size_t(parts.count), 0);
    int hi = keyBits, lo = keyBits - digitBits;
    parts.forEach([&](int64_t p, int64_t begin, int64_t end) {
        int64_t *h = counts.data() + p * copies * bins;
        for (int64_t i = begin; i < end; ++i) {
            partNan[size_t(p)] |= uint8_t(std::isnan(v[i]));
            ++h[(i % copies) * bins + int64_t(orderKey(v[i]) >> lo)];
        }
    });
    if (std::count(partNan.begin(), partNan.end(), uint8_t(1)))
        throw LatheError("pruning scores became NaN", "the training diverged: lower the learning rate");
    K prefix = pickDigit(lo);
    // Second digit, keeping the candidates: the keys whose first digit is the chosen one.
    hi = lo;
    lo = hi - digitBits;
    std::vector<std::vector<K>> candidates(size_t(parts.count));
    parts.forEach([&](int64_t p, int64_t begin, int64_t end) {
        int64_t *h = counts.data() + p * copies * bins;
        for (int64_t i = begin; i < end; ++i) {
            const K key = orderKey(v[i]);
            if ((key >> hi) == (prefix >> hi)) {
                candidates[size_t(p)].push_back(key);
                ++h[(key >> lo) & digitMask];
            }
        }
    });
    prefix |= pickDigit(lo);
    for (hi = lo; hi > 0; hi = lo) {
        lo = std::max(0, hi - digitBits);
        std::fill(hist.begin(), hist.end(), 0);
        for (const auto &part : candidates)
            for (const K key : part)
                if ((key >> hi) == (prefix >> hi))
                    ++hist[size_t((key >> lo) & K((K(1) << (hi - lo)) - 1))];
        prefix |= K(K(binOfKth(hist, k)) << lo);
    }
    return fromOrderKey<T>(prefix);
}

} // namespace

int64_t prunedCount(int64_t n, double sparsity) {
    return std::clamp<int64_t>(int64_t(std::floor(double(n) * sparsity)), 0, n);
}

template <class T> void pruneSmallest(const T *s, int64_t n, int64_t prune, uint8_t *mask) {
    std::fill(mask, mask + n, uint8_t(1));
    if (prune <= 0)
        return;
    prune = std::min(prune, n);
    // The prune-th smallest value is the threshold: everything below it goes, and of the values equal to it the
    // first ones by position until `prune` are gone. Each part counts its values below and equal to it, so that it
    // knows how many of the ties before it are pruned.
    const T threshold = kthSmallest(s, n, prune - 1);
    const Parts parts(n);
    std::vector<int64_t> below(size_t(parts.count), 0), equal(size_t(parts.count), 0);
    parts.forEach([&](int64_t p, int64_t begin, int64_t end) {
        int64_t lower = 0, same = 0; // locals: the parts' counters share a cache line
        for (int64_t i = begin; i < end; ++i) {
            lower += s[i] < threshold;
            same += s[i] == threshold;
        }
        below[size_t(p)] = lower;
        equal[size_t(p)] = same;
    });
    int64_t tiesToPrune = prune;
    for (const int64_t b : below)
        tiesToPrune -= b;
    std::vector<int64_t> tiesBefore(size_t(parts.count), 0);
    for (int p = 1; p < parts.count; ++p)
        tiesBefore[size_t(p)] = tiesBefore[size_t(p - 1)] + equal[size_t(p - 1)];
    parts.forEach([&](int64_t p, int64_t begin, int64_t end) {
        int64_t tie = tiesBefore[size_t(p)];
        for (int64_t i = begin; i < end; ++i) {
            // Without branches: which side of the threshold a score falls is random.
            const bool same = s[i] == threshold;
            mask[size_t(i)] = uint8_t(!((s[i] < threshold) | (same & (tie < tiesToPrune))));
            tie += same;
        }
    });
}

template <class T> std::vector<uint8_t> pruneSmallestMask(const Matrix<T> &scores, double sparsity) {
    std::vector<uint8_t> mask(size_t(scores.size()));
    pruneSmallest(scores.data(), scores.size(), prunedCount(scores.size(), sparsity), mask.data());
    return mask;
}

template <class T>
MaskedLinear<T>::MaskedLinear(Parameter<T> *weight, Parameter<T> *bias, std::vector<uint8_t> mask)
    : LinearKind<T>(weight->name, weight->value.rows(), weight->value.cols(), bias), m_w(weight),
      m_mask(std::move(mask)) {
    require(int64_t(m_mask.size()) == weight->value.size(), weight->name, "the mask has another size than the weight");
}

template <class T>
MaskedLinear<T>::MaskedLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, double sparsity)
    : LinearKind<T>(weight->name, weight->value.rows(), weight->value.cols(), bias), m_w(weight),
      m_sparsity(sparsity) {
    const std::string name = weight->name;
    const TensorRole role = weight->role;
    const int layer = weight->layer;
    Matrix<T> init = weight->value.cwiseAbs();
    m_scores = &addParameter(params, linearName(name) + ".mask_scores", std::move(init), role, layer, false);
    updateMask();
}

template <class T> void MaskedLinear<T>::setSparsity(double sparsity) {
    m_sparsity = sparsity;
    updateMask();
}

template <class T> void MaskedLinear<T>::updateMask() {
    if (m_scores)
        m_mask = pruneSmallestMask(m_scores->value, m_sparsity);
}

template <class T> Matrix<T> MaskedLinear<T>::maskedWeight() const {
    return applyMask(m_w->value, m_mask);
}

template <class T> Matrix<T> MaskedLinear<T>::effectiveWeight() const {
    // From the scores as they are now (an optimizer step may have moved them since the last forward).
    return applyMask(m_w->value, m_scores ? pruneSmallestMask(m_scores->value, m_sparsity) : m_mask);
}

template <class T> int64_t MaskedLinear<T>::activeWeights() const {
    return int64_t(std::count(m_mask.begin(), m_mask.end(), uint8_t(1)));
}

template <class T> void MaskedLinear<T>::forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel) {
    this->requireAll(sel);
    updateMask(); // the scores moved with the last optimizer step
    linearForward<T>(x, maskedWeight(), Vector<T>(), y);
    this->addBias(y, sel);
}

template <class T>
void MaskedLinear<T>::backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel) {
    this->requireAll(sel);
    const Matrix<T> w = maskedWeight(); // with the forward's mask
    const bool needG = m_w->trainable() || (m_scores && m_scores->trainable());
    if (dx)
        linearBackward<T>(dy, x, w, dx, nullptr, nullptr);
    if (needG) {
        const Matrix<T> g = weightGradient(dy, x);
        if (m_w->trainable())
            m_w->grad += applyMask(g, m_mask);
        if (m_scores && m_scores->trainable())
            m_scores->grad += g.cwiseProduct(m_w->value); // straight through the mask
    }
    this->biasBackward(dy, sel);
}

// ---- low rank plus sparse ----

template <class T> void rowAbsProductSums(const T *v, const T *g, int64_t rows, int64_t cols, T *out) {
    const Eigen::Map<const Matrix<T>> a(v, rows, cols), b(g, rows, cols);
    parallelFor(rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            out[r] = a.row(r).cwiseProduct(b.row(r)).cwiseAbs().sum();
    }, cpuWorkThreads());
}

template <class T>
LowRankSparseLinear<T>::LowRankSparseLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias,
                                            int rank)
    : LowRankSparseLinear(params, weight, bias, rank, thinSvd(weight->value.template cast<float>())) {}

template <class T>
LowRankSparseLinear<T>::LowRankSparseLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias,
                                            int rank, const ThinSvd &svd)
    : LinearKind<T>(weight->name, weight->value.rows(), weight->value.cols(), bias) {
    const int64_t out = this->m_out, in = this->m_in;
    require(rank >= 1 && rank <= std::min(out, in), weight->name,
            "rank " + std::to_string(rank) + " is outside 1.." + std::to_string(std::min(out, in)));
    assert(svd.u.rows() == out && svd.vt.cols() == in && int64_t(svd.s.size()) >= rank);
    Matrix<T> l(out, rank), r(rank, in);
    for (int k = 0; k < rank; ++k) {
        const T root = T(std::sqrt(double(svd.s[size_t(k)])));
        l.col(k) = svd.u.col(k).template cast<T>() * root;
        r.row(k) = svd.vt.row(k).template cast<T>() * root;
    }
    Matrix<T> s = weight->value - l * r;
    const std::string base = linearName(weight->name), name = weight->name;
    const TensorRole role = weight->role;
    const int layer = weight->layer;
    m_l = &addParameter(params, base + ".lowrank_left", std::move(l), role, layer);
    m_r = &addParameter(params, base + ".lowrank_right", std::move(r), role, layer);
    m_s = &addParameter(params, base + ".sparse", std::move(s), role, layer);
    params.remove(name); // the dense weight is now L R + S
    m_rowMask.assign(size_t(out), 1);
}

template <class T> void LowRankSparseLinear<T>::setRowMask(std::vector<uint8_t> keep) {
    require(int64_t(keep.size()) == this->m_out, this->m_weightName, "the row mask has another length than the rows");
    m_rowMask = std::move(keep);
}

template <class T> Matrix<T> LowRankSparseLinear<T>::maskedSparse() const {
    Matrix<T> s = m_s->value;
    for (int64_t i = 0; i < s.rows(); ++i)
        if (!m_rowMask[size_t(i)])
            s.row(i).setZero();
    return s;
}

template <class T> Matrix<T> LowRankSparseLinear<T>::effectiveWeight() const {
    Matrix<T> w = maskedSparse();
    matmul(m_l->value, false, m_r->value, false, T(1), T(1), w);
    return w;
}

template <class T> int64_t LowRankSparseLinear<T>::activeWeights() const {
    const int64_t kept = int64_t(std::count(m_rowMask.begin(), m_rowMask.end(), uint8_t(1)));
    return rank() * (this->m_out + this->m_in) + kept * this->m_in;
}

template <class T>
void LowRankSparseLinear<T>::forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel) {
    this->requireAll(sel);
    // One product with W_eff = L R + S: forming it costs out in r, less than the rows out in of the product.
    linearForward<T>(x, effectiveWeight(), Vector<T>(), y);
    this->addBias(y, sel);
}

template <class T>
void LowRankSparseLinear<T>::backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx,
                                      const LinearSelection &sel) {
    this->requireAll(sel);
    if (dx)
        linearBackward<T>(dy, x, effectiveWeight(), dx, nullptr, nullptr);
    if (m_l->trainable() || m_r->trainable() || m_s->trainable()) {
        const Matrix<T> g = weightGradient(dy, x);
        if (m_l->trainable())
            matmul(g, false, m_r->value, true, T(1), T(1), m_l->grad);
        if (m_r->trainable())
            matmul(m_l->value, true, g, false, T(1), T(1), m_r->grad);
        if (m_s->trainable())
            for (int64_t i = 0; i < g.rows(); ++i)
                if (m_rowMask[size_t(i)])
                    m_s->grad.row(i) += g.row(i);
    }
    this->biasBackward(dy, sel);
}

// ---- PST ----

template <class T>
PstLinear<T>::PstLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, const PstOptions &o,
                        uint64_t seed)
    : LinearKind<T>(weight->name, weight->value.rows(), weight->value.cols(), bias), m_w(weight), m_options(o) {
    const int64_t out = this->m_out, in = this->m_in;
    require(o.rank >= 1 && o.maskRank >= 1 && o.rank <= std::min(out, in) && o.maskRank <= std::min(out, in),
            weight->name, "PST ranks must lie in 1.." + std::to_string(std::min(out, in)));
    const std::string base = linearName(weight->name);
    const TensorRole role = weight->role;
    const int layer = weight->layer;
    uint64_t stream = splitmix(seed); // then the linear's name, FNV-1a: the same streams on every platform
    for (const char ch : base)
        stream = (stream ^ uint8_t(ch)) * 0x100000001B3ull;
    m_u = &addParameter(params, base + ".pst_u", standardNormalMatrix<T>(out, o.rank, splitmix(stream + 1)), role, layer);
    m_v = &addParameter(params, base + ".pst_v", Matrix<T>(Matrix<T>::Zero(o.rank, in)), role, layer);
    m_a = &addParameter(params, base + ".pst_a", standardNormalMatrix<T>(out, o.maskRank, splitmix(stream + 2)), role,
                        layer);
    m_b = &addParameter(params, base + ".pst_b", Matrix<T>(Matrix<T>::Zero(o.maskRank, in)), role, layer);
    m_r = &addParameter(params, base + ".pst_r", Matrix<T>(Matrix<T>::Zero(out, 1)), role, layer);
    m_c = &addParameter(params, base + ".pst_c", Matrix<T>(Matrix<T>::Zero(in, 1)), role, layer);
    params.setTrainable(weight->name, false);
    if (bias)
        params.setTrainable(bias->name, false);
    m_mask.assign(size_t(out * in), 1);
}

// W~ = W + beta U V and the scores M = |W~| + alpha1 A B + alpha2 (R 1^T + 1 C^T) are built row by row over the
// threads, the rank-r products as r scaled row additions: each entry is the same sum in the same order whatever
// the split. Both are memory-bound passes over out x in values, a third of a PST step before they were split.
template <class T> void pstAdapted(const T *w, const PstFactors<T> &f, const PstDims &d, T *adapted) {
    const int rank = d.options.rank;
    const Eigen::Map<const Matrix<T>> W(w, d.out, d.in), U(f.u, d.out, rank), V(f.v, rank, d.in);
    Eigen::Map<Matrix<T>> out(adapted, d.out, d.in);
    const T beta = T(d.options.beta);
    parallelFor(d.out, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            out.row(i) = W.row(i);
            for (int64_t k = 0; k < rank; ++k)
                out.row(i) += (beta * U(i, k)) * V.row(k);
        }
    }, cpuWorkThreads());
}

template <class T> void pstScores(const T *adapted, const PstFactors<T> &f, const PstDims &d, T *scores) {
    const int rank = d.options.maskRank;
    const Eigen::Map<const Matrix<T>> W(adapted, d.out, d.in), A(f.a, d.out, rank), B(f.b, rank, d.in);
    const Eigen::Map<const Vector<T>> R(f.r, d.out), C(f.c, d.in);
    Eigen::Map<Matrix<T>> m(scores, d.out, d.in);
    const T a1 = T(d.options.alpha1), a2 = T(d.options.alpha2);
    parallelFor(d.out, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            m.row(i) = W.row(i).cwiseAbs();
            for (int64_t k = 0; k < rank; ++k)
                m.row(i) += (a1 * A(i, k)) * B.row(k);
            m.row(i).array() += a2 * (R(i) + C.transpose().array());
        }
    }, cpuWorkThreads());
}

// The products with U^T and A^T sum over rows and are split by columns, the others by rows.
template <class T>
void pstBackward(const T *g, const T *adapted, const uint8_t *mask, const PstFactors<T> &f, const PstDims &d,
                 const PstGradients<T> &grads, T *dScoresOut, T *dAdaptedOut) {
    const int64_t out = d.out, in = d.in;
    const int rank = d.options.rank, maskRank = d.options.maskRank;
    const T beta = T(d.options.beta), a1 = T(d.options.alpha1), a2 = T(d.options.alpha2);
    const Eigen::Map<const Matrix<T>> G(g, out, in), w(adapted, out, in), U(f.u, out, rank), V(f.v, rank, in),
        A(f.a, out, maskRank), B(f.b, maskRank, in);
    Eigen::Map<Matrix<T>> dScores(dScoresOut, out, in), dAdapted(dAdaptedOut, out, in);
    parallelFor(out, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            for (int64_t j = 0; j < in; ++j) {
                const T gij = G(i, j), wij = w(i, j);
                const T ds = gij * wij;
                dScores(i, j) = ds;
                dAdapted(i, j) = (mask[size_t(i * in + j)] ? gij : T(0)) + (wij > T(0) ? ds : wij < T(0) ? -ds : T(0));
            }
            if (grads.u)
                for (int64_t k = 0; k < rank; ++k)
                    grads.u[i * rank + k] += beta * dAdapted.row(i).dot(V.row(k));
            if (grads.a)
                for (int64_t k = 0; k < maskRank; ++k)
                    grads.a[i * maskRank + k] += a1 * dScores.row(i).dot(B.row(k));
            if (grads.r)
                grads.r[i] += a2 * dScores.row(i).sum();
            if (grads.w)
                Eigen::Map<Matrix<T>>(grads.w, out, in).row(i) += dAdapted.row(i);
        }
    }, cpuWorkThreads());
    if (grads.v || grads.b || grads.c)
        parallelFor(in, 64, [&](int64_t c0, int64_t c1) {
            const int64_t width = c1 - c0;
            Matrix<T> sumV = Matrix<T>::Zero(grads.v ? rank : 0, width), sumB = Matrix<T>::Zero(grads.b ? maskRank : 0, width);
            Vector<T> sumC = Vector<T>::Zero(grads.c ? width : 0);
            for (int64_t i = 0; i < out; ++i) {
                const auto da = dAdapted.row(i).segment(c0, width);
                const auto ds = dScores.row(i).segment(c0, width);
                for (int64_t k = 0; k < sumV.rows(); ++k)
                    sumV.row(k) += U(i, k) * da;
                for (int64_t k = 0; k < sumB.rows(); ++k)
                    sumB.row(k) += A(i, k) * ds;
                if (grads.c)
                    sumC += ds.transpose();
            }
            if (grads.v)
                Eigen::Map<Matrix<T>>(grads.v, rank, in).middleCols(c0, width) += beta * sumV;
            if (grads.b)
                Eigen::Map<Matrix<T>>(grads.b, maskRank, in).middleCols(c0, width) += a1 * sumB;
            if (grads.c)
                Eigen::Map<Vector<T>>(grads.c, in).segment(c0, width) += a2 * sumC;
        }, cpuWorkThreads());
}

template <class T> PstFactors<T> PstLinear<T>::factors() const {
    return {m_u->value.data(), m_v->value.data(), m_a->value.data(), m_b->value.data(), m_r->value.data(),
            m_c->value.data()};
}

template <class T> Matrix<T> PstLinear<T>::adapted() const {
    Matrix<T> w(this->m_out, this->m_in);
    pstAdapted(m_w->value.data(), factors(), dims(), w.data());
    return w;
}

template <class T> Matrix<T> PstLinear<T>::scores(const Matrix<T> &adapted) const {
    Matrix<T> m(adapted.rows(), adapted.cols());
    pstScores(adapted.data(), factors(), dims(), m.data());
    return m;
}

template <class T> Matrix<T> PstLinear<T>::effectiveWeight() const {
    // From the parameters as they are now, not the last forward's mask.
    const Matrix<T> w = adapted();
    return applyMask(w, pruneSmallestMask(scores(w), m_sparsity));
}

template <class T> int64_t PstLinear<T>::activeWeights() const {
    const int64_t n = this->m_out * this->m_in;
    return n - prunedCount(n, m_sparsity);
}

template <class T> void PstLinear<T>::forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel) {
    this->requireAll(sel);
    const Matrix<T> w = adapted();
    m_mask = pruneSmallestMask(scores(w), m_sparsity);
    linearForward<T>(x, applyMask(w, m_mask), Vector<T>(), y);
    this->addBias(y, sel);
}

template <class T>
void PstLinear<T>::backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel) {
    this->requireAll(sel);
    const Matrix<T> w = adapted(); // W~: recomputed rather than kept (out x in values per linear)
    if (dx)
        linearBackward<T>(dy, x, applyMask(w, m_mask), dx, nullptr, nullptr);
    const Matrix<T> g = weightGradient(dy, x);
    const auto grad = [](Parameter<T> *p) { return p->trainable() ? p->grad.data() : nullptr; };
    const PstGradients<T> grads{grad(m_u), grad(m_v), grad(m_a), grad(m_b), grad(m_r), grad(m_c), grad(m_w)};
    Matrix<T> dScores(this->m_out, this->m_in), dAdapted(this->m_out, this->m_in);
    pstBackward(g.data(), w.data(), m_mask.data(), factors(), dims(), grads, dScores.data(), dAdapted.data());
    this->biasBackward(dy, sel);
}

#define LATHE_LINEAR_KINDS(T)                                                                                          \
    template class LinearKind<T>;                                                                                      \
    template class DenseLinear<T>;                                                                                     \
    template class MaskedLinear<T>;                                                                                    \
    template class LowRankSparseLinear<T>;                                                                             \
    template class PstLinear<T>;                                                                                       \
    template std::vector<uint8_t> pruneSmallestMask<T>(const Matrix<T> &, double);                                   \
    template void pruneSmallest<T>(const T *, int64_t, int64_t, uint8_t *);                                            \
    template void activationNorms<T>(const T *, int64_t, int64_t, const T *, int, int64_t, T *);                      \
    template void rowAbsProductSums<T>(const T *, const T *, int64_t, int64_t, T *);                                   \
    template void pstAdapted<T>(const T *, const PstFactors<T> &, const PstDims &, T *);                              \
    template void pstScores<T>(const T *, const PstFactors<T> &, const PstDims &, T *);                               \
    template void pstBackward<T>(const T *, const T *, const uint8_t *, const PstFactors<T> &, const PstDims &,         \
                                 const PstGradients<T> &, T *, T *);

LATHE_LINEAR_KINDS(float)
LATHE_LINEAR_KINDS(double)
#undef LATHE_LINEAR_KINDS

} // namespace lathe::train
