#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// Which entries of a (rows x cols) weight matrix a pruning method removes, given importance scores of the same
// shape (higher = more important). Masks are row-major bytes, 1 = kept, 0 = pruned.
struct SparsityPattern {
    double ratio = 0.5;  // fraction of entries pruned, in [0, 1); ignored for N:M
    int n = 0, m = 0;    // N:M when m > 0: in every M consecutive inputs of a row the N lowest scores are pruned
                         // (METHODS.md, Wanda's convention; 2:4 and 4:8 both prune 50%)
    bool perRow = false; // unstructured only: prune `ratio` of every output row (Wanda) instead of the whole matrix

    bool isNm() const { return m > 0; }
    double prunedFraction() const { return isNm() ? double(n) / double(m) : ratio; }
    std::string describe() const; // "50% unstructured", "50% per row", "2:4"
};

// Checks a pattern against a matrix width; LatheError with a hint when it cannot be applied (ratio outside
// [0, 1), N >= M or N < 0, M not dividing the row length).
void validatePattern(const SparsityPattern &p, int64_t cols);

// How many entries of a (rows x cols) matrix the pattern prunes: exactly what pruneMask removes. An N:M pattern
// whose M does not divide the row prunes nothing here (pruneMask refuses it); estimates skip such matrices.
int64_t prunedCount(const SparsityPattern &p, int64_t rows, int64_t cols);

// The mask that prunes exactly floor(ratio * count) entries of each group (the matrix, a row, or an M-group),
// lowest scores first, ties broken by position. NaN scores count as lowest.
std::vector<uint8_t> pruneMask(const float *scores, int64_t rows, int64_t cols, const SparsityPattern &p);

struct SparsityStats {
    int64_t zeros = 0;
    double sparsity = 0;                 // zeros / entries
    std::vector<float> rowZeroFraction;  // per output row
    std::vector<float> colZeroFraction;  // per input column
    bool nmValid = true;                 // every M-group has at least N zeros (when n, m given)
};

// Statistics of a mask (1 = kept). With m > 0, nmValid says whether it satisfies N:M.
SparsityStats maskStats(const uint8_t *mask, int64_t rows, int64_t cols, int n = 0, int m = 0);

// Statistics of the zeros already present in a weight matrix (exact 0.0f).
SparsityStats zeroStats(const float *w, int64_t rows, int64_t cols, int n = 0, int m = 0);

} // namespace lathe
