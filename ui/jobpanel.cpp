#include "jobpanel.h"

#include "job.h"
#include "jobmanager.h"

#include <QElapsedTimer>
#include <QHBoxLayout>
#include <QLabel>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QVBoxLayout>

#include <memory>

namespace lathe {

namespace {

QString formatSeconds(double s) {
    if (s < 60)
        return QObject::tr("%1 s").arg(int(s + 0.5));
    if (s < 3600)
        return QObject::tr("%1 min %2 s").arg(int(s) / 60).arg(int(s) % 60);
    return QObject::tr("%1 h %2 min").arg(int(s) / 3600).arg(int(s) % 3600 / 60);
}

} // namespace

JobPanel::JobPanel(JobManager *manager, QWidget *parent) : QWidget(parent) {
    auto *outer = new QVBoxLayout(this);
    outer->setContentsMargins(2, 2, 2, 2);
    auto *bar = new QHBoxLayout;
    auto *clear = new QPushButton(tr("Clear finished"), this);
    clear->setObjectName("clearFinished");
    bar->addStretch();
    bar->addWidget(clear);
    outer->addLayout(bar);
    auto *scroll = m_scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    auto *inner = new QWidget(scroll);
    m_rows = new QVBoxLayout(inner);
    m_rows->addStretch();
    scroll->setWidget(inner);
    // The panel keeps its end in view while the range grows (a row, then its laid-out height) until the user
    // scrolls it (actionTriggered: user actions only); a new job brings the end back. Scrolling to a new row in a
    // zero timer ran before the scroll area had grown for the row and stopped at the old end, the job out of sight.
    QScrollBar *vertical = scroll->verticalScrollBar();
    connect(vertical, &QScrollBar::rangeChanged, this, [this, vertical](int, int max) {
        if (m_showNewest)
            vertical->setValue(max);
    });
    connect(vertical, &QScrollBar::actionTriggered, this, [this] { m_showNewest = false; });
    outer->addWidget(scroll);
    connect(clear, &QPushButton::clicked, this, &JobPanel::clearFinished);
    connect(manager, &JobManager::jobStarted, this, &JobPanel::addJob);
}

int JobPanel::rowCount() const { return m_rows->count() - 1; }

void JobPanel::addJob(Job *job) {
    auto *row = new QWidget;
    row->setObjectName("jobRow");
    row->setProperty("finished", false);
    auto *h = new QHBoxLayout(row);
    h->setContentsMargins(2, 1, 2, 1);
    auto *title = new QLabel(job->title(), row);
    title->setMinimumWidth(160);
    auto *bar = new QProgressBar(row);
    bar->setRange(0, 1000);
    bar->setTextVisible(false);
    bar->setMaximumWidth(220);
    auto *stage = new QLabel(tr("queued"), row);
    stage->setObjectName("stage");
    auto *eta = new QLabel(row);
    eta->setObjectName("eta");
    eta->setMinimumWidth(90);
    auto *cancel = new QPushButton(tr("Cancel"), row);
    cancel->setObjectName("cancelButton");
    h->addWidget(title);
    h->addWidget(bar);
    h->addWidget(stage, 1);
    h->addWidget(eta);
    h->addWidget(cancel);
    m_rows->insertWidget(m_rows->count() - 1, row);
    // A new job is where the user looks next: the rows end with it, so the panel follows its end (above).
    m_showNewest = true;

    QPointer<Job> guard(job);
    auto clock = std::make_shared<QElapsedTimer>();
    clock->start();
    connect(cancel, &QPushButton::clicked, row, [guard, cancel, stage] {
        if (guard)
            guard->cancel();
        cancel->setEnabled(false);
        stage->setText(QObject::tr("cancelling..."));
    });
    connect(job, &Job::progress, row, [bar, stage, eta, clock, cancel](double f, const QString &text) {
        bar->setValue(int(f * 1000));
        if (cancel->isEnabled())
            stage->setText(text);
        const double elapsed = double(clock->elapsed()) / 1000.0;
        eta->setText(f > 0.02 && f < 1.0 ? tr("%1 left").arg(formatSeconds(elapsed * (1.0 - f) / f)) : QString());
    });
    auto finish = [row, bar, stage, eta, cancel, clock](const QString &outcome) {
        row->setProperty("finished", true);
        stage->setText(outcome);
        eta->setText(formatSeconds(double(clock->elapsed()) / 1000.0));
        cancel->setEnabled(false);
        cancel->hide();
        if (outcome == QObject::tr("done"))
            bar->setValue(1000);
    };
    connect(job, &Job::succeeded, row, [finish] { finish(tr("done")); });
    connect(job, &Job::cancelled, row, [finish] { finish(tr("cancelled")); });
    connect(job, &Job::failed, row, [finish](const QString &msg, const QString &) { finish(tr("failed: %1").arg(msg)); });
}

void JobPanel::clearFinished() {
    for (int i = m_rows->count() - 2; i >= 0; --i) {
        QWidget *w = m_rows->itemAt(i)->widget();
        if (w && w->property("finished").toBool()) {
            m_rows->removeWidget(w);
            w->deleteLater();
        }
    }
}

} // namespace lathe
