#include "mainwindow.h"

#include "model.h"
#include "modelsummary.h"
#include "modeltree.h"
#include "openmodeljob.h"

#include <QAction>
#include <QCloseEvent>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMimeData>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <QTextBrowser>
#include <QThreadPool>
#include <QVBoxLayout>

namespace lathe {

namespace {
constexpr int kMaxRecent = 8;
}

MainWindow::MainWindow(QWidget *parent) : QMainWindow(parent) {
    setWindowTitle(tr("Lathe"));
    setAcceptDrops(true);
    auto *central = new QWidget(this);
    auto *layout = new QVBoxLayout(central);
    layout->setContentsMargins(4, 4, 4, 4);
    m_messageBar = new QLabel(central);
    m_messageBar->setWordWrap(true);
    m_messageBar->setStyleSheet("QLabel { background: #fdecea; color: #611a15; border: 1px solid #f5c6cb; padding: 6px; }");
    m_messageBar->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_messageBar->hide();
    layout->addWidget(m_messageBar);
    auto *split = new QSplitter(Qt::Horizontal, central);
    m_tree = new ModelTree(split);
    m_details = new QTextBrowser(split);
    m_details->setFont(QFont("Monospace"));
    split->addWidget(m_tree);
    split->addWidget(m_details);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    layout->addWidget(split);
    setCentralWidget(central);
    connect(m_tree, &QTreeWidget::itemSelectionChanged, this, &MainWindow::updateDetails);
    buildMenus();
    statusBar()->showMessage(tr("Open a model: File > Open, or drop a folder, .gguf or .bin here"));
    QSettings s;
    restoreGeometry(s.value("window/geometry").toByteArray());
    if (!s.contains("window/geometry"))
        resize(1200, 760);
}

MainWindow::~MainWindow() = default;

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
    QAction *quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);
}

void MainWindow::openModelPath(const QString &path) {
    statusBar()->showMessage(tr("Opening %1...").arg(path));
    auto *job = new OpenModelJob(path);
    // Queued connections: the job emits on a worker thread, the slots run here.
    connect(job, &OpenModelJob::finished, this, [this](QString p, std::shared_ptr<Model> m) {
        m_model = std::move(m);
        m_modelPath = p;
        m_messageBar->hide();
        m_lastError.clear();
        m_tree->setModel(m_model.get());
        setWindowTitle(tr("Lathe - %1").arg(QFileInfo(p).fileName()));
        addRecent(p);
        updateDetails();
        statusBar()->showMessage(tr("Opened %1: %2 parameters").arg(p, QString::fromStdString(humanCount(m_model->parameterCount()))));
        emit modelOpened(p);
    }, Qt::QueuedConnection);
    connect(job, &OpenModelJob::failed, this, [this](QString, QString msg, QString hint) { showError(msg, hint); },
            Qt::QueuedConnection);
    QThreadPool::globalInstance()->start(job);
}

void MainWindow::showError(const QString &message, const QString &hint) {
    m_lastError = message;
    m_messageBar->setText(hint.isEmpty() ? message : message + "\n" + tr("Hint: ") + hint);
    m_messageBar->show();
    statusBar()->showMessage(tr("Could not open the model"), 5000);
    emit modelFailed(message);
}

void MainWindow::updateDetails() {
    if (!m_model) {
        m_details->clear();
        return;
    }
    const QString name = m_tree->selectedTensor();
    const TensorInfo *t = name.isEmpty() ? nullptr : m_model->find(name.toStdString());
    if (!t) {
        m_details->setPlainText(QString::fromStdString(formatSummary(summarizeModel(*m_model))));
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
    m_details->setPlainText(text);
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
    QSettings().setValue("window/geometry", saveGeometry());
    event->accept();
}

} // namespace lathe
