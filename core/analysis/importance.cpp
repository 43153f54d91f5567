#include "analysis/importance.h"

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
