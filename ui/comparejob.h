#pragma once

#include "analysis/modelanalysis.h"
#include "job.h"

#include <QString>

#include <memory>
#include <vector>

namespace lathe {

class Model;

// What the Compare tab shows of two models (issue 19 item 1): per block, parameters, non-zero weights and the mean
// effective rank of the block's matrices, for each; and the second model's spectra (from its analysis archive or
// computed) for the overlays.
struct BlockComparison {
    int layer = 0;
    int64_t parameters[2] = {0, 0}; // in the block's 2-D linear weights
    int64_t nonZero[2] = {0, 0};
    double effectiveRank[2] = {0, 0}; // mean over the block's matrices with a spectrum; 0 = unknown
    double alpha[2] = {0, 0};         // mean power-law alpha of the same (finite ones); 0 = unknown
};
struct ModelComparison {
    QString paths[2];
    std::shared_ptr<const Model> other;            // the second model
    std::shared_ptr<const AnalyzeResult> otherAnalysis;
    std::vector<BlockComparison> blocks;           // blocks both models have
};

// Opens the second model, computes (or reads) its spectra and counts the zeros of both models' block linears.
// Result: compared(); the open model's spectra come from `analysis`.
class CompareJob : public Job {
    Q_OBJECT
public:
    CompareJob(std::shared_ptr<const Model> model, QString modelPath, std::shared_ptr<const AnalyzeResult> analysis,
               QString otherPath, AnalyzeParams params);

signals:
    void compared(std::shared_ptr<const lathe::ModelComparison> comparison);

protected:
    void execute() override;

private:
    std::shared_ptr<const Model> m_model;
    QString m_modelPath;
    std::shared_ptr<const AnalyzeResult> m_analysis;
    QString m_otherPath;
    AnalyzeParams m_params;
};

} // namespace lathe
