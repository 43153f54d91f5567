#pragma once

#include "job.h"

#include <QString>
#include <QStringList>

#include <vector>

namespace lathe {

// Before/after sample generation (issue 19 item 1): the same prompt, greedy, through each model given (the dense
// model and every exported run), one after the other on a worker thread. Result: generated(), one text per model
// in the order given (an error message in its place when a model does not load).
class GenerationJob : public Job {
    Q_OBJECT
public:
    struct Target {
        QString label; // "dense", "wanda 0.5"
        QString path;  // a model Lathe opens (the run's exported folder)
    };
    GenerationJob(std::vector<Target> targets, QString prompt, int maxNew);

signals:
    void generated(QStringList labels, QStringList texts);

protected:
    void execute() override;

private:
    std::vector<Target> m_targets;
    QString m_prompt;
    int m_maxNew;
};

} // namespace lathe
