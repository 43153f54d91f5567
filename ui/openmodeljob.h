#pragma once

#include <QObject>
#include <QRunnable>
#include <QString>

#include <memory>

namespace lathe {

class Model;

// Opens a model on a worker thread (QThreadPool). Reading headers of a large sharded checkpoint can take a
// moment on a slow disk; the GUI never waits for it. Exceptions stay on the worker: they become failed().
class OpenModelJob : public QObject, public QRunnable {
    Q_OBJECT
public:
    explicit OpenModelJob(QString path);
    void run() override;

signals:
    void finished(QString path, std::shared_ptr<lathe::Model> model);
    void failed(QString path, QString message, QString hint);

private:
    QString m_path;
};

} // namespace lathe
