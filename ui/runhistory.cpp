#include "runhistory.h"

#include "mainwindow.h"
#include "workbenchdocument.h"

#include "base/outputfiles.h"
#include "engine/evaluation.h"
#include "run/compressionspec.h"
#include "run/runresult.h"

#include <nlohmann/json.hpp>

#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QHeaderView>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QTableWidget>
#include <QVBoxLayout>

namespace lathe {

namespace {

constexpr int kMaxRemembered = 500;

nlohmann::json readJson(const QString &path) {
    try {
        return nlohmann::json::parse(readTextFile(path.toStdString()), nullptr, false);
    } catch (const std::exception &) {
        return nullptr;
    }
}

} // namespace

void rememberRunFolder(const QString &folder) {
    const QString f = QFileInfo(folder).absoluteFilePath();
    QStringList list = rememberedRunFolders();
    list.removeAll(f);
    list.prepend(f);
    while (list.size() > kMaxRemembered)
        list.removeLast();
    QSettings().setValue("history/runs", list);
}

QStringList rememberedRunFolders() { return QSettings().value("history/runs").toStringList(); }

void forgetRunFolder(const QString &folder) {
    QStringList list = rememberedRunFolders();
    list.removeAll(folder);
    QSettings().setValue("history/runs", list);
}

std::vector<RunHistoryEntry> readRunHistory(const QStringList &folders) {
    std::vector<RunHistoryEntry> out;
    for (const QString &folder : folders) {
        RunHistoryEntry e;
        e.folder = folder;
        const std::optional<OutputKind> kind = outputKindOf(folder.toStdString());
        const nlohmann::json spec = readJson(QDir(folder).filePath("spec.json"));
        const nlohmann::json results = readJson(QDir(folder).filePath("results.json"));
        if (!kind || (*kind != OutputKind::CompressionRun && *kind != OutputKind::TrainingRun) || !spec.is_object()) {
            e.status = QObject::tr("gone");
            out.push_back(e);
            continue;
        }
        e.kind = *kind == OutputKind::CompressionRun ? "compression" : "training";
        e.model = QFileInfo(QString::fromStdString(spec.value("model", ""))).fileName();
        e.method = QString::fromStdString(spec.value("method", *kind == OutputKind::TrainingRun ? "fine-tuning" : ""));
        e.when = QFileInfo(QDir(folder).filePath("results.json")).lastModified();
        if (results.is_object()) {
            e.status = QString::fromStdString(results.value("status", ""));
            if (*kind == OutputKind::CompressionRun) {
                try {
                    const CompressionRunResult r = CompressionRunResult::fromJson(results);
                    QStringList points;
                    for (const CompressionRunRecord &x : r.runs)
                        points << QObject::tr("%1 at %2").arg(x.perplexity, 0, 'f', 2).arg(x.sparsity);
                    e.result = (r.densePerplexity > 0 ? QObject::tr("dense %1; ").arg(r.densePerplexity, 0, 'f', 2)
                                                      : QString()) +
                               points.join(", ");
                } catch (const std::exception &) {
                    e.result = QObject::tr("(results.json unreadable)");
                }
            } else if (results.contains("evals") && results["evals"].is_array() && !results["evals"].empty()) {
                const auto &first = results["evals"].front(), &last = results["evals"].back();
                e.result = QObject::tr("PPL %1 -> %2 after %3 steps")
                               .arg(first.value("eval_ppl", 0.0), 0, 'f', 2)
                               .arg(last.value("eval_ppl", 0.0), 0, 'f', 2)
                               .arg(last.value("step", 0));
            }
        }
        out.push_back(e);
    }
    return out;
}

RunHistoryDialog::RunHistoryDialog(MainWindow *window) : QDialog(window), m_window(window) {
    setWindowTitle(tr("Run History"));
    resize(1000, 420);
    auto *layout = new QVBoxLayout(this);
    m_table = new QTableWidget(0, 7, this);
    m_table->setObjectName("history");
    m_table->setHorizontalHeaderLabels(
        {tr("When"), tr("Kind"), tr("Model"), tr("Method"), tr("Status"), tr("Results"), tr("Folder")});
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->horizontalHeader()->setStretchLastSection(true);
    layout->addWidget(m_table);
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    QPushButton *add = buttons->addButton(tr("Add to Results"), QDialogButtonBox::ActionRole);
    QPushButton *spec = buttons->addButton(tr("Open Job Spec..."), QDialogButtonBox::ActionRole);
    QPushButton *resume = buttons->addButton(tr("Resume"), QDialogButtonBox::ActionRole);
    QPushButton *forget = buttons->addButton(tr("Forget"), QDialogButtonBox::ActionRole);
    add->setObjectName("addToResults");
    layout->addWidget(buttons);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    connect(add, &QPushButton::clicked, this, [this] {
        const QString f = selectedFolder();
        const auto it = std::find_if(m_entries.begin(), m_entries.end(), [&](auto &e) { return e.folder == f; });
        if (it == m_entries.end() || it->kind != "compression")
            return;
        try {
            const auto spec = CompressionSpec::fromFile(QDir(f).filePath("spec.json").toStdString());
            m_window->document()->addRun({QString::fromStdString(spec.model), QString::fromStdString(spec.label()), f,
                                          CompressionRunResult::fromJson(readJson(QDir(f).filePath("results.json")))});
        } catch (const std::exception &e) {
            QMessageBox::warning(this, tr("Run History"), tr("%1 cannot be added: %2").arg(f, QString::fromStdString(e.what())));
        }
    });
    connect(spec, &QPushButton::clicked, this, [this] {
        const QString f = selectedFolder();
        if (!f.isEmpty())
            m_window->openCompressionJob(QDir(f).filePath("spec.json"));
    });
    connect(resume, &QPushButton::clicked, this, [this] {
        const QString f = selectedFolder();
        if (!f.isEmpty())
            m_window->resumeRun(f);
    });
    connect(forget, &QPushButton::clicked, this, [this] {
        const QString f = selectedFolder();
        if (!f.isEmpty()) {
            forgetRunFolder(f);
            reload();
        }
    });
    reload();
}

void RunHistoryDialog::reload() {
    m_entries = readRunHistory(rememberedRunFolders());
    m_table->setRowCount(int(m_entries.size()));
    for (int r = 0; r < int(m_entries.size()); ++r) {
        const RunHistoryEntry &e = m_entries[size_t(r)];
        const QStringList cells = {e.when.isValid() ? e.when.toString("yyyy-MM-dd hh:mm") : QString(), e.kind, e.model,
                                   e.method, e.status, e.result, e.folder};
        for (int c = 0; c < cells.size(); ++c)
            m_table->setItem(r, c, new QTableWidgetItem(cells[c]));
    }
    m_table->resizeColumnsToContents();
}

QString RunHistoryDialog::selectedFolder() const {
    const int r = m_table->currentRow();
    return r >= 0 && r < int(m_entries.size()) ? m_entries[size_t(r)].folder : QString();
}

} // namespace lathe
