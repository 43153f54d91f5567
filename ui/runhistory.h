#pragma once

#include <QDateTime>
#include <QDialog>
#include <QString>
#include <QStringList>

#include <vector>

class QTableWidget;

namespace lathe {

// Run history across sessions (issue 19 item 6): every run folder a job was started in is remembered (QSettings,
// newest first, at most 500), and listed with what its spec.json and results.json say.
void rememberRunFolder(const QString &folder);
QStringList rememberedRunFolders();
void forgetRunFolder(const QString &folder);

struct RunHistoryEntry {
    QString folder;
    QString kind;    // "compression", "training", or "" when the folder holds no run any more
    QString model, method, status;
    QString result;  // "PPL 38.77 -> 83.12 at 0.5", "PPL 38.77 -> 22.87 after 100 steps"
    QDateTime when;  // results.json's last change
};
// What each folder holds now (a folder that is gone or holds no run: kind and status empty, status "gone").
std::vector<RunHistoryEntry> readRunHistory(const QStringList &folders);

class MainWindow;

// Compress > Run History...: the remembered runs in a table, with Add to Results (compression runs), Open Job Spec
// (in the compress dialog, for the open model), Resume (a run that did not finish) and Forget.
class RunHistoryDialog : public QDialog {
    Q_OBJECT
public:
    explicit RunHistoryDialog(MainWindow *window);
    QTableWidget *table() const { return m_table; }
    void reload();

private:
    QString selectedFolder() const;
    MainWindow *m_window;
    QTableWidget *m_table;
    std::vector<RunHistoryEntry> m_entries;
};

} // namespace lathe
