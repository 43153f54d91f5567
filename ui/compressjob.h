#pragma once

#include "job.h"
#include "run/compressionrun.h"

namespace lathe {

// Runs a compression job spec (the same one lathe-cli compress executes) on a worker thread. Result: finished(),
// with results.json's content. The run folder is written by the engine; the source model is never touched.
class CompressJob : public Job {
    Q_OBJECT
public:
    explicit CompressJob(CompressionSpec spec);
    const CompressionSpec &spec() const { return m_spec; }

signals:
    void finished(QString resultsJson, QString outputDir);

protected:
    void execute() override;

private:
    CompressionSpec m_spec;
};

} // namespace lathe
