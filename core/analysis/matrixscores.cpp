#include "analysis/matrixscores.h"

#include "base/error.h"
#include "model/model.h"
#include "numeric/spectrum.h"

#include <algorithm>
#include <cmath>

namespace lathe {

MatrixScores computeMatrixScores(const MatrixScoresRequest &req) {
    MatrixScores out;
    out.tensor = req.tensor;
    out.generation = req.generation;
    try {
        const TensorInfo *t = req.model->find(req.tensor);
        if (!t || t->shape.size() != 2 || t->isBias)
            throw LatheError(req.tensor + " is not a weight matrix");
        out.rows = t->shape[0];
        out.cols = t->shape[1];
        const std::vector<float> w = req.model->loadFloat(*t);
        out.loadedZeros = double(std::count(w.begin(), w.end(), 0.0f)) / double(std::max<size_t>(1, w.size()));
        std::vector<float> scores;
        const std::vector<float> *norms = nullptr;
        if (req.norms) {
            auto it = req.norms->norms.find(req.tensor);
            if (it != req.norms->norms.end() && int64_t(it->second.size()) == out.cols)
                norms = &it->second;
        }
        const std::vector<float> *gradients = nullptr;
        if (req.norms) {
            auto it = req.norms->gradients.find(req.tensor);
            if (it != req.norms->gradients.end() && int64_t(it->second.size()) == out.rows * out.cols)
                gradients = &it->second;
        }
        if (req.kind == ImportanceKind::Wanda && norms) {
            scores = wandaScores(w.data(), out.rows, out.cols, *norms);
            out.used = ImportanceKind::Wanda;
        } else if (req.kind == ImportanceKind::Taylor && gradients) {
            scores = taylorScores(w.data(), out.rows * out.cols, *gradients);
            out.used = ImportanceKind::Taylor;
        } else if (req.kind == ImportanceKind::LoSparse && gradients) {
            scores = loSparseScores(w.data(), out.rows, out.cols, *gradients,
                                    losparseRank(out.rows, out.cols, req.rankRatio));
            out.used = ImportanceKind::LoSparse;
        } else {
            scores = magnitudeScores(w.data(), out.rows, out.cols);
            out.used = ImportanceKind::Magnitude;
            if (req.kind == ImportanceKind::Wanda)
                out.note = req.norms ? "Wanda needs the inputs of a block linear: magnitude shown"
                                     : "Wanda needs calibration (Collect in the parameter panel): magnitude shown";
            else if (importanceNeedsGradients(req.kind) && req.kind != ImportanceKind::Pst)
                out.note = std::string(importanceName(req.kind)) +
                           (req.norms && !req.norms->gradients.empty()
                                ? " scores exist for block linears only: magnitude shown"
                                : " needs gradients (tick 'with gradients' and Collect): magnitude shown");
            else if (req.kind != ImportanceKind::Magnitude)
                out.note = std::string(importanceName(req.kind)) + " scores come from a training run: magnitude shown";
        }
        const std::vector<uint8_t> mask = pruneMask(scores.data(), out.rows, out.cols, req.pattern);
        out.stats = maskStats(mask.data(), out.rows, out.cols, req.pattern.n, req.pattern.m);
        out.rowHist = makeHistogram(out.stats.rowZeroFraction, 50, 0.0, 1.0);
        out.colHist = makeHistogram(out.stats.colZeroFraction, 50, 0.0, 1.0);

        std::vector<float> logs;
        logs.reserve(scores.size());
        for (float s : scores) {
            if (s > 0)
                logs.push_back(std::log10(s));
            else if (s == 0)
                ++out.zeroScores;
        }
        if (!logs.empty()) {
            const auto [mn, mx] = std::minmax_element(logs.begin(), logs.end());
            out.scoreHist = makeHistogram(logs, 60, double(*mn), double(*mx) > double(*mn) ? double(*mx) : double(*mn) + 1);
        }
        const auto k = size_t(std::floor(req.pattern.prunedFraction() * double(scores.size())));
        if (k > 0 && k < scores.size()) {
            std::nth_element(scores.begin(), scores.begin() + std::ptrdiff_t(k), scores.end());
            out.threshold = scores[k] > 0 ? std::log10(double(scores[k])) : out.scoreHist.lo;
        } else {
            out.threshold = std::nan("");
        }
    } catch (const LatheError &e) {
        out.error = e.fullMessage();
    } catch (const std::exception &e) {
        out.error = e.what();
    }
    return out;
}

} // namespace lathe
