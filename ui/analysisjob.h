#pragma once

#include "analysis/modelanalysis.h"
#include "job.h"

#include <memory>
#include <vector>

namespace lathe {

class Model;

// Spectra of a model's matrices (served from the model's HDF5 archive where it has them). Result: analyzed(). Runs
// on the GPU lane with cuSOLVER where a GPU is usable, else on the CPU pool with LAPACK.
class AnalysisJob : public Job {
    Q_OBJECT
public:
    AnalysisJob(std::shared_ptr<const Model> model, std::vector<SpectrumTarget> targets, AnalyzeParams params,
                QString title);

signals:
    void analyzed(std::shared_ptr<lathe::AnalyzeResult> result);

protected:
    void execute() override;

private:
    std::shared_ptr<const Model> m_model;
    std::vector<SpectrumTarget> m_targets;
    AnalyzeParams m_params;
};

} // namespace lathe
