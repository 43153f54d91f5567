#include "jobmanager.h"

#include "job.h"

#include <QThread>

namespace lathe {

JobManager::JobManager(QObject *parent) : QObject(parent) {
    m_cpu.setMaxThreadCount(std::max(2, QThread::idealThreadCount()));
    m_gpu.setMaxThreadCount(1);
    m_gpu.setExpiryTimeout(-1);
}

JobManager::~JobManager() { shutdown(); }

void JobManager::start(Job *job) {
    job->setParent(nullptr);
    m_jobs.append(job);
    ++m_active;
    connect(job, &Job::ended, this, [this, job] {
        m_jobs.removeAll(job);
        --m_active;
        job->deleteLater();
        if (m_active == 0)
            emit allIdle();
    }, Qt::QueuedConnection);
    emit jobStarted(job);
    (job->lane() == Job::Lane::Gpu ? m_gpu : m_cpu).start(job);
}

void JobManager::cancelAll() {
    for (Job *j : m_jobs)
        j->cancel();
}

bool JobManager::shutdown(int msecs) {
    cancelAll();
    const bool a = m_cpu.waitForDone(msecs);
    const bool b = m_gpu.waitForDone(msecs);
    return a && b;
}

} // namespace lathe
