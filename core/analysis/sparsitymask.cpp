#include "analysis/sparsitymask.h"

#include "base/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lathe {

namespace {

// Ordering key: NaN sorts first (pruned first), then by value, then by position.
bool lessScore(float a, float b) {
    const bool an = std::isnan(a), bn = std::isnan(b);
    if (an != bn)
        return an;
    return a < b;
}

// Prunes the `k` lowest of scores[idx[0..count)] (positions in the mask `out`).
void pruneLowest(const float *scores, const int64_t *idx, int64_t count, int64_t k, uint8_t *mask,
                 std::vector<int64_t> &scratch) {
    if (k <= 0)
        return;
    scratch.assign(idx, idx + count);
    auto cmp = [scores](int64_t a, int64_t b) {
        if (lessScore(scores[a], scores[b]))
            return true;
        if (lessScore(scores[b], scores[a]))
            return false;
        return a < b;
    };
    if (k < count)
        std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), cmp);
    for (int64_t i = 0; i < std::min(k, count); ++i)
        mask[scratch[size_t(i)]] = 0;
}

} // namespace

std::string SparsityPattern::describe() const {
    if (isNm())
        return std::to_string(n) + ":" + std::to_string(m);
    const int pct = int(std::lround(ratio * 100));
    return std::to_string(pct) + (perRow ? "% per row" : "% unstructured");
}

void validatePattern(const SparsityPattern &p, int64_t cols) {
    if (p.isNm()) {
        if (p.n < 0 || p.n >= p.m)
            throw LatheError("N:M pattern " + std::to_string(p.n) + ":" + std::to_string(p.m) + " is invalid",
                             "N must be at least 0 and smaller than M, as in 2:4 or 4:8");
        if (cols % p.m != 0)
            throw LatheError("N:M pattern " + p.describe() + " does not fit rows of " + std::to_string(cols) +
                                 " inputs",
                             "M must divide the number of inputs; exclude this matrix from the targets or pick "
                             "another M");
        return;
    }
    if (!(p.ratio >= 0.0 && p.ratio < 1.0))
        throw LatheError("sparsity " + std::to_string(p.ratio) + " is outside [0, 1)",
                         "give the fraction of weights to remove, e.g. 0.5 for 50%");
}

int64_t prunedCount(const SparsityPattern &p, int64_t rows, int64_t cols) {
    if (p.isNm())
        return cols % p.m == 0 ? rows * (cols / p.m) * p.n : 0;
    if (p.perRow)
        return int64_t(std::floor(p.ratio * double(cols))) * rows;
    return int64_t(std::floor(p.ratio * double(rows * cols)));
}

std::vector<uint8_t> pruneMask(const float *scores, int64_t rows, int64_t cols, const SparsityPattern &p) {
    validatePattern(p, cols);
    std::vector<uint8_t> mask(size_t(rows * cols), 1);
    std::vector<int64_t> idx, scratch;
    if (p.isNm()) {
        idx.resize(size_t(p.m));
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < cols; g += p.m) {
                std::iota(idx.begin(), idx.end(), r * cols + g);
                pruneLowest(scores, idx.data(), p.m, p.n, mask.data(), scratch);
            }
    } else if (p.perRow) {
        const auto k = int64_t(std::floor(p.ratio * double(cols)));
        idx.resize(size_t(cols));
        for (int64_t r = 0; r < rows; ++r) {
            std::iota(idx.begin(), idx.end(), r * cols);
            pruneLowest(scores, idx.data(), cols, k, mask.data(), scratch);
        }
    } else {
        const int64_t total = rows * cols;
        const auto k = int64_t(std::floor(p.ratio * double(total)));
        idx.resize(size_t(total));
        std::iota(idx.begin(), idx.end(), 0);
        pruneLowest(scores, idx.data(), total, k, mask.data(), scratch);
    }
    return mask;
}

namespace {

template <class IsZero>
SparsityStats statsOf(IsZero isZero, int64_t rows, int64_t cols, int n, int m) {
    SparsityStats st;
    st.rowZeroFraction.assign(size_t(rows), 0.f);
    std::vector<int64_t> colZeros(size_t(cols), 0);
    const bool checkNm = m > 0 && cols % m == 0;
    for (int64_t r = 0; r < rows; ++r) {
        int64_t rowZeros = 0, groupZeros = 0;
        for (int64_t c = 0; c < cols; ++c) {
            const bool z = isZero(r * cols + c);
            rowZeros += z;
            colZeros[size_t(c)] += z;
            if (checkNm) {
                groupZeros += z;
                if ((c + 1) % m == 0) {
                    if (groupZeros < n)
                        st.nmValid = false;
                    groupZeros = 0;
                }
            }
        }
        st.zeros += rowZeros;
        st.rowZeroFraction[size_t(r)] = cols ? float(double(rowZeros) / double(cols)) : 0.f;
    }
    if (m > 0 && !checkNm)
        st.nmValid = false;
    st.colZeroFraction.resize(size_t(cols));
    for (int64_t c = 0; c < cols; ++c)
        st.colZeroFraction[size_t(c)] = rows ? float(double(colZeros[size_t(c)]) / double(rows)) : 0.f;
    st.sparsity = rows > 0 && cols > 0 ? double(st.zeros) / double(rows * cols) : 0.0;
    return st;
}

} // namespace

SparsityStats maskStats(const uint8_t *mask, int64_t rows, int64_t cols, int n, int m) {
    return statsOf([mask](int64_t i) { return mask[i] == 0; }, rows, cols, n, m);
}

SparsityStats zeroStats(const float *w, int64_t rows, int64_t cols, int n, int m) {
    return statsOf([w](int64_t i) { return w[i] == 0.f; }, rows, cols, n, m);
}

} // namespace lathe
