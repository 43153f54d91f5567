#pragma once

#include <QMainWindow>

#include <memory>

class QLabel;
class QTextBrowser;
class QMenu;

namespace lathe {

class Model;
class ModelTree;

// Lathe's main window: model tree on the left, details of the model or the selected tensor on the right,
// a message bar for errors. Models open on a worker thread (OpenModelJob); File > Open, recent files and drag and
// drop of a folder, .gguf or .bin all go through openModelPath().
class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget *parent = nullptr);
    ~MainWindow() override;

    void openModelPath(const QString &path);
    const Model *model() const { return m_model.get(); }
    ModelTree *tree() const { return m_tree; }
    QString lastError() const { return m_lastError; }

signals:
    void modelOpened(const QString &path);
    void modelFailed(const QString &message);

protected:
    void dragEnterEvent(QDragEnterEvent *event) override;
    void dropEvent(QDropEvent *event) override;
    void closeEvent(QCloseEvent *event) override;

private:
    void buildMenus();
    void showError(const QString &message, const QString &hint);
    void updateDetails();
    void addRecent(const QString &path);
    void rebuildRecentMenu();

    std::shared_ptr<Model> m_model;
    QString m_modelPath;
    ModelTree *m_tree = nullptr;
    QTextBrowser *m_details = nullptr;
    QLabel *m_messageBar = nullptr;
    QMenu *m_recentMenu = nullptr;
    QString m_lastError;
};

} // namespace lathe
