#pragma once

#include "base/progress.h"

#include <QElapsedTimer>
#include <QObject>
#include <QRunnable>
#include <QString>

#include <atomic>

namespace lathe {

// A one-shot computation on a worker thread. Subclasses put their parameters in members before start, do the
// work in execute() (which may throw: LatheError, CancelledError, anything) and emit their own typed result signal
// from it. Exceptions never leave run(): they become failed() or cancelled(). Signals are emitted on the worker
// thread and reach GUI-thread receivers queued. ended() is always the last signal.
class Job : public QObject, public QRunnable {
    Q_OBJECT
public:
    // Where the job runs: Cpu jobs share the thread pool; Gpu jobs run one at a time on the one long-lived worker
    // thread that owns the CUDA context (JobManager).
    enum class Lane { Cpu, Gpu };

    explicit Job(QString title, Lane lane = Lane::Cpu);
    QString title() const { return m_title; }
    Lane lane() const { return m_lane; }

    // Thread-safe. The engine sees it at its next progress report (several times a second) and stops.
    void cancel() { m_cancel = true; }
    bool isCancelled() const { return m_cancel.load(); }

    void run() final;

signals:
    void progress(double fraction, QString stage);
    void succeeded();
    void failed(QString message, QString hint);
    void cancelled();
    void ended();

protected:
    virtual void execute() = 0;
    // The engine's progress callback: forwards at most ~20 reports a second (and every stage change) as
    // progress() and returns false once cancel() was called.
    ProgressCallback progressCallback();

private:
    QString m_title;
    Lane m_lane;
    std::atomic<bool> m_cancel{false};
    QElapsedTimer m_lastReport;
    std::string m_lastStage;
};

} // namespace lathe
