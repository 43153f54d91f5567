// MainWindow's menus, their help texts and the recent-models list (mainwindow.h).

#include "mainwindow.h"

#include "analysisjob.h"
#include "jobmanager.h"
#include "parameterpanel.h"
#include "runhistory.h"
#include "traindialog.h"
#include "workbenchdocument.h"
#include "analysis/modelanalysis.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "numeric/blas.h"
#include "numeric/linalg.h"

#include <QAction>
#include <QApplication>
#include <QDateTime>
#include <QDesktopServices>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QStatusBar>
#include <QUrl>


namespace lathe {

namespace {
constexpr int kMaxRecent = 8;
}

void MainWindow::buildMenus() {
    QMenu *file = menuBar()->addMenu(tr("&File"));
    QAction *open = file->addAction(tr("&Open Model File..."), this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Open model"), {},
                                                       tr("Models (*.gguf *.bin *.safetensors);;All files (*)"));
        if (!p.isEmpty())
            openModelPath(p);
    });
    open->setShortcut(QKeySequence::Open);
    QAction *openDir = file->addAction(tr("Open Model &Folder..."), this, [this] {
        const QString p = QFileDialog::getExistingDirectory(this, tr("Open Hugging Face model folder"));
        if (!p.isEmpty())
            openModelPath(p);
    });
    openDir->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    m_recentMenu = file->addMenu(tr("Open &Recent"));
    rebuildRecentMenu();
    file->addSeparator();
    QAction *expModel = file->addAction(tr("Export &Model..."), this, &MainWindow::exportModel);
    expModel->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_S));
    QAction *exp = file->addAction(tr("&Export Figure..."), this, &MainWindow::exportCurrentFigure);
    exp->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    QAction *expAll = file->addAction(tr("Export &All Figures..."), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for the figures"),
                                                              QSettings().value("export/folder").toString());
        if (!dir.isEmpty()) {
            QSettings().setValue("export/folder", dir);
            exportAllFigures(dir);
        }
    });
    expAll->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
    // A session file from a file dialog, then `act` on it; a refusal is shown.
    const auto sessionAction = [this](const QString &label, bool save) {
        return [this, label, save] {
            const QString last = QSettings().value("session/last").toString();
            const QString filter = tr("Lathe sessions (*.lathe-session.json);;JSON (*.json)");
            QString path = save ? QFileDialog::getSaveFileName(this, label, last, filter)
                                : QFileDialog::getOpenFileName(this, label, last, filter);
            if (path.isEmpty())
                return;
            try {
                if (save)
                    saveSession(path.endsWith(".json") ? path : path + ".lathe-session.json");
                else
                    openSession(path);
            } catch (const LatheError &e) {
                showError(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
            }
        };
    };
    file->addAction(tr("&Save Session..."), this, sessionAction(tr("Save session"), true));
    file->addAction(tr("Open Sessio&n..."), this, sessionAction(tr("Open session"), false));
    file->addAction(tr("Write Session &Report..."), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for the report"),
                                                              QSettings().value("export/folder").toString());
        if (dir.isEmpty())
            return;
        QSettings().setValue("export/folder", dir);
        writeReport(QDir(dir).filePath("lathe-report-" + QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss")));
    });
    file->addSeparator();
    QAction *quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu *view = menuBar()->addMenu(tr("&View"));
    for (int i = 0; i < m_views->count(); ++i) {
        QAction *a = view->addAction(m_views->tabText(i), this, [this, i] { m_views->setCurrentIndex(i); });
        a->setShortcut(QKeySequence(Qt::CTRL | (Qt::Key_1 + i)));
    }
    view->addSeparator();
    for (QDockWidget *d : findChildren<QDockWidget *>())
        view->addAction(d->toggleViewAction());

    QMenu *analysis = menuBar()->addMenu(tr("&Analysis"));
    QAction *recompute = analysis->addAction(tr("&Recompute Spectra"), this, [this] {
        if (m_doc->model()) {
            m_doc->clearAnalysis();
            startAnalysis();
        }
    });
    recompute->setShortcut(QKeySequence(Qt::Key_F5));
    analysis->addAction(tr("Spectra of Stacked &Q/K/V"), this, [this] {
        const std::shared_ptr<Model> model = m_doc->model();
        if (!model)
            return;
        auto *job = new AnalysisJob(model, stackedQkvTargets(*model), analyzeParams(), tr("Spectra of stacked q/k/v"));
        connect(job, &AnalysisJob::analyzed, this, [this, forModel = model.get()](std::shared_ptr<AnalyzeResult> r) {
            m_doc->setAnalysis(forModel, std::move(r));
            updateViews();
        });
        m_jobs->start(job);
    });
    analysis->addAction(tr("Spectra per &Head of the Selected Matrix"), this, [this] {
        const QStringList sel = selectedMatrices();
        const std::shared_ptr<Model> model = m_doc->model();
        if (!model || sel.isEmpty())
            return;
        const auto targets = headTargets(*model, sel.front().toStdString());
        if (targets.empty()) {
            showError(tr("%1 is not a q, k, v or o weight").arg(sel.front()), tr("select an attention matrix"));
            return;
        }
        auto *job = new AnalysisJob(model, targets, analyzeParams(), tr("Spectra per head"));
        connect(job, &AnalysisJob::analyzed, this, [this, forModel = model.get()](std::shared_ptr<AnalyzeResult> r) {
            m_doc->setAnalysis(forModel, std::move(r));
        });
        m_jobs->start(job);
    });
    analysis->addAction(tr("&Collect Calibration Activations"), this,
                        [this] { collectCalibration(m_params->calibrationPath(), m_params->calibrationParams()); });
    analysis->addAction(tr("Compare With Model &File..."), this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Model to compare with"), {},
                                                       tr("Models (*.gguf *.bin *.safetensors);;All files (*)"));
        if (!p.isEmpty())
            startCompare(p);
    });
    analysis->addAction(tr("Compare With Model F&older..."), this, [this] {
        const QString p = QFileDialog::getExistingDirectory(this, tr("Model folder to compare with (a run's model/)"));
        if (!p.isEmpty())
            startCompare(p);
    });
    analysis->addAction(tr("Sensitivity S&weep"), this, [this] {
        // Each block (and each kind of linear) pruned alone at the panel's ratio, on the calibration text.
        SensitivityParams p;
        const SparsityPattern pattern = m_params->plan().pattern;
        p.ratio = pattern.isNm() ? pattern.prunedFraction() : pattern.ratio;
        if (!(p.ratio > 0))
            p.ratio = 0.5;
        if (const Model *m = model(); m && m->config.maxPositions > 0)
            p.seqLen = std::min<int64_t>(p.seqLen, m->config.maxPositions);
        startSensitivity(m_params->calibrationPath(), p);
    });
    analysis->addSeparator();
    QAction *beside = analysis->addAction(tr("Keep Analysis &Beside the Model"));
    beside->setObjectName("analysisBesideModel");
    beside->setCheckable(true);
    beside->setChecked(QSettings().value("analysis/besideModel", false).toBool());
    beside->setToolTip(tr("Off (default): spectra are cached in ~/.cache/lathe/analysis, keyed by the model's content; "
                          "on: in <model>.lathe.h5 or <folder>/lathe-analysis.h5 where that folder is writable"));
    connect(beside, &QAction::toggled, this, [](bool on) { QSettings().setValue("analysis/besideModel", on); });
    QMenu *compress = menuBar()->addMenu(tr("&Compress"));
    QAction *runCompress = compress->addAction(tr("&Run Compression..."), this, [this] {
        if (!m_doc->model()) {
            statusBar()->showMessage(tr("Open a model first"));
            return;
        }
        compressWithDialog(specForDialog());
    });
    runCompress->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
    compress->addAction(tr("&Open Compression Job..."), this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Compression job spec"), {}, tr("JSON (*.json)"));
        if (!path.isEmpty())
            openCompressionJob(path);
    });
    compress->addAction(tr("Run &History..."), this, [this] { RunHistoryDialog(this).exec(); });
    compress->addAction(tr("Clear &Results"), m_doc, &WorkbenchDocument::clearRuns);
    QMenu *trainMenu = menuBar()->addMenu(tr("&Train"));
    // Both open the Train dialog: with the session's last settings, or with a saved job spec.
    auto train = [this](const TrainingSpec &spec) {
        TrainDialog dialog(QString::fromStdString(spec.model), this);
        dialog.setSpec(spec);
        if (dialog.exec() != QDialog::Accepted)
            return;
        try {
            startTraining(dialog.spec());
        } catch (const LatheError &e) {
            showError(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
        }
    };
    QAction *newTraining = trainMenu->addAction(tr("&New Training Run..."), this,
                                                [this, train] { train(trainingSpecForDialog()); });
    newTraining->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_T));
    trainMenu->addAction(tr("&Open Training Job..."), this, [this, train] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Training job spec"), {}, tr("JSON (*.json)"));
        if (path.isEmpty())
            return;
        try {
            train(TrainingSpec::fromFile(path.toStdString()));
        } catch (const LatheError &e) {
            showError(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
        }
    });
    trainMenu->addSeparator();
    trainMenu->addAction(tr("&Resume Interrupted Run..."), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Run folder to resume"));
        if (!dir.isEmpty())
            resumeRun(dir);
    });
    QAction *cancelAll = analysis->addAction(tr("Cancel All &Jobs"), m_jobs, &JobManager::cancelAll);
    cancelAll->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Period));

    QMenu *help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&Keyboard Shortcuts"), this, [this] {
        QMessageBox::information(this, tr("Keyboard shortcuts"), shortcutsText());
    });
    help->addAction(tr("&Documentation"), this, [this] {
        // The installed docs (share/doc/lathe), else those of the source tree this binary was built from.
        for (const QString &dir : {QApplication::applicationDirPath() + "/../share/doc/lathe", QString(LATHE_DOCS_DIR)})
            if (QFileInfo::exists(dir + "/training.md")) {
                QDesktopServices::openUrl(QUrl::fromLocalFile(QFileInfo(dir).absoluteFilePath()));
                return;
            }
        showError(tr("The documentation folder is not on this machine"), tr("see docs/ in Lathe's source tree"));
    });
    help->addAction(tr("&About Lathe"), this, [this] { QMessageBox::about(this, tr("About Lathe"), aboutText()); });
}

QString MainWindow::shortcutsText() const {
    QStringList rows;
    for (QAction *menu : menuBar()->actions())
        if (menu->menu())
            for (QAction *a : menu->menu()->actions())
                if (!a->shortcut().isEmpty())
                    rows << tr("%1\t%2 > %3")
                                .arg(a->shortcut().toString(QKeySequence::NativeText), menu->text().remove('&'),
                                     a->text().remove('&'));
    return rows.join('\n');
}

QString MainWindow::aboutText() const {
    const BlasInfo blas = blasInfo();
    std::string whyNoGpu;
    const auto &gpus = gpuDevices(&whyNoGpu);
    QString gpu = gpus.empty() ? tr("none (%1): the CPU runs every job").arg(QString::fromStdString(whyNoGpu))
                               : QString::fromStdString(gpus.front().name);
    return tr("<b>Lathe %1</b><p>A workbench for compressing transformer language models: SliceGPT, Wanda, "
              "magnitude, LoSparse, PST, SAT.</p><p>Qt %2<br>BLAS: %3%4<br>LAPACK: %5<br>GPU: %6</p>")
        .arg(QApplication::applicationVersion(), qVersion(), QString::fromStdString(blas.library),
             blas.coreType.empty() ? QString() : QString(" (%1 kernels)").arg(QString::fromStdString(blas.coreType)),
             QString::fromStdString(lapackName()), gpu);
}

void MainWindow::addRecent(const QString &path) {
    QSettings s;
    QStringList recent = s.value("recentModels").toStringList();
    recent.removeAll(path);
    recent.prepend(path);
    while (recent.size() > kMaxRecent)
        recent.removeLast();
    s.setValue("recentModels", recent);
    rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
    m_recentMenu->clear();
    const QStringList recent = QSettings().value("recentModels").toStringList();
    for (const QString &p : recent)
        m_recentMenu->addAction(p, this, [this, p] { openModelPath(p); });
    m_recentMenu->setEnabled(!recent.isEmpty());
}

} // namespace lathe
