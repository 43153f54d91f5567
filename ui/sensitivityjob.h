#pragma once

#include "analysis/sensitivity.h"
#include "job.h"

#include <QString>

#include <memory>

namespace lathe {

class Model;

// The sensitivity sweep (analysis/sensitivity.h) of the open model on a text, on a worker thread: the text is
// tokenized with the model's tokenizer, the sweep opens its own copy of the model file. Result: finished().
class SensitivityJob : public Job {
    Q_OBJECT
public:
    SensitivityJob(std::shared_ptr<const Model> model, QString textPath, SensitivityParams params);

signals:
    void finished(std::shared_ptr<const lathe::SensitivityResult> result);

protected:
    void execute() override;

private:
    std::shared_ptr<const Model> m_model;
    QString m_textPath;
    SensitivityParams m_params;
};

} // namespace lathe
