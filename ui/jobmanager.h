#pragma once

#include <QObject>
#include <QThreadPool>

namespace lathe {

class Job;

// Starts jobs and owns them until they end. Cpu-lane jobs run on a pool sized to the cores; Gpu-lane jobs on a
// pool of exactly one thread that never expires, so the CUDA context it creates lives as long as the application
// and GPU jobs are serialised on it.
class JobManager : public QObject {
    Q_OBJECT
public:
    explicit JobManager(QObject *parent = nullptr);
    ~JobManager() override;

    void start(Job *job); // takes ownership; the job is deleted (deleteLater) after it ended
    int activeCount() const { return m_active; }
    void cancelAll();
    // Cancels everything and waits (up to `msecs`) for the workers: used when the window closes.
    bool shutdown(int msecs = 5000);

signals:
    void jobStarted(lathe::Job *job);
    void allIdle();

private:
    QThreadPool m_cpu;
    QThreadPool m_gpu;
    QList<Job *> m_jobs;
    int m_active = 0;
};

} // namespace lathe
