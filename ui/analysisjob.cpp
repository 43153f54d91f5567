#include "analysisjob.h"

#include "model.h"

namespace lathe {

AnalysisJob::AnalysisJob(std::shared_ptr<const Model> model, std::vector<SpectrumTarget> targets,
                         AnalyzeParams params, QString title)
    : Job(std::move(title)), m_model(std::move(model)), m_targets(std::move(targets)), m_params(std::move(params)) {}

void AnalysisJob::execute() {
    auto result = std::make_shared<AnalyzeResult>(analyzeModel(*m_model, m_targets, m_params, progressCallback()));
    emit analyzed(std::move(result));
}

} // namespace lathe
