// MainWindow's jobs and files: opening and analysing models, calibration, compression and training runs,
// comparisons, sensitivity sweeps, exports, sessions, reports and figures (mainwindow.h).

#include "mainwindow.h"

#include "analysisjob.h"
#include "calibrationjob.h"
#include "comparejob.h"
#include "compareview.h"
#include "compressdialog.h"
#include "compressjob.h"
#include "exportjob.h"
#include "figureexporter.h"
#include "jobmanager.h"
#include "modeltree.h"
#include "openmodeljob.h"
#include "parameterpanel.h"
#include "reportwriter.h"
#include "resultsview.h"
#include "runhistory.h"
#include "sensitivityjob.h"
#include "sensitivityview.h"
#include "trainingview.h"
#include "trainjob.h"
#include "workbenchdocument.h"
#include "analysis/compressionestimate.h"
#include "analysis/modelanalysis.h"
#include "analysis/modelsummary.h"
#include "base/outputfiles.h"
#include "engine/evaluation.h"
#include "methods/method.h"
#include "model/model.h"

#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QSettings>
#include <QStatusBar>

#include <spdlog/spdlog.h>

namespace lathe {

void MainWindow::openModelPath(const QString &path) {
    statusBar()->showMessage(tr("Opening %1...").arg(path));
    auto *job = new OpenModelJob(path);
    connect(job, &OpenModelJob::opened, this, [this](QString p, std::shared_ptr<Model> m) {
        m_messageBar->hide();
        m_lastError.clear();
        m_doc->setModel(p, std::move(m));
        addRecent(p);
        statusBar()->showMessage(
            tr("Opened %1: %2 parameters").arg(p, QString::fromStdString(humanCount(m_doc->model()->parameterCount()))));
        spdlog::info("opened {}", p.toStdString());
        emit modelOpened(p);
        startAnalysis();
    });
    connect(job, &Job::failed, this, [this](QString msg, QString hint) {
        showError(msg, hint);
        emit modelFailed(msg);
    });
    m_jobs->start(job);
}

AnalyzeParams MainWindow::analyzeParams() const {
    AnalyzeParams p;
    p.besideModel = QSettings().value("analysis/besideModel", false).toBool();
    return p;
}

void MainWindow::startAnalysis() {
    const std::shared_ptr<Model> model = m_doc->model();
    auto *job = new AnalysisJob(model, {}, analyzeParams(), tr("Spectra of %1").arg(QFileInfo(m_doc->modelPath()).fileName()));
    connect(job, &AnalysisJob::analyzed, this, [this, forModel = model.get()](std::shared_ptr<AnalyzeResult> r) {
        if (forModel != m_doc->model().get())
            return; // another model was opened meanwhile
        statusBar()->showMessage(
            tr("Spectra: %1 computed, %2 from %3").arg(r->computed).arg(r->cached).arg(QString::fromStdString(r->archivePath)),
            8000);
        if (!r->cacheNote.empty())
            spdlog::warn("{}", r->cacheNote);
        m_doc->setAnalysis(forModel, std::move(r));
        emit analysisReady();
        if (!m_pendingSession.is_null()) { // the selection and tab of a session being opened
            const nlohmann::json session = std::move(m_pendingSession);
            m_pendingSession = nullptr;
            QStringList names;
            for (const auto &n : session.value("selection", nlohmann::json::array()))
                if (n.is_string())
                    names << QString::fromStdString(n.get<std::string>());
            m_tree->selectTensors(names);
            m_views->setCurrentIndex(std::clamp(session.value("tab", 0), 0, m_views->count() - 1));
            emit sessionRestored(m_sessionMissing);
        }
    });
    connect(job, &Job::failed, this, [this](QString msg, QString hint) { showError(msg, hint); });
    m_jobs->start(job);
}

void MainWindow::collectCalibration(const QString &textPath, const CalibrationParams &params) {
    if (!m_doc->model()) {
        showError(tr("No model is open"), tr("open a model first"));
        return;
    }
    if (textPath.isEmpty() || !QFileInfo::exists(textPath)) {
        showError(tr("Calibration text not found: '%1'").arg(textPath),
                  tr("choose a text file in the parameter panel (WikiText-2 or any plain text)"));
        return;
    }
    const std::shared_ptr<Model> model = m_doc->model();
    auto *job = new CalibrationJob(model, textPath, params);
    connect(job, &CalibrationJob::collected, this,
            [this, forModel = model.get()](std::shared_ptr<InputNorms> norms, QString desc) {
                if (forModel != m_doc->model().get())
                    return;
                m_doc->setCalibration(forModel, std::move(norms), desc);
                emit calibrationReady();
            });
    connect(job, &Job::failed, this, [this](QString msg, QString hint) { showError(msg, hint); });
    connect(job, &Job::cancelled, this, [this] { m_params->setCalibrationStatus(tr("cancelled")); });
    m_params->setCalibrationStatus(tr("collecting..."));
    m_jobs->start(job);
}

CompressionSpec MainWindow::specFromPanel() const {
    CompressionSpec spec;
    spec.model = m_doc->modelPath().toStdString();
    spec.setMethod(m_params->methodName().toStdString());
    const SparsityPattern pattern = m_params->plan().pattern;
    spec.sparsities = {pattern.prunedFraction()};
    if (spec.params.has("pattern"))
        spec.params.set("pattern", pattern.isNm() ? m_params->patternText().toStdString()
                                   : pattern.perRow ? std::string("per-row")
                                                    : std::string("unstructured"));
    spec.calibrationText = m_params->calibrationPath().toStdString();
    spec.calibrationSamples = m_params->calibrationParams().samples;
    spec.calibrationSeqLen = m_params->calibrationParams().seqLen;
    spec.outputDir = defaultRunFolder().toStdString();
    return spec;
}

QString MainWindow::defaultRunFolder() const {
    const QString base = QDir::homePath() + "/lathe-runs/" + QFileInfo(m_doc->modelPath()).completeBaseName() + "-" +
                         QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss");
    QString dir = base; // two runs started within a second get -2, -3, ...
    for (int n = 2; QFileInfo::exists(dir); ++n)
        dir = base + "-" + QString::number(n);
    return dir;
}

CompressionSpec MainWindow::specForDialog() const {
    const std::optional<CompressionSpec> last = m_doc->lastSpec(m_doc->modelPath());
    if (!last)
        return specFromPanel();
    // The last settings used for this model, into a new run folder (the last one holds that run).
    CompressionSpec spec = *last;
    spec.outputDir = defaultRunFolder().toStdString();
    spec.overwrite = spec.resume = false;
    return spec;
}

void MainWindow::startCompression(const CompressionSpec &spec) {
    validateSpec(spec);
    rememberRunFolder(QString::fromStdString(spec.outputDir));
    m_doc->rememberSpec(spec); // the dialog reopens with it for this model
    auto *job = new CompressJob(spec);
    const QString label = QString::fromStdString(spec.label());
    const QString model = QString::fromStdString(spec.model);
    connect(job, &CompressJob::finished, this,
            [this, label, model](std::shared_ptr<const CompressionRunResult> result, QString dir) {
        m_messageBar->hide(); // an earlier failure's banner does not outlive a run that succeeded
        m_lastError.clear();
        m_doc->addRun({model, label, dir, *result});
        m_views->setCurrentWidget(m_resultsView);
        statusBar()->showMessage(tr("Compression finished: %1").arg(dir));
        emit compressionFinished(dir);
    });
    connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
    m_jobs->start(job);
}

TrainingSpec MainWindow::trainingSpecForDialog() const {
    TrainingSpec spec = m_lastTraining ? *m_lastTraining : TrainingSpec();
    spec.model = m_doc->modelPath().toStdString();
    spec.outputDir = defaultRunFolder().toStdString();
    spec.overwrite = spec.resume = false;
    return spec;
}

void MainWindow::openCompressionJob(const QString &path) {
    CompressionSpec spec;
    try {
        spec = CompressionSpec::fromFile(path.toStdString());
        // The dialog previews against the open model: a job for another model asks for that model first.
        if (!m_doc->model() || QFileInfo(QString::fromStdString(spec.model)).canonicalFilePath() !=
                                   QFileInfo(m_doc->modelPath()).canonicalFilePath())
            throw LatheError("the job is for " + spec.model + ", which is not the open model",
                             "open that model (File > Open), then open the job again");
    } catch (const LatheError &e) {
        showError(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
        return;
    }
    compressWithDialog(spec);
}

void MainWindow::compressWithDialog(const CompressionSpec &spec) {
    CompressDialog dialog(m_doc->model().get(), m_doc->modelPath(), this);
    dialog.setSpec(spec);
    if (dialog.exec() != QDialog::Accepted)
        return;
    try {
        startCompression(dialog.spec());
    } catch (const LatheError &e) {
        showError(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    }
}

void MainWindow::resumeRun(const QString &dir) {
    // The folder's marker says what ran there and its spec.json what the job was; the engine keeps what finished
    // (a training run's last checkpoint, a compression sweep's finished points and dense evaluation) and refuses a
    // folder that holds another job.
    try {
        const std::string path = dir.toStdString();
        const auto kind = outputKindOf(path);
        const std::string specFile = path + "/spec.json";
        if (kind == OutputKind::TrainingRun) {
            TrainingSpec spec = TrainingSpec::fromJson(nlohmann::json::parse(readTextFile(specFile)));
            spec.outputDir = path;
            spec.resume = true;
            startTraining(spec);
        } else if (kind == OutputKind::CompressionRun) {
            CompressionSpec spec = CompressionSpec::fromFile(specFile);
            spec.outputDir = path;
            spec.resume = true;
            spec.overwrite = false;
            startCompression(spec);
        } else {
            throw LatheError(path + " is not a run folder Lathe wrote",
                             "choose the folder of a compression or training run (it holds spec.json and .lathe-output)");
        }
        statusBar()->showMessage(tr("Resuming %1").arg(dir), 8000);
    } catch (const std::exception &e) {
        const auto *le = dynamic_cast<const LatheError *>(&e);
        showError(QString::fromStdString(e.what()), le ? QString::fromStdString(le->hint()) : QString());
    }
}

void MainWindow::startTraining(const TrainingSpec &spec) {
    validateTrainingSpec(spec);
    rememberRunFolder(QString::fromStdString(spec.outputDir));
    m_lastTraining = spec;
    auto *job = new TrainJob(spec);
    m_trainingView->start(job->title());
    m_views->setCurrentWidget(m_trainingView);
    connect(job, &TrainJob::stepDone, this,
            [this](qint64 step, double loss, double lr, double, QString schedule, double value) {
                m_trainingView->addStep(step, loss, lr, schedule, value);
            });
    connect(job, &TrainJob::evalDone, this,
            [this](qint64 step, double, double perplexity) { m_trainingView->addEval(step, perplexity); });
    connect(job, &TrainJob::planned, m_trainingView, &TrainingView::setObjective);
    connect(job, &TrainJob::finished, this, [this](std::shared_ptr<const TrainingResult> r, QString dir) {
        m_messageBar->hide();
        m_lastError.clear();
        statusBar()->showMessage(tr("Training finished: %1%2").arg(dir, r->exportDir.empty() ? QString()
                                                                      : tr("; model: %1").arg(QString::fromStdString(r->exportDir))));
        emit trainingFinished(dir);
    });
    connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
    m_jobs->start(job);
}

void MainWindow::exportModel() {
    const std::shared_ptr<Model> model = m_doc->model();
    if (!model) {
        statusBar()->showMessage(tr("Open a model first"));
        return;
    }
    struct Choice {
        QString label;
        ExportJob::Format format;
        std::optional<DType> dtype;
    };
    using F = ExportJob::Format;
    const std::vector<Choice> choices = {
        {tr("GGUF for llama.cpp, f16 weights"), F::Gguf, DType::F16},
        {tr("GGUF for llama.cpp, q8_0 weights"), F::Gguf, DType::Q8_0},
        {tr("GGUF for llama.cpp, f32 weights"), F::Gguf, DType::F32},
        {tr("Hugging Face folder, weights as stored (quantized ones as f32)"), F::HfFolder, std::nullopt},
        {tr("Hugging Face folder, bf16 weights"), F::HfFolder, DType::BF16},
        {tr("Hugging Face folder, f16 weights"), F::HfFolder, DType::F16},
        {tr("Hugging Face folder, f32 weights"), F::HfFolder, DType::F32}};
    QStringList labels;
    for (const Choice &c : choices)
        labels << c.label;
    QSettings settings;
    bool ok = false;
    const QString picked = QInputDialog::getItem(this, tr("Export model"), tr("Format:"), labels,
                                                 std::clamp(settings.value("export/modelFormat", 0).toInt(), 0,
                                                            int(labels.size()) - 1),
                                                 false, &ok);
    if (!ok)
        return;
    const int index = int(labels.indexOf(picked));
    const Choice &c = choices[size_t(std::max(index, 0))];
    settings.setValue("export/modelFormat", index);
    const bool gguf = c.format == F::Gguf;
    const QFileInfo source(m_doc->modelPath());
    const QString folder = settings.value("export/modelFolder", source.absolutePath()).toString();
    const QString stem = source.isDir() ? source.fileName() : source.completeBaseName();
    const QString path = QFileDialog::getSaveFileName(
        this, gguf ? tr("Export model as GGUF") : tr("Export model as a Hugging Face folder (a new folder)"),
        QDir(folder).filePath(stem + (gguf ? QString("-%1.gguf").arg(dtypeName(*c.dtype)).toLower() : "-export")),
        gguf ? tr("GGUF (*.gguf)") : QString());
    if (path.isEmpty())
        return;
    settings.setValue("export/modelFolder", QFileInfo(path).absolutePath());
    // The file dialog asked before choosing an existing name; the engine still replaces only a Lathe export.
    startModelExport(path, gguf, c.dtype, QFileInfo::exists(path));
}

void MainWindow::startCompare(const QString &otherPath) {
    const std::shared_ptr<Model> model = m_doc->model();
    if (!model) {
        statusBar()->showMessage(tr("Open a model first"));
        return;
    }
    auto *job = new CompareJob(model, m_doc->modelPath(), m_doc->analysis(), otherPath, analyzeParams());
    connect(job, &CompareJob::compared, this, [this](std::shared_ptr<const ModelComparison> c) {
        m_compareView->setSelectedTensor(m_tree->selectedTensor());
        m_compareView->setComparison(std::move(c));
        m_views->setCurrentWidget(m_compareView);
        emit compareReady();
    });
    connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
    m_jobs->start(job);
}

void MainWindow::startSensitivity(const QString &textPath, const SensitivityParams &params) {
    const std::shared_ptr<Model> model = m_doc->model();
    if (!model) {
        statusBar()->showMessage(tr("Open a model first"));
        return;
    }
    if (textPath.isEmpty()) {
        showError(tr("The sensitivity sweep needs a text"),
                  tr("choose a calibration text in the parameter panel; its first windows are evaluated"));
        return;
    }
    auto *job = new SensitivityJob(model, textPath, params);
    const QString title = tr("Sensitivity: each block pruned alone by %1% (%2)")
                              .arg(params.ratio * 100, 0, 'g', 3)
                              .arg(params.wanda ? tr("Wanda") : tr("magnitude"));
    const QString subtitle = tr("%1 on %2").arg(QFileInfo(m_doc->modelPath()).fileName(), QFileInfo(textPath).fileName());
    connect(job, &SensitivityJob::finished, this, [this, title, subtitle](std::shared_ptr<const SensitivityResult> r) {
        m_sensitivityView->setTarget(m_params->plan().pattern.isNm() ? m_params->plan().pattern.prunedFraction()
                                                                     : m_params->plan().pattern.ratio);
        m_sensitivityView->setResult(std::move(r), title, subtitle);
        m_views->setCurrentWidget(m_sensitivityView);
        emit sensitivityReady();
    });
    connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
    m_jobs->start(job);
}

CompressionSpec MainWindow::specWithBudgets(const std::vector<double> &budgets, double target) const {
    CompressionSpec spec = specForDialog();
    if (spec.method->info().exportKind != ExportKind::PrunedDense)
        spec.setMethod("wanda");
    spec.params.set("pattern", std::string("unstructured"));
    LayerRatios ratios;
    ratios.perBlock = true;
    for (size_t i = 0; i < budgets.size(); ++i)
        ratios.ranges.push_back({int(i), int(i), budgets[i]});
    spec.params.set("layer_sparsity", ratios);
    spec.sparsities = {target};
    return spec;
}

void MainWindow::saveSession(const QString &path) {
    nlohmann::json runs = nlohmann::json::array();
    for (const WorkbenchDocument::Run &r : m_doc->runs())
        runs.push_back({{"model", r.model.toStdString()}, {"label", r.label.toStdString()}, {"folder", r.folder.toStdString()}});
    nlohmann::json selection = nlohmann::json::array();
    for (const QString &name : m_tree->selectedNames())
        selection.push_back(name.toStdString());
    const nlohmann::json j = {{"lathe_session", 1},
                              {"model", m_doc->modelPath().toStdString()},
                              {"selection", selection},
                              {"tab", m_views->currentIndex()},
                              {"panel", m_params->state()},
                              {"runs", runs},
                              {"sensitivity", m_sensitivityView->state()}};
    writeFileAtomic(path.toStdString(), j.dump(2) + "\n");
    QSettings().setValue("session/last", path);
    statusBar()->showMessage(tr("Session saved: %1").arg(path), 8000);
}

void MainWindow::openSession(const QString &path) {
    const nlohmann::json j = nlohmann::json::parse(readTextFile(path.toStdString()), nullptr, false);
    if (!j.is_object() || !j.contains("lathe_session"))
        throw LatheError(path.toStdString() + ": not a Lathe session file", "choose a .lathe-session.json file Lathe saved");
    m_params->setState(j.value("panel", nlohmann::json::object()));
    m_doc->clearRuns();
    QStringList missing;
    for (const auto &r : j.value("runs", nlohmann::json::array())) {
        const QString folder = QString::fromStdString(r.value("folder", ""));
        try {
            WorkbenchDocument::Run run{QString::fromStdString(r.value("model", "")),
                                       QString::fromStdString(r.value("label", "")), folder,
                                       CompressionRunResult::fromJson(nlohmann::json::parse(
                                           readTextFile(QDir(folder).filePath("results.json").toStdString())))};
            m_doc->addRun(std::move(run));
        } catch (const std::exception &) {
            missing << folder;
        }
    }
    if (j.contains("sensitivity") && j["sensitivity"].is_object())
        m_sensitivityView->restore(j["sensitivity"]);
    QSettings().setValue("session/last", path);
    statusBar()->showMessage(missing.isEmpty() ? tr("Session opened: %1").arg(path)
                                               : tr("Session opened; these run folders are gone: %1").arg(missing.join(", ")),
                             10000);
    const QString model = QString::fromStdString(j.value("model", ""));
    m_sessionMissing = missing;
    if (model.isEmpty()) {
        emit sessionRestored(missing);
        return;
    }
    m_pendingSession = j;
    openModelPath(model);
}

void MainWindow::writeReport(const QString &folder) {
    auto *writer = new ReportWriter(this, folder, this);
    connect(writer, &ReportWriter::finished, this, [this, writer](QString html, QString pdf, QString error) {
        writer->deleteLater();
        if (!error.isEmpty())
            showError(tr("The report was not written: %1").arg(error), tr("choose a new folder with free space"));
        else
            statusBar()->showMessage(tr("Report written: %1 and %2").arg(html, pdf), 10000);
        emit reportWritten(html, pdf, error);
    });
    writer->start();
}

void MainWindow::startModelExport(const QString &path, bool gguf, std::optional<DType> dtype, bool overwrite) {
    if (!m_doc->model()) {
        statusBar()->showMessage(tr("Open a model first"));
        return;
    }
    auto *job = new ExportJob(m_doc->model(), path, gguf ? ExportJob::Format::Gguf : ExportJob::Format::HfFolder,
                              dtype, overwrite);
    connect(job, &ExportJob::exported, this, [this](QString where, QString summary) {
        statusBar()->showMessage(tr("Exported %1: %2").arg(where, summary), 10000);
        spdlog::info("exported {}: {}", where.toStdString(), summary.toStdString());
        emit modelExported(where, summary);
    });
    connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
    m_jobs->start(job);
}

void MainWindow::exportCurrentFigure() {
    PlotView *view = currentPlot();
    if (!view || !view->hasData()) {
        showError(tr("The current view has no figure to export"), tr("select a matrix and a plot tab first"));
        return;
    }
    QSettings s;
    const QString suggested = QDir(s.value("export/folder", QDir::homePath()).toString()).filePath(view->name() + ".pdf");
    const QString path = QFileDialog::getSaveFileName(this, tr("Export figure"), suggested,
                                                      tr("PDF (*.pdf);;SVG (*.svg);;PNG, 300 dpi (*.png)"));
    if (path.isEmpty())
        return;
    s.setValue("export/folder", QFileInfo(path).absolutePath());
    // The size (paper presets keep every text at 8 pt when printed at that width) and the title.
    const QStringList presets = {tr("As on screen (900 x 600, PNG at 1800 x 1200)"),
                                 tr("Paper, single column (3.5 in wide, 8 pt text)"),
                                 tr("Paper, double column (7 in wide, 8 pt text)")};
    bool ok = false;
    const QString preset = QInputDialog::getItem(this, tr("Export figure"), tr("Size:"), presets,
                                                 std::clamp(s.value("export/preset", 0).toInt(), 0, 2), false, &ok);
    if (!ok)
        return;
    const int index = int(presets.indexOf(preset));
    s.setValue("export/preset", index);
    FigureStyle style = index == 1 ? FigureStyle::singleColumn() : index == 2 ? FigureStyle::doubleColumn() : FigureStyle{};
    const QString title = QInputDialog::getText(this, tr("Export figure"), tr("Title (empty: none):"), QLineEdit::Normal,
                                                view->title(), &ok);
    if (!ok)
        return;
    style.title = title;
    QString error;
    if (!view->exportFigure(path, style, &error))
        showError(error, tr("choose a .png, .svg or .pdf file in a writable folder"));
    else
        statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
}

void MainWindow::exportAllFigures(const QString &folder) {
    if (!m_doc->model()) {
        showError(tr("No model is open"), tr("open a model first"));
        return;
    }
    if (m_exporter) {
        showError(tr("An export is already running"), {});
        return;
    }
    QStringList names = selectedMatrices();
    if (names.isEmpty())
        for (const TensorInfo &t : m_doc->model()->tensors())
            if (isCompressionTarget(t))
                names << QString::fromStdString(t.name);
    std::vector<FigureExporter::Item> items;
    for (const QString &n : names)
        items.push_back({n.toStdString(), labelFor(n.toStdString())});
    MatrixScoresRequest tmpl;
    tmpl.model = m_doc->model();
    tmpl.kind = m_params->method();
    tmpl.pattern = m_params->plan().pattern;
    tmpl.norms = m_doc->calibration();
    tmpl.rankRatio = m_params->rankRatio();
    const QString settings = tr("Model %1; %2, %3 score; rank ratio %4")
                                 .arg(m_doc->modelPath(), m_params->patternText(), QString::fromUtf8(importanceName(tmpl.kind)))
                                 .arg(m_params->rankRatio());
    m_exporter = new FigureExporter(folder, m_doc->model(), m_doc->analysis(), std::move(items), tmpl, m_params->rankRatio(), settings, this);
    connect(m_exporter, &FigureExporter::progress, this, [this](int done, int total) {
        statusBar()->showMessage(tr("Exporting figures: %1/%2 matrices").arg(done).arg(total));
    });
    connect(m_exporter, &FigureExporter::finished, this, [this, folder](QStringList files, QString error) {
        m_exporter->deleteLater();
        m_exporter = nullptr;
        if (!error.isEmpty())
            showError(tr("Figure export stopped: %1").arg(error), tr("check that %1 is writable").arg(folder));
        else
            statusBar()->showMessage(tr("Exported %1 files to %2").arg(files.size()).arg(folder), 8000);
        spdlog::info("exported {} figure files to {}", files.size(), folder.toStdString());
        emit figuresExported(files, error);
    });
    m_exporter->start(m_layerView);
}

} // namespace lathe
