#pragma once

#include "analysis/modelanalysis.h"
#include "engine/calibration.h"
#include "run/compressionspec.h"
#include "run/runresult.h"

#include <QHash>
#include <QObject>
#include <QString>
#include <QVector>

#include <memory>
#include <optional>

namespace lathe {

class Model;

// The workbench's state: the open model, its analysis (spectra, from the archive or computed), the calibration
// input norms, the compression runs of the session and the last job spec run on each model. It is changed only by
// the user's actions and by finished jobs (on the GUI thread); views and panels subscribe to its signals and pull
// what they draw. Opening another model resets the analysis and the calibration; the runs stay, each naming its
// model.
class WorkbenchDocument : public QObject {
    Q_OBJECT
public:
    struct Run {
        QString model;  // the model path the job ran on
        QString label;  // "wanda 2:4" (CompressionSpec::label)
        QString folder; // the run folder
        CompressionRunResult result;
    };

    explicit WorkbenchDocument(QObject *parent = nullptr) : QObject(parent) {}

    std::shared_ptr<Model> model() const { return m_model; }
    QString modelPath() const { return m_modelPath; }
    std::shared_ptr<const AnalyzeResult> analysis() const { return m_analysis; }
    std::shared_ptr<const InputNorms> calibration() const { return m_norms; }
    QString calibrationSource() const { return m_calibrationSource; } // "collected: ...", "from the archive: ..."
    const QVector<Run> &runs() const { return m_runs; }
    QVector<Run> runsOf(const QString &model) const;
    std::optional<CompressionSpec> lastSpec(const QString &model) const;

    // A model was opened: analysis and calibration are reset. modelChanged.
    void setModel(const QString &path, std::shared_ptr<Model> model);
    // Spectra for the open model (ignored when `forModel` is no longer open). When the archive held input norms
    // and none were collected, they become the calibration. analysisChanged (and calibrationChanged).
    void setAnalysis(const Model *forModel, std::shared_ptr<AnalyzeResult> analysis);
    void clearAnalysis(); // before a recomputation; analysisChanged
    // Calibration norms collected for the open model (ignored when `forModel` is no longer open); they are added to
    // the analysis archive when there is one. calibrationChanged.
    void setCalibration(const Model *forModel, std::shared_ptr<const InputNorms> norms, const QString &source);
    // A finished job. runsChanged.
    void addRun(Run run);
    void clearRuns();
    void rememberSpec(const CompressionSpec &spec);

signals:
    void modelChanged();
    void analysisChanged();
    void calibrationChanged();
    void runsChanged();

private:
    std::shared_ptr<Model> m_model;
    QString m_modelPath;
    std::shared_ptr<AnalyzeResult> m_analysis;
    std::shared_ptr<const InputNorms> m_norms;
    QString m_calibrationSource;
    QVector<Run> m_runs;
    QHash<QString, CompressionSpec> m_lastSpecs;
};

} // namespace lathe
