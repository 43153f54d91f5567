#include "mainwindow.h"

#include "compareview.h"
#include "figureexporter.h"
#include "generationjob.h"
#include "importanceview.h"
#include "jobmanager.h"
#include "jobpanel.h"
#include "layerview.h"
#include "logpanel.h"
#include "modeltree.h"
#include "parameterpanel.h"
#include "resultsview.h"
#include "sensitivityview.h"
#include "sparsityview.h"
#include "spectrumview.h"
#include "trainingview.h"
#include "workbenchdocument.h"
#include "analysis/compressionestimate.h"
#include "analysis/modelanalysis.h"
#include "analysis/modelsummary.h"
#include "export/exportestimate.h"
#include "export/ggufwriter.h"
#include "model/model.h"
#include "numeric/spectrum.h"

#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QLabel>
#include <QLineEdit>
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


namespace lathe {

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
        m_ggufWritable = m_doc->model() && !ggufExportBlocker(*m_doc->model()); // reads the tokenizer: once
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
    // Honest sizes (issue 19 item 4): each export's bytes and speed, and a plan whose result is not smaller than
    // the dense model says so.
    // One line per speed: "HF folder bf16 <b>256.57 MiB</b>, GGUF q8_0 <b>136.40 MiB</b>: dense speed (...)".
    const std::vector<ExportSize> exports = estimateExportSizes(*m_doc->model(), plan, m_ggufWritable);
    for (size_t i = 0; i < exports.size(); ++i) {
        const ExportSize &x = exports[i];
        const bool first = i == 0 || exports[i - 1].runs != x.runs;
        const bool last = i + 1 == exports.size() || exports[i + 1].runs != x.runs;
        s += first ? QString("<br>") : QString(", ");
        s += tr("%1 <b>%2</b>").arg(QString::fromStdString(x.format), bytes(x.bytes));
        if (last)
            s += ": " + QString::fromStdString(x.runs);
    }
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
