#include "analysisjob.h"

#include "model/model.h"
#include "numeric/backend.h"

namespace lathe {

AnalysisJob::AnalysisJob(std::shared_ptr<const Model> model, std::vector<SpectrumTarget> targets,
                         AnalyzeParams params, QString title)
    : Job(std::move(title), gpuUsable() ? Lane::Gpu : Lane::Cpu), m_model(std::move(model)),
      m_targets(std::move(targets)), m_params(std::move(params)) {}

void AnalysisJob::execute() {
    // On the GPU lane the full spectra come from cuSOLVER; the backend lives for this job on the GPU thread.
    std::unique_ptr<ComputeBackend> device;
    if (lane() == Lane::Gpu) {
        device = createBackend(DevicePreference::Cuda);
        m_params.spectra.device = device.get();
    }
    auto result = std::make_shared<AnalyzeResult>(analyzeModel(*m_model, m_targets, m_params, progressCallback()));
    emit analyzed(std::move(result));
}

} // namespace lathe
