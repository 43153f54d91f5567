#include "trainjob.h"

#include "methods/trainingmethod.h"

#include <QFileInfo>

namespace lathe {

namespace {

// "Train: stories260K.bin, sat, 200 steps" (no method: plain fine-tuning).
QString titleOf(const TrainingSpec &spec) {
    const QString model = QFileInfo(QString::fromStdString(spec.model)).fileName();
    const QString method = spec.method ? QString::fromStdString(spec.method->info().name) : QObject::tr("fine-tuning");
    return QObject::tr("Train: %1, %2, %3 steps").arg(model, method).arg(spec.steps);
}

} // namespace

TrainJob::TrainJob(TrainingSpec spec) : Job(titleOf(spec)), m_spec(std::move(spec)) {}

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
