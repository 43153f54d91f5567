#pragma once

#include "job.h"

#include <QString>

#include <memory>

namespace lathe {

class Model;

// Opens a model on a worker thread. Reading the headers of a large sharded checkpoint can take a moment on a slow
// disk; the GUI never waits for it. Result: opened(); errors arrive as Job::failed().
class OpenModelJob : public Job {
    Q_OBJECT
public:
    explicit OpenModelJob(QString path);

signals:
    void opened(QString path, std::shared_ptr<lathe::Model> model);

protected:
    void execute() override;

private:
    QString m_path;
};

} // namespace lathe
