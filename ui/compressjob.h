#pragma once

#include "job.h"
#include "run/compressionrun.h"

#include <memory>

namespace lathe {

// Runs a compression job spec (the same one lathe-cli compress executes) on a worker thread. Result: finished(),
// with the typed result (what results.json holds). The run folder is written by the engine; the source model is
// never touched.
class CompressJob : public Job {
    Q_OBJECT
public:
    explicit CompressJob(CompressionSpec spec);
    const CompressionSpec &spec() const { return m_spec; }

signals:
    void finished(std::shared_ptr<const lathe::CompressionRunResult> result, QString outputDir);

protected:
    void execute() override;

private:
    CompressionSpec m_spec;
};

} // namespace lathe
