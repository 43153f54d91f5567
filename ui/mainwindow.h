#pragma once

#include <optional>

#include "base/dtype.h"
#include "run/compressionrun.h"
#include "run/trainingrun.h"

#include "engine/calibration.h"
#include "analysis/matrixscores.h"
#include "analysis/modelanalysis.h"
#include "analysis/sensitivity.h"

#include <QMainWindow>

#include <memory>

class QLabel;
class QTabWidget;
class QTextBrowser;
class QMenu;

namespace lathe {

class FigureExporter;
class ImportanceView;
class JobManager;
class JobPanel;
class LayerView;
class LogPanel;
class Model;
class ModelTree;
class ParameterPanel;
class PlotView;
class SparsityView;
class SpectrumView;
class WorkbenchDocument;
struct AnalyzeResult;

// Registers the types that jobs send through queued signals; call once before creating windows.
void registerUiMetaTypes();

// Lathe's main window. Left: the model tree (several matrices can be selected to overlay their spectra). Centre:
// the views (spectrum, sparsity, importance, per-block bars, details), all following the tree's selection and the
// parameter panel (right). Bottom: jobs with progress and Cancel, and the log. Errors appear in the message bar.
// Every computation runs off the GUI thread: opening and analysing models and calibration as Jobs, the per-matrix
// scores of the views with QtConcurrent (the newest request wins).
class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    QString shortcutsText() const; // every menu action with a shortcut, one per line (Help > Keyboard Shortcuts)
    QString aboutText() const;     // version, Qt, BLAS/LAPACK and GPU (Help > About)
    // Train > Resume Interrupted Run...: continues the compression or training run a kill or crash left in `dir`.
    void resumeRun(const QString &dir);
    // Compress > Open Compression Job...: a saved job spec in the compress dialog (for the open model).
    void openCompressionJob(const QString &path);
    explicit MainWindow(QWidget *parent = nullptr);
    ~MainWindow() override;
    // Resizes the window and sets its docks in proportion to it (first start, `lathe --screenshot --size`).
    void resizeWithDocks(const QSize &size);

    void openModelPath(const QString &path);
    WorkbenchDocument *document() const { return m_doc; }
    const Model *model() const;
    const AnalyzeResult *analysis() const;
    ModelTree *tree() const { return m_tree; }
    QString lastError() const { return m_lastError; }

    SpectrumView *spectrumView() const { return m_spectrumView; }
    SparsityView *sparsityView() const { return m_sparsityView; }
    ImportanceView *importanceView() const { return m_importanceView; }
    LayerView *layerView() const { return m_layerView; }
    ParameterPanel *parameterPanel() const { return m_params; }
    JobManager *jobManager() const { return m_jobs; }
    JobPanel *jobPanel() const { return m_jobPanel; }
    QTabWidget *views() const { return m_views; }
    PlotView *currentPlot() const;

    // Starts collecting calibration activations from `textPath` (as the panel's Collect button does).
    void collectCalibration(const QString &textPath, const CalibrationParams &params);
    // Starts a compression job (the dialog's Run); results land in the Results tab and compressionFinished().
    // The job spec the parameter panel describes (method, ratio, pattern, calibration).
    CompressionSpec specFromPanel() const;
    // What the Compress dialog opens with: the last spec run on this model (in a new run folder), else the panel's.
    CompressionSpec specForDialog() const;
    void startCompression(const CompressionSpec &spec);
    // Starts a training job (lathe-cli train's spec); its steps draw the Training tab live; trainingFinished().
    void startTraining(const TrainingSpec &spec);
    // What the Train dialog opens with: the last training spec of this session on the open model (in a new run
    // folder), else the defaults for the open model.
    TrainingSpec trainingSpecForDialog() const;
    class TrainingView *trainingView() const { return m_trainingView; }
    class SensitivityView *sensitivityView() const { return m_sensitivityView; }
    // Analysis > Sensitivity Sweep: the sweep of the open model on `textPath` as a job; its result fills the
    // Sensitivity tab (sensitivityReady()).
    void startSensitivity(const QString &textPath, const SensitivityParams &params);
    // The compression the Sensitivity tab's "Compress with These Budgets..." opens: the dialog's spec with the
    // per-block sparsities as layer_sparsity, their mean as the ratio, a pruning method (Wanda unless the spec's
    // method already prunes), an unstructured pattern.
    CompressionSpec specWithBudgets(const std::vector<double> &budgets, double target) const;
    class ResultsView *resultsView() const { return m_resultsView; }
    // Writes the open model to `path` (File > Export Model... after its dialogs): a GGUF file for llama.cpp or a
    // Hugging Face folder, as a job; modelExported() with a one-line summary, or the error shown.
    void startModelExport(const QString &path, bool gguf, std::optional<DType> dtype, bool overwrite);
    // File > Save Session... / Open Session...: the open model, the tree's selection, the parameter panel, the
    // current tab, the session's compression runs (by run folder: results are read back from results.json) and
    // the sensitivity sweep with its budget, as one JSON file written atomically. Opening restores them (the
    // selection once the model's spectra are in); run folders that no longer exist are listed in the status bar.
    // sessionRestored() when everything is back. LatheError for a file that is not a session.
    void saveSession(const QString &path);
    // Analysis > Compare With Model...: the open model against `otherPath` in the Compare tab (compareReady()).
    void startCompare(const QString &otherPath);
    class CompareView *compareView() const { return m_compareView; }
    void openSession(const QString &path);
    // File > Write Session Report...: report.html and report.pdf with the figures in `folder` (new or empty; see
    // reportwriter.h); reportWritten() when done.
    void writeReport(const QString &folder);
    // Writes every figure of the selection (or of the whole model when nothing is selected) into `folder`.
    void exportAllFigures(const QString &folder);

signals:
    void modelOpened(const QString &path);
    void modelFailed(const QString &message);
    void analysisReady();
    void scoresReady();
    void calibrationReady();
    void compressionFinished(QString runFolder);
    void trainingFinished(QString runFolder);
    void figuresExported(const QStringList &files, const QString &error);
    void modelExported(QString path, QString summary);
    void sensitivityReady();
    void reportWritten(QString html, QString pdf, QString error);
    void sessionRestored(QStringList missingRunFolders);
    void generationsReady(); // the Results tab's sample generations are in
    void compareReady();

protected:
    void dragEnterEvent(QDragEnterEvent *event) override;
    void dropEvent(QDropEvent *event) override;
    void closeEvent(QCloseEvent *event) override;

private:
    void buildMenus();
    void showError(const QString &message, const QString &hint);
    void updateDetails();
    void updateViews();
    void updateSpectrum();
    void updateSummary();
    void requestScores();
    void startAnalysis();
    // The compress dialog on the open model, filled from `spec`; an accepted job starts (a refusal is shown).
    void compressWithDialog(const CompressionSpec &spec);
    AnalyzeParams analyzeParams() const; // where the archive goes: the user's choice in the Analysis menu
    void exportCurrentFigure();
    // File > Export Model...: the open model as a GGUF file for llama.cpp or a Hugging Face folder, as a job.
    void exportModel();
    void addRecent(const QString &path);
    void rebuildRecentMenu();
    QString defaultRunFolder() const; // ~/lathe-runs/MODEL-yyyyMMdd-hhmmss
    QStringList selectedMatrices() const; // weight matrices among the selected items (groups expand)
    QString labelFor(const std::string &tensor) const;

    WorkbenchDocument *m_doc = nullptr; // the open model, analysis, calibration, runs
    int m_scoreGeneration = 0;

    ModelTree *m_tree = nullptr;
    bool m_ggufWritable = false; // the open model has a GGUF form (ggufExportBlocker, checked when it opens)
    QTabWidget *m_views = nullptr;
    class ResultsView *m_resultsView = nullptr;
    class TrainingView *m_trainingView = nullptr;
    class SensitivityView *m_sensitivityView = nullptr;
    class CompareView *m_compareView = nullptr;
    nlohmann::json m_pendingSession; // what openSession restores once the model's analysis is in
    QStringList m_sessionMissing;    // its run folders that no longer exist
    std::optional<TrainingSpec> m_lastTraining;
    SpectrumView *m_spectrumView = nullptr;
    SparsityView *m_sparsityView = nullptr;
    ImportanceView *m_importanceView = nullptr;
    LayerView *m_layerView = nullptr;
    QTextBrowser *m_details = nullptr;
    ParameterPanel *m_params = nullptr;
    JobManager *m_jobs = nullptr;
    JobPanel *m_jobPanel = nullptr;
    LogPanel *m_log = nullptr;
    QLabel *m_messageBar = nullptr;
    QMenu *m_recentMenu = nullptr;
    QString m_lastError;
    FigureExporter *m_exporter = nullptr;
};

} // namespace lathe
