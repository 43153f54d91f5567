#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lathe {

// Importance scores of the entries of a weight matrix (rows x cols, row-major, higher = keep). Data-free and
// calibration-based scores are computed here; gradient-based ones (first-order Taylor |W * dL/dW|, PST's
// |W| + AB + R1^T + 1C^T, LoSparse's smoothed |S * dL/dS|) are produced by the training engine and put in an
// ImportanceStore under their kind, where the views and the methods read them the same way.
enum class ImportanceKind { Magnitude, Wanda, Taylor, Pst, LoSparse };

const char *importanceName(ImportanceKind kind);      // "magnitude", "wanda", "taylor", "pst", "losparse"
bool parseImportance(const std::string &name, ImportanceKind &kind);
bool importanceNeedsCalibration(ImportanceKind kind); // Wanda
bool importanceNeedsGradients(ImportanceKind kind);   // Taylor, PST, LoSparse

// |W_ij|
std::vector<float> magnitudeScores(const float *w, int64_t rows, int64_t cols);

// Wanda (Sun et al. 2023): |W_ij| * ||X_j||_2, where ||X_j|| is the L2 norm of input feature j over the
// calibration tokens. `inputNorms` has `cols` entries.
std::vector<float> wandaScores(const float *w, int64_t rows, int64_t cols, const std::vector<float> &inputNorms);

// Taylor (Molchanov et al. 2019): |W_ij| * g_ij with g the mean |dL/dW| over calibration sequences
// (InputNorms::gradients), `n` entries.
std::vector<float> taylorScores(const float *w, int64_t n, const std::vector<float> &gradients);

// LoSparse (Li et al. 2023): S = W - L R with L R the rank-`rank` truncated SVD of W; the importance of S is
// |S_ij| * g_ij and LoSparse prunes whole rows of S by their mean, so every entry of row i gets that row's mean
// (a mask from these scores prunes whole rows). With rank 0, S = W.
std::vector<float> loSparseScores(const float *w, int64_t rows, int64_t cols, const std::vector<float> &gradients,
                                  int64_t rank);

// Scores by (kind, tensor name). Thread-compatible (no internal locking).
class ImportanceStore {
public:
    void set(ImportanceKind kind, const std::string &tensor, std::vector<float> scores);
    const std::vector<float> *find(ImportanceKind kind, const std::string &tensor) const;
    bool has(ImportanceKind kind) const;
    void clear(ImportanceKind kind);

private:
    std::map<std::pair<ImportanceKind, std::string>, std::vector<float>> m_scores;
};

} // namespace lathe
