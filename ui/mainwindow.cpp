#include "mainwindow.h"

#include "compressdialog.h"
#include "comparejob.h"
#include "compareview.h"
#include "compressjob.h"
#include "exportjob.h"
#include "generationjob.h"
#include "reportwriter.h"
#include "runhistory.h"
#include "sensitivityjob.h"
#include "sensitivityview.h"
#include "trainingview.h"
#include "traindialog.h"
#include "trainjob.h"
#include "resultsview.h"
#include "workbenchdocument.h"

#include <QDateTime>
#include <QDir>

#include "analysis/compressionestimate.h"
#include "methods/method.h"
#include "base/outputfiles.h"
#include "engine/evaluation.h"
#include "analysis/modelanalysis.h"
#include "analysis/modelsummary.h"
#include "analysisjob.h"
#include "calibrationjob.h"
#include "figureexporter.h"
#include "importanceview.h"
#include "jobmanager.h"
#include "jobpanel.h"
#include "layerview.h"
#include "logpanel.h"
#include "model/model.h"
#include "modeltree.h"
#include "numeric/backend.h"
#include "numeric/blas.h"
#include "numeric/linalg.h"
#include "numeric/spectrum.h"
#include "openmodeljob.h"
#include "parameterpanel.h"
#include "sparsityview.h"
#include "spectrumview.h"

#include <QAction>
#include <QApplication>
#include <QDesktopServices>
#include <QInputDialog>
#include <QLineEdit>
#include <QMessageBox>
#include <QUrl>
#include <QVBoxLayout>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QLabel>
#include <QMenuBar>
#include <QMimeData>
#include <QScreen>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QTextBrowser>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include <spdlog/spdlog.h>

#include <map>

namespace lathe {

namespace {
constexpr int kMaxRecent = 8;
}

void registerUiMetaTypes() {
    qRegisterMetaType<std::shared_ptr<lathe::Model>>("std::shared_ptr<lathe::Model>");
    qRegisterMetaType<std::shared_ptr<lathe::AnalyzeResult>>("std::shared_ptr<lathe::AnalyzeResult>");
    qRegisterMetaType<std::shared_ptr<lathe::InputNorms>>("std::shared_ptr<lathe::InputNorms>");
    qRegisterMetaType<std::shared_ptr<const lathe::CompressionRunResult>>(
        "std::shared_ptr<const lathe::CompressionRunResult>");
    qRegisterMetaType<std::shared_ptr<const lathe::TrainingResult>>("std::shared_ptr<const lathe::TrainingResult>");
    qRegisterMetaType<std::shared_ptr<const lathe::SensitivityResult>>("std::shared_ptr<const lathe::SensitivityResult>");
    qRegisterMetaType<std::shared_ptr<const lathe::ModelComparison>>("std::shared_ptr<const lathe::ModelComparison>");
}

MainWindow::MainWindow(QWidget *parent) : QMainWindow(parent) {
    setWindowTitle(tr("Lathe"));
    setAcceptDrops(true);
    setDockNestingEnabled(true);
    m_jobs = new JobManager(this);
    m_doc = new WorkbenchDocument(this);
    // The parameter panel first: views subscribe to it.
    auto *paramDock = new QDockWidget(tr("Parameters"), this);
    paramDock->setObjectName("parameterDock");
    // In a scroll area: on a short screen (1280 x 720) the panel scrolls instead of squeezing its rows.
    auto *paramScroll = new QScrollArea(paramDock);
    paramScroll->setWidgetResizable(true);
    paramScroll->setFrameShape(QFrame::NoFrame);
    paramScroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_params = new ParameterPanel(paramScroll);
    paramScroll->setWidget(m_params);
    paramScroll->setMinimumWidth(m_params->minimumSizeHint().width() + paramScroll->verticalScrollBar()->sizeHint().width());
    paramDock->setWidget(paramScroll);

    auto *central = new QWidget(this);
    auto *layout = new QVBoxLayout(central);
    layout->setContentsMargins(4, 4, 4, 4);
    m_messageBar = new QLabel(central);
    m_messageBar->setObjectName("messageBar");
    m_messageBar->setWordWrap(true);
    m_messageBar->setStyleSheet("QLabel { background: #fdecea; color: #611a15; border: 1px solid #f5c6cb; padding: 6px; }");
    m_messageBar->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_messageBar->hide();
    layout->addWidget(m_messageBar);
    m_views = new QTabWidget(central);
    m_views->setObjectName("views");
    m_spectrumView = new SpectrumView(m_views);
    m_sparsityView = new SparsityView(m_views);
    m_importanceView = new ImportanceView(m_views);
    m_layerView = new LayerView(m_doc, m_params, m_views);
    m_details = new QTextBrowser(m_views);
    m_details->setFont(QFont("Monospace"));
    m_views->addTab(m_spectrumView, tr("Spectrum"));
    m_views->addTab(m_sparsityView, tr("Sparsity"));
    m_views->addTab(m_importanceView, tr("Importance"));
    m_views->addTab(m_layerView, tr("Layers"));
    m_views->addTab(m_details, tr("Details"));
    m_resultsView = new ResultsView(m_doc, central);
    m_views->addTab(m_resultsView, tr("Results"));
    connect(m_resultsView, &ResultsView::generateRequested, this,
            [this](QStringList labels, QStringList paths, QString prompt, int maxNew) {
        std::vector<GenerationJob::Target> targets;
        for (int i = 0; i < paths.size(); ++i)
            targets.push_back({labels[i], paths[i]});
        auto *job = new GenerationJob(std::move(targets), prompt, maxNew);
        connect(job, &GenerationJob::generated, this, [this](QStringList l, QStringList t) {
            m_resultsView->setGenerations(l, t);
            emit generationsReady();
        });
        connect(job, &Job::failed, this, [this](QString message, QString hint) { showError(message, hint); });
        m_jobs->start(job);
    });
    m_trainingView = new TrainingView(central);
    m_views->addTab(m_trainingView, tr("Training"));
    m_sensitivityView = new SensitivityView(central);
    m_views->addTab(m_sensitivityView, tr("Sensitivity"));
    m_compareView = new CompareView(m_doc, central);
    m_views->addTab(m_compareView, tr("Compare"));
    connect(m_sensitivityView, &SensitivityView::budgetsRequested, this, [this](std::vector<double> b, double target) {
        if (!m_doc->model()) {
            statusBar()->showMessage(tr("Open a model first"));
            return;
        }
        compressWithDialog(specWithBudgets(b, target));
    });
    layout->addWidget(m_views);
    setCentralWidget(central);

    auto *treeDock = new QDockWidget(tr("Model"), this);
    treeDock->setObjectName("modelDock");
    auto *treePane = new QWidget(treeDock);
    auto *treeLayout = new QVBoxLayout(treePane);
    treeLayout->setContentsMargins(0, 0, 0, 0);
    auto *filter = new QLineEdit(treePane);
    filter->setObjectName("treeFilter");
    filter->setPlaceholderText(tr("Filter: name or role (e.g. down_proj, layers.3., attn_q)"));
    filter->setClearButtonEnabled(true);
    m_tree = new ModelTree(treePane);
    m_tree->setSelectionMode(QAbstractItemView::ExtendedSelection);
    connect(filter, &QLineEdit::textChanged, m_tree, &ModelTree::setFilter);
    treeLayout->addWidget(filter);
    treeLayout->addWidget(m_tree);
    treeDock->setWidget(treePane);
    addDockWidget(Qt::LeftDockWidgetArea, treeDock);

    addDockWidget(Qt::RightDockWidgetArea, paramDock);

    auto *jobDock = new QDockWidget(tr("Jobs"), this);
    jobDock->setObjectName("jobDock");
    m_jobPanel = new JobPanel(m_jobs, jobDock);
    jobDock->setWidget(m_jobPanel);
    addDockWidget(Qt::BottomDockWidgetArea, jobDock);
    auto *logDock = new QDockWidget(tr("Log"), this);
    logDock->setObjectName("logDock");
    m_log = new LogPanel(logDock);
    logDock->setWidget(m_log);
    addDockWidget(Qt::BottomDockWidgetArea, logDock);
    tabifyDockWidget(jobDock, logDock);
    jobDock->raise();

    connect(m_tree, &QTreeWidget::itemSelectionChanged, this, &MainWindow::updateViews);
    connect(m_tree, &QTreeWidget::itemSelectionChanged, this,
            [this] { m_compareView->setSelectedTensor(m_tree->selectedTensor()); });
    connect(m_params, &ParameterPanel::changed, this, [this] {
        updateSummary();
        updateSpectrum();
        requestScores();
    });
    // The views follow the document.
    connect(m_doc, &WorkbenchDocument::modelChanged, this, [this] {
        m_tree->setModel(m_doc->model().get());
        setWindowTitle(m_doc->model() ? tr("Lathe - %1").arg(QFileInfo(m_doc->modelPath()).fileName()) : tr("Lathe"));
        m_params->setRankInfo(QString()); // the previous model's rank line
        m_params->setCalibrationStatus(tr("not collected"));
        updateDetails();
        updateSummary();
        updateViews();
    });
    connect(m_doc, &WorkbenchDocument::analysisChanged, this, [this] {
        updateDetails();
        updateSpectrum();
    });
    connect(m_doc, &WorkbenchDocument::calibrationChanged, this, [this] {
        m_params->setCalibrationStatus(m_doc->calibration() ? m_doc->calibrationSource() : tr("not collected"));
        requestScores();
    });
    connect(m_params, &ParameterPanel::collectRequested, this,
            [this] { collectCalibration(m_params->calibrationPath(), m_params->calibrationParams()); });
    buildMenus();
    statusBar()->showMessage(tr("Open a model: File > Open, or drop a folder, .gguf or .bin here"));
    QSettings s;
    if (s.contains("window/geometry")) {
        restoreGeometry(s.value("window/geometry").toByteArray());
        restoreState(s.value("window/state").toByteArray());
    } else {
        // 1440 x 900, or what the screen has room for (1280 x 720 included).
        const QRect avail = screen() ? screen()->availableGeometry() : QRect(0, 0, 1440, 900);
        resizeWithDocks(QSize(std::min(1440, avail.width() * 95 / 100), std::min(900, avail.height() * 95 / 100)));
    }
    m_spectrumView->clear(tr("Open a model: File > Open, or drop a folder, .gguf or .bin here"));
}

MainWindow::~MainWindow() { m_jobs->shutdown(); }

void MainWindow::resizeWithDocks(const QSize &size) {
    resize(size);
    // The docks in proportion: the tree a quarter of the width, the parameters a fifth (at least what their widgets need),
    // the jobs a seventh of the height.
    QDockWidget *tree = findChild<QDockWidget *>("modelDock"), *params = findChild<QDockWidget *>("parameterDock"),
                *jobs = findChild<QDockWidget *>("jobDock");
    resizeDocks({tree, params}, {size.width() / 4, size.width() / 5}, Qt::Horizontal);
    resizeDocks({jobs}, {size.height() / 7}, Qt::Vertical);
}

const Model *MainWindow::model() const { return m_doc->model().get(); }

const AnalyzeResult *MainWindow::analysis() const { return m_doc->analysis().get(); }

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

void MainWindow::showError(const QString &message, const QString &hint) {
    m_lastError = message;
    m_messageBar->setText(hint.isEmpty() ? message : message + "\n" + tr("Hint: ") + hint);
    m_messageBar->show();
    statusBar()->showMessage(tr("Error: %1").arg(message), 5000);
}

QStringList MainWindow::selectedMatrices() const {
    QStringList out;
    if (!m_doc->model())
        return out;
    auto add = [&](QTreeWidgetItem *item) {
        const QString name = item->data(ModelTree::NameColumn, Qt::UserRole).toString();
        const TensorInfo *t = name.isEmpty() ? nullptr : m_doc->model()->find(name.toStdString());
        if (t && t->shape.size() == 2 && !t->isBias && t->role != TensorRole::Buffer && !out.contains(name))
            out << name;
    };
    for (QTreeWidgetItem *item : m_tree->selectedItems()) {
        if (item->childCount() > 0) {
            for (int i = 0; i < item->childCount(); ++i)
                add(item->child(i));
        } else {
            add(item);
        }
    }
    return out;
}

QString MainWindow::labelFor(const std::string &tensor) const {
    const TensorInfo *t = m_doc->model() ? m_doc->model()->find(tensor) : nullptr;
    if (!t)
        return QString::fromStdString(tensor);
    const QString role = QString::fromUtf8(roleName(t->role));
    return t->layer >= 0 ? tr("block %1 %2").arg(t->layer).arg(role) : role;
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

PlotView *MainWindow::currentPlot() const { return qobject_cast<PlotView *>(m_views->currentWidget()); }

void MainWindow::updateViews() {
    updateDetails();
    updateSpectrum();
    requestScores();
}

void MainWindow::updateSpectrum() {
    if (!m_doc->model()) {
        m_spectrumView->clear(tr("Open a model"));
        return;
    }
    const QStringList sel = selectedMatrices();
    if (sel.isEmpty()) {
        m_spectrumView->clear(tr("Select one or more weight matrices in the tree (Ctrl+click to overlay)"));
        return;
    }
    if (!m_doc->analysis()) {
        m_spectrumView->clear(tr("Computing spectra... (see Jobs)"));
        return;
    }
    std::vector<const MatrixSpectrum *> spectra;
    QStringList labels;
    for (const QString &name : sel) {
        auto it = m_doc->analysis()->data.spectra.find(name.toStdString());
        if (it == m_doc->analysis()->data.spectra.end())
            continue;
        spectra.push_back(&it->second);
        labels << labelFor(name.toStdString());
    }
    // Per-head spectra of the first selected matrix, when computed (Analysis > Spectra per Head).
    if (sel.size() == 1) {
        for (int h = 0;; ++h) {
            auto it = m_doc->analysis()->data.spectra.find(sel.front().toStdString() + "#head" + QString::number(h).toStdString());
            if (it == m_doc->analysis()->data.spectra.end())
                break;
            spectra.push_back(&it->second);
            labels << tr("head %1").arg(h);
        }
    }
    int64_t rank = 0;
    if (!spectra.empty()) {
        rank = losparseRank(spectra.front()->rows, spectra.front()->cols, m_params->rankRatio());
        m_params->setRankInfo(tr("%1: rank %2 keeps %3% of the energy")
                                  .arg(labels.front())
                                  .arg(rank)
                                  .arg(100.0 * energyKept(spectra.front()->values, rank), 0, 'f', 1));
    }
    m_spectrumView->setSpectra(spectra, labels, rank);
}

void MainWindow::requestScores() {
    const int generation = ++m_scoreGeneration;
    const QStringList sel = selectedMatrices();
    if (!m_doc->model() || sel.isEmpty()) {
        m_sparsityView->clear(tr("Select a weight matrix in the tree"));
        m_importanceView->clear(tr("Select a weight matrix in the tree"));
        return;
    }
    MatrixScoresRequest req;
    req.model = m_doc->model();
    req.tensor = sel.front().toStdString();
    req.kind = m_params->method();
    req.pattern = m_params->plan().pattern;
    req.norms = m_doc->calibration();
    req.rankRatio = m_params->rankRatio();
    req.generation = generation;
    const TensorInfo *t = m_doc->model()->find(req.tensor);
    if (req.pattern.isNm() && t && t->shape[1] % req.pattern.m != 0) {
        const QString msg = tr("%1 does not fit %2: rows of %3 inputs").arg(m_params->patternText(), labelFor(req.tensor)).arg(t->shape[1]);
        m_sparsityView->clear(msg);
        m_importanceView->clear(msg);
        return;
    }
    auto *watcher = new QFutureWatcher<MatrixScores>(this);
    connect(watcher, &QFutureWatcher<MatrixScores>::finished, this, [this, watcher] {
        const MatrixScores s = watcher->result();
        watcher->deleteLater();
        if (s.generation != m_scoreGeneration)
            return; // a newer request is on its way
        const QString label = labelFor(s.tensor);
        m_sparsityView->setScores(s, label, m_params->patternText());
        m_importanceView->setScores(s, label, m_params->plan().pattern.prunedFraction());
        emit scoresReady();
    });
    watcher->setFuture(QtConcurrent::run(computeMatrixScores, req));
}

void MainWindow::updateSummary() {
    if (!m_doc->model()) {
        m_params->setSummary(tr("No model"));
        return;
    }
    const CompressionPlan plan = m_params->plan();
    const CompressionEstimate e = estimateCompression(*m_doc->model(), plan);
    auto pct = [](double a, double b) { return b > 0 ? QString::number(100.0 * a / b, 'f', 1) + "%" : QString("-"); };
    auto count = [](int64_t n) { return QString::fromStdString(humanCount(n)); };
    auto bytes = [](uint64_t n) { return QString::fromStdString(humanBytes(n)); };
    QString s = tr("<b>%1</b> on %2 block matrices%3<br>").arg(m_params->patternText()).arg(e.targets)
                    .arg(plan.rankRatio > 0 ? tr(" + low rank (ρ = %1)").arg(plan.rankRatio) : QString());
    s += tr("Parameters: %1 → <b>%2</b> (%3)<br>").arg(count(e.paramsBefore), count(e.paramsAfter), pct(double(e.paramsAfter), double(e.paramsBefore)));
    s += tr("Bytes (bf16): %1 → <b>%2</b> compact (%3), %4 with zeros in place")
             .arg(bytes(e.bytesBefore), bytes(e.bytesAfter), pct(double(e.bytesAfter), double(e.bytesBefore)), bytes(e.bytesAfterDense));
    // Honest sizes (issue 19 item 4): a plan whose result is not smaller than the dense model says so.
    if (e.paramsAfter > e.paramsBefore)
        s += tr("<br><font color='#b00020'>This plan makes the model <b>larger</b>: the low-rank factors add more "
                "parameters than pruning removes. Lower ρ or prune more.</font>");
    else if (e.bytesAfter >= e.bytesBefore && e.paramsAfter < e.paramsBefore)
        s += tr("<br><font color='#b00020'>The compact form is <b>not smaller</b> than the dense model at this ratio "
                "(each kept weight also stores its column index): export with zeros in place, or prune more.</font>");
    m_params->setSummary(s);
}

void MainWindow::updateDetails() {
    if (!m_doc->model()) {
        m_details->clear();
        return;
    }
    const QString name = m_tree->selectedTensor();
    const TensorInfo *t = name.isEmpty() ? nullptr : m_doc->model()->find(name.toStdString());
    if (!t) {
        m_details->setPlainText(QString::fromStdString(formatSummary(summarizeModel(*m_doc->model()))));
        return;
    }
    QString text;
    text += tr("Tensor      %1\n").arg(QString::fromStdString(t->name));
    text += tr("In file     %1\n").arg(QString::fromStdString(t->sourceName));
    text += tr("Role        %1%2\n").arg(roleName(t->role), t->isBias ? tr(" (bias)") : QString());
    text += tr("Block       %1\n").arg(t->layer < 0 ? tr("-") : QString::number(t->layer));
    text += tr("Shape       %1 (%2 parameters)\n").arg(QString::fromStdString(t->shapeString())).arg(t->numel());
    text += tr("Storage     %1, %2\n").arg(dtypeName(t->dtype), QString::fromStdString(humanBytes(t->nbytes)));
    const char *transform = t->transform == TensorTransform::Transpose       ? "transposed on read (Conv1D layout)"
                            : t->transform == TensorTransform::RopeUnpermute ? "RoPE rows reordered to rotate-half"
                                                                             : "none";
    text += tr("Transform   %1\n").arg(transform);
    if (m_doc->analysis()) {
        auto it = m_doc->analysis()->data.spectra.find(t->name);
        if (it != m_doc->analysis()->data.spectra.end()) {
            const SpectrumStats &st = it->second.stats;
            text += tr("\nSpectrum    %1 values (%2)\n").arg(it->second.values.size()).arg(QString::fromStdString(it->second.method));
            text += tr("sigma_max   %1\n").arg(st.sigmaMax, 0, 'g', 6);
            text += tr("eff. rank   %1\nstable rank %2\n").arg(st.effectiveRank, 0, 'f', 2).arg(st.stableRank, 0, 'f', 3);
            text += tr("alpha       %1 (xmin %2, KS %3, %4 eigenvalues in the tail)\n")
                        .arg(st.alpha, 0, 'f', 3).arg(st.alphaXmin, 0, 'g', 4).arg(st.alphaKs, 0, 'f', 3).arg(st.alphaTail);
        }
    }
    m_details->setPlainText(text);
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

void MainWindow::dragEnterEvent(QDragEnterEvent *event) {
    if (event->mimeData()->hasUrls())
        event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent *event) {
    const auto urls = event->mimeData()->urls();
    if (!urls.isEmpty() && urls.front().isLocalFile())
        openModelPath(urls.front().toLocalFile());
}

void MainWindow::closeEvent(QCloseEvent *event) {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/state", saveState());
    if (m_exporter)
        m_exporter->cancel();
    m_jobs->shutdown(3000);
    event->accept();
}

} // namespace lathe
