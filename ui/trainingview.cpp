#include "trainingview.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QVBoxLayout>

#include <algorithm>

namespace lathe {

TrainingView::TrainingView(QWidget *parent) : PlotView("training", parent) {
    m_log = new QCheckBox(tr("Logarithmic loss / perplexity axis"), this);
    m_log->setObjectName("trainingLogScale");
    m_log->setChecked(true);
    static_cast<QVBoxLayout *>(layout())->addWidget(m_log);
    connect(m_log, &QCheckBox::toggled, this, [this] { redraw(); });
    showPlaceholder(tr("No training run yet: Train > New Training Run..."));
}

void TrainingView::start(const QString &title) {
    m_title = title;
    m_steps.clear();
    m_loss.clear();
    m_lr.clear();
    m_evalSteps.clear();
    m_evalPpl.clear();
    m_schedule.clear();
    m_scheduleSteps.clear();
    m_scheduleValues.clear();
    m_pplName = tr("held-out perplexity");
    showPlaceholder(tr("%1: waiting for the first step").arg(title));
}

void TrainingView::setObjective(const QString &objective) {
    m_pplName = objective.startsWith(QLatin1String("masked")) ? tr("held-out masked-LM perplexity")
                                                               : tr("held-out perplexity");
    redraw();
}

void TrainingView::addStep(qint64 step, double loss, double lr, const QString &schedule, double scheduleValue) {
    m_steps << double(step);
    m_loss << loss;
    m_lr << lr;
    if (!schedule.isEmpty()) {
        m_schedule = schedule;
        m_scheduleSteps << double(step);
        m_scheduleValues << scheduleValue;
    }
    redraw();
}

void TrainingView::addEval(qint64 step, double perplexity) {
    m_evalSteps << double(step);
    m_evalPpl << perplexity;
    redraw();
}

void TrainingView::setLogScale(bool on) { m_log->setChecked(on); }

void TrainingView::redraw() {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (m_steps.isEmpty() && m_evalSteps.isEmpty())
        return;
    const bool log = m_log->isChecked();
    QCPGraph *loss = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis);
    loss->setName(tr("training loss"));
    loss->setData(m_steps, m_loss, true);
    loss->setPen(QPen(QColor(31, 119, 180), 1.5));
    QCPGraph *ppl = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis);
    ppl->setName(m_pplName);
    ppl->setData(m_evalSteps, m_evalPpl, true);
    ppl->setPen(QPen(QColor(214, 39, 40), 2));
    ppl->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 6));
    QCPGraph *lr = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
    lr->setName(tr("learning rate"));
    lr->setData(m_steps, m_lr, true);
    lr->setPen(QPen(Qt::gray, 1, Qt::DashLine));
    m_plot->xAxis->setLabel(tr("step"));
    m_plot->yAxis->setLabel(tr("loss (nats) / perplexity"));
    m_plot->yAxis->setScaleType(log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (log)
        m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    else
        m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(tr("learning rate"));
    if (!m_scheduleValues.isEmpty()) {
        if (!m_scheduleAxis)
            m_scheduleAxis = m_plot->axisRect()->addAxis(QCPAxis::atRight);
        m_scheduleAxis->setLabel(QString(m_schedule).replace('_', ' ') + tr(" (method)"));
        m_scheduleAxis->setRange(0, 1);
        QCPGraph *sched = m_plot->addGraph(m_plot->xAxis, m_scheduleAxis);
        sched->setName(QString(m_schedule).replace('_', ' '));
        sched->setData(m_scheduleSteps, m_scheduleValues, true);
        sched->setPen(QPen(QColor(44, 160, 44), 1.5, Qt::DotLine));
    }
    if (m_scheduleAxis)
        m_scheduleAxis->setVisible(!m_scheduleValues.isEmpty());
    m_plot->legend->setVisible(true);
    m_plot->rescaleAxes();
    if (m_scheduleAxis && !m_scheduleValues.isEmpty()) // fractions: always the whole 0..1 range
        m_scheduleAxis->setRange(0, 1);
    const double lastStep = std::max(m_steps.isEmpty() ? 1.0 : m_steps.back(), m_evalSteps.isEmpty() ? 1.0 : m_evalSteps.back());
    m_plot->xAxis->setRange(0, std::max(1.0, lastStep));
    const QString note = m_steps.isEmpty()
                             ? QString()
                             : tr("step %1: loss %2, lr %3").arg(m_steps.back()).arg(m_loss.back(), 0, 'f', 4).arg(m_lr.back(), 0, 'g', 3);
    showResult(m_title, note + (m_evalPpl.isEmpty() ? QString() : tr("; %1 %2").arg(m_pplName).arg(m_evalPpl.back(), 0, 'f', 3)));
}

} // namespace lathe
