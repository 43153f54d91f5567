#include "job.h"

#include "base/memory.h"

#include <spdlog/spdlog.h>

namespace lathe {

Job::Job(QString title, Lane lane) : m_title(std::move(title)), m_lane(lane) { setAutoDelete(false); }

ProgressCallback Job::progressCallback() {
    return [this](const Progress &p) {
        if (!m_lastReport.isValid() || m_lastReport.elapsed() >= 50 || p.stage != m_lastStage || p.fraction >= 1.0) {
            m_lastReport.restart();
            m_lastStage = p.stage;
            emit progress(p.fraction, QString::fromStdString(p.stage));
        }
        return !m_cancel.load();
    };
}

void Job::run() {
    try {
        if (m_cancel)
            throw CancelledError();
        execute();
        emit succeeded();
    } catch (const CancelledError &) {
        spdlog::info("job '{}' cancelled", m_title.toStdString());
        emit cancelled();
    } catch (const LatheError &e) {
        spdlog::error("job '{}': {}", m_title.toStdString(), e.fullMessage());
        emit failed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception &e) {
        spdlog::error("job '{}': {}", m_title.toStdString(), e.what());
        emit failed(QString::fromStdString(e.what()), {});
    } catch (...) {
        emit failed(tr("unknown error"), {});
    }
    releaseFreedMemory(); // the job's temporaries, kept for reuse while it ran (keepFreedMemory)
    emit ended();
}

} // namespace lathe
