#include "comparejob.h"

#include "io/modelloader.h"
#include "model/model.h"

#include <QFileInfo>

#include <algorithm>
#include <cmath>
#include <map>

namespace lathe {

CompareJob::CompareJob(std::shared_ptr<const Model> model, QString modelPath,
                       std::shared_ptr<const AnalyzeResult> analysis, QString otherPath, AnalyzeParams params)
    : Job(QObject::tr("Compare with %1").arg(QFileInfo(otherPath).fileName())), m_model(std::move(model)),
      m_modelPath(std::move(modelPath)), m_analysis(std::move(analysis)), m_otherPath(std::move(otherPath)),
      m_params(std::move(params)) {}

void CompareJob::execute() {
    const ProgressCallback progress = progressCallback();
    auto c = std::make_shared<ModelComparison>();
    c->paths[0] = m_modelPath;
    c->paths[1] = m_otherPath;
    reportProgress(progress, 0.0, "opening " + m_otherPath.toStdString());
    std::shared_ptr<const Model> other(openModel(m_otherPath.toStdString()));
    c->other = other;
    c->otherAnalysis = std::make_shared<const AnalyzeResult>(analyzeModel(*other, {}, m_params, [&](const Progress &p) {
        return !progress || progress(Progress{0.8 * p.fraction, "spectra: " + p.stage});
    }));
    const std::shared_ptr<const AnalyzeResult> analyses[2] = {m_analysis, c->otherAnalysis};
    const Model *models[2] = {m_model.get(), other.get()};
    std::map<int, BlockComparison> blocks;
    for (int side = 0; side < 2; ++side) {
        std::map<int, std::pair<double, int>> ranks, alphas; // block -> (sum, count)
        for (const TensorInfo &t : models[side]->tensors()) {
            if (t.layer < 0 || t.isBias || t.shape.size() != 2 || !isLinearRole(t.role))
                continue;
            reportProgress(progress, 0.8 + 0.1 * side, "counting zeros: " + t.name);
            BlockComparison &b = blocks[t.layer];
            b.layer = t.layer;
            const std::vector<float> w = models[side]->loadFloat(t);
            b.parameters[side] += int64_t(w.size());
            b.nonZero[side] += std::count_if(w.begin(), w.end(), [](float v) { return v != 0.0f; });
            if (analyses[side]) {
                const auto it = analyses[side]->data.spectra.find(t.name);
                if (it != analyses[side]->data.spectra.end()) {
                    ranks[t.layer].first += it->second.stats.effectiveRank;
                    ranks[t.layer].second += 1;
                    if (std::isfinite(it->second.stats.alpha)) {
                        alphas[t.layer].first += it->second.stats.alpha;
                        alphas[t.layer].second += 1;
                    }
                }
            }
        }
        for (const auto &[layer, r] : ranks)
            blocks[layer].effectiveRank[side] = r.second ? r.first / r.second : 0;
        for (const auto &[layer, a] : alphas)
            blocks[layer].alpha[side] = a.second ? a.first / a.second : 0;
    }
    for (const auto &[layer, b] : blocks)
        if (b.parameters[0] > 0 && b.parameters[1] > 0)
            c->blocks.push_back(b);
    reportProgress(progress, 1.0, "done");
    emit compared(c);
}

} // namespace lathe
