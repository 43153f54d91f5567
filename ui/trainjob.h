#pragma once

#include "job.h"
#include "run/trainingrun.h"

#include <memory>

namespace lathe {

// Runs a training job spec (the one lathe-cli train executes) on a worker thread. Every step and evaluation
// arrives as a signal while it runs (the live chart), the result at the end; cancel() stops at a step boundary.
class TrainJob : public Job {
    Q_OBJECT
public:
    explicit TrainJob(TrainingSpec spec);
    const TrainingSpec &spec() const { return m_spec; }

signals:
    // `schedule` names the fine-tuning method's value of this step ("sparsity", "omission"; empty without one).
    void stepDone(qint64 step, double loss, double lr, double gradNorm, QString schedule, double scheduleValue);
    void evalDone(qint64 step, double loss, double perplexity);
    // What the loss is of (TrainingPlan::objective: "next-token", "masked-LM (15% of tokens)").
    void planned(QString objective);
    void finished(std::shared_ptr<const lathe::TrainingResult> result, QString runFolder);

protected:
    void execute() override;

private:
    TrainingSpec m_spec;
};

} // namespace lathe
