#include "workbenchdocument.h"

#include "base/error.h"

#include <spdlog/spdlog.h>

namespace lathe {

QVector<WorkbenchDocument::Run> WorkbenchDocument::runsOf(const QString &model) const {
    QVector<Run> out;
    for (const Run &r : m_runs)
        if (r.model == model)
            out.push_back(r);
    return out;
}

std::optional<CompressionSpec> WorkbenchDocument::lastSpec(const QString &model) const {
    auto it = m_lastSpecs.find(model);
    return it == m_lastSpecs.end() ? std::nullopt : std::optional<CompressionSpec>(it.value());
}

void WorkbenchDocument::setModel(const QString &path, std::shared_ptr<Model> model) {
    m_model = std::move(model);
    m_modelPath = path;
    m_analysis.reset();
    m_norms.reset();
    m_calibrationSource.clear();
    emit modelChanged();
}

void WorkbenchDocument::setAnalysis(const Model *forModel, std::shared_ptr<AnalyzeResult> analysis) {
    if (forModel != m_model.get())
        return; // another model was opened meanwhile
    m_analysis = std::move(analysis);
    const bool archivedNorms = m_analysis && !m_analysis->data.inputNorms.empty() && !m_norms;
    if (archivedNorms) {
        auto norms = std::make_shared<InputNorms>();
        norms->norms = m_analysis->data.inputNorms;
        norms->tokens = m_analysis->data.inputNormTokens;
        m_norms = norms;
        m_calibrationSource = QObject::tr("from the archive: %1").arg(QString::fromStdString(m_analysis->data.calibration));
    }
    emit analysisChanged();
    if (archivedNorms)
        emit calibrationChanged();
}

void WorkbenchDocument::clearAnalysis() {
    m_analysis.reset();
    emit analysisChanged();
}

void WorkbenchDocument::setCalibration(const Model *forModel, std::shared_ptr<const InputNorms> norms,
                                       const QString &source) {
    if (forModel != m_model.get())
        return;
    m_norms = std::move(norms);
    m_calibrationSource = QObject::tr("collected: %1").arg(source);
    if (m_analysis && m_norms) {
        m_analysis->data.inputNorms = m_norms->norms;
        m_analysis->data.inputNormTokens = m_norms->tokens;
        m_analysis->data.calibration = source.toStdString();
        try {
            updateAnalysisArchive(*m_analysis);
        } catch (const LatheError &e) {
            spdlog::warn("calibration not cached: {}", e.fullMessage());
        }
    }
    emit calibrationChanged();
}

void WorkbenchDocument::addRun(Run run) {
    m_runs.push_back(std::move(run));
    emit runsChanged();
}

void WorkbenchDocument::clearRuns() {
    m_runs.clear();
    emit runsChanged();
}

void WorkbenchDocument::rememberSpec(const CompressionSpec &spec) {
    m_lastSpecs.insert(QString::fromStdString(spec.model), spec);
}

} // namespace lathe
