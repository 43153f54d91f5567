#pragma once

#include "plotview.h"

#include <QVector>

class QCheckBox;
class QCPAxis;
class QCPAxisRect;

namespace lathe {

// A training run live (issue 17 item 10): training loss and held-out perplexity against step on the left axis
// (log scale by default, a check box switches it), the learning rate on the right axis, and a fine-tuning
// method's schedule (PST's sparsity, SAT's omission rate, LoSparse's kept fraction) on a second right axis. Fed
// step by step by a TrainJob's signals; exportable like every figure.
class TrainingView : public PlotView {
    Q_OBJECT
public:
    explicit TrainingView(QWidget *parent = nullptr);

    void start(const QString &title); // clears the previous run
    // The run's objective: a masked-LM run (BERT) names its perplexity so.
    void setObjective(const QString &objective);
    // `schedule` names the method's value at this step (empty: no method).
    void addStep(qint64 step, double loss, double lr, const QString &schedule = {}, double scheduleValue = 0);
    void addEval(qint64 step, double perplexity);
    int stepCount() const { return m_steps.size(); }
    int evalCount() const { return m_evalSteps.size(); }
    void setLogScale(bool on);

private:
    void redraw();

    QCheckBox *m_log = nullptr;
    QString m_title, m_schedule;
    QString m_pplName; // "held-out perplexity", or the masked-LM one
    QVector<double> m_steps, m_loss, m_lr, m_evalSteps, m_evalPpl, m_scheduleSteps, m_scheduleValues;
    QCPAxis *m_scheduleAxis = nullptr;
};

} // namespace lathe
