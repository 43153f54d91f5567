#include "analysis/importance.h"

#include "numeric/linalg.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace lathe {

const char *importanceName(ImportanceKind kind) {
    switch (kind) {
    case ImportanceKind::Magnitude: return "magnitude";
    case ImportanceKind::Wanda: return "wanda";
    case ImportanceKind::Taylor: return "taylor";
    case ImportanceKind::Pst: return "pst";
    case ImportanceKind::LoSparse: return "losparse";
    }
    return "?";
}

bool parseImportance(const std::string &name, ImportanceKind &kind) {
    for (ImportanceKind k : {ImportanceKind::Magnitude, ImportanceKind::Wanda, ImportanceKind::Taylor,
                             ImportanceKind::Pst, ImportanceKind::LoSparse})
        if (name == importanceName(k)) {
            kind = k;
            return true;
        }
    return false;
}

bool importanceNeedsCalibration(ImportanceKind kind) { return kind == ImportanceKind::Wanda; }

bool importanceNeedsGradients(ImportanceKind kind) {
    return kind == ImportanceKind::Taylor || kind == ImportanceKind::Pst || kind == ImportanceKind::LoSparse;
}

std::vector<float> magnitudeScores(const float *w, int64_t rows, int64_t cols) {
    std::vector<float> s(size_t(rows * cols));
    for (size_t i = 0; i < s.size(); ++i)
        s[i] = std::abs(w[i]);
    return s;
}

std::vector<float> wandaScores(const float *w, int64_t rows, int64_t cols, const std::vector<float> &inputNorms) {
    assert(int64_t(inputNorms.size()) == cols);
    std::vector<float> s(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            s[size_t(r * cols + c)] = std::abs(w[r * cols + c]) * inputNorms[size_t(c)];
    return s;
}

std::vector<float> taylorScores(const float *w, int64_t n, const std::vector<float> &gradients) {
    assert(int64_t(gradients.size()) == n);
    std::vector<float> s(static_cast<size_t>(n));
    for (size_t i = 0; i < s.size(); ++i)
        s[i] = std::abs(w[i]) * gradients[i];
    return s;
}

std::vector<float> loSparseScores(const float *w, int64_t rows, int64_t cols, const std::vector<float> &gradients,
                                  int64_t rank) {
    assert(int64_t(gradients.size()) == rows * cols);
    Mat s = Eigen::Map<const Mat>(w, rows, cols);
    rank = std::clamp<int64_t>(rank, 0, std::min(rows, cols));
    if (rank > 0) {
        const ThinSvd svd = thinSvd(s);
        s.noalias() -= svd.u.leftCols(rank) * Eigen::Map<const Eigen::VectorXf>(svd.s.data(), rank).asDiagonal() *
                       svd.vt.topRows(rank);
    }
    std::vector<float> out(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        double sum = 0;
        for (int64_t c = 0; c < cols; ++c)
            sum += double(std::abs(s(r, c))) * double(gradients[size_t(r * cols + c)]);
        std::fill_n(out.begin() + r * cols, cols, float(sum / double(std::max<int64_t>(1, cols))));
    }
    return out;
}

void ImportanceStore::set(ImportanceKind kind, const std::string &tensor, std::vector<float> scores) {
    m_scores[{kind, tensor}] = std::move(scores);
}

const std::vector<float> *ImportanceStore::find(ImportanceKind kind, const std::string &tensor) const {
    auto it = m_scores.find({kind, tensor});
    return it == m_scores.end() ? nullptr : &it->second;
}

bool ImportanceStore::has(ImportanceKind kind) const {
    auto it = m_scores.lower_bound({kind, std::string()});
    return it != m_scores.end() && it->first.first == kind;
}

void ImportanceStore::clear(ImportanceKind kind) {
    for (auto it = m_scores.begin(); it != m_scores.end();)
        it = it->first.first == kind ? m_scores.erase(it) : std::next(it);
}

} // namespace lathe
