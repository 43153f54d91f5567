#pragma once

#include <QWidget>

class QScrollArea;
class QVBoxLayout;

namespace lathe {

class Job;
class JobManager;

// One row per job: title, progress bar, stage, estimated time left, and a Cancel button. Finished rows stay with
// their outcome until "Clear finished".
class JobPanel : public QWidget {
    Q_OBJECT
public:
    explicit JobPanel(JobManager *manager, QWidget *parent = nullptr);
    int rowCount() const;

private:
    void addJob(Job *job);
    void clearFinished();

    QVBoxLayout *m_rows = nullptr;
    QScrollArea *m_scroll = nullptr;
    bool m_showNewest = false; // keep the end (the newest job) in view: since a job was added, until a user scroll
};

} // namespace lathe
