#include "trainjob.h"

#include <QFileInfo>

namespace lathe {

TrainJob::TrainJob(TrainingSpec spec)
    : Job(QObject::tr("Train: %1, %2 steps").arg(QFileInfo(QString::fromStdString(spec.model)).fileName()).arg(spec.steps)),
      m_spec(std::move(spec)) {}

void TrainJob::execute() {
    TrainingObserver observer;
    observer.step = [this](const TrainingStep &s) {
        QString schedule;
        double value = 0;
        for (const auto &[key, v] : s.method.items()) // the method's first number: its schedule's value
            if (v.is_number()) {
                schedule = QString::fromStdString(key);
                value = v.get<double>();
                break;
            }
        emit stepDone(s.step, s.loss, s.lr, s.gradNorm, schedule, value);
    };
    observer.plan = [this](const TrainingPlan &p) { emit planned(QString::fromStdString(p.objective)); };
    observer.eval = [this](const TrainingEval &e) { emit evalDone(e.step, e.loss, e.perplexity); };
    auto r = std::make_shared<const TrainingResult>(runTraining(m_spec, progressCallback(), observer));
    emit finished(r, QString::fromStdString(m_spec.outputDir));
}

} // namespace lathe
