#pragma once

#include "engine/calibration.h"
#include "job.h"

#include <QString>

#include <memory>

namespace lathe {

class Model;

// Tokenizes a calibration text with the model's tokenizer, cuts it into samples and runs the dense model over
// them, collecting the L2 norm of every linear's input features (Wanda's ||X_j||). Result: collected().
class CalibrationJob : public Job {
    Q_OBJECT
public:
    CalibrationJob(std::shared_ptr<const Model> model, QString textPath, CalibrationParams params);

signals:
    void collected(std::shared_ptr<lathe::InputNorms> norms, QString description);

protected:
    void execute() override;

private:
    std::shared_ptr<const Model> m_model;
    QString m_textPath;
    CalibrationParams m_params;
};

} // namespace lathe
