#pragma once

#include "methods/method.h"
#include "methods/pruningtargets.h"

#include <string>
#include <vector>

namespace lathe {

// What the pruning methods (magnitude, Wanda) share: the parameters that choose the matrices and the pattern,
// their checks, the preview and the outcome of a run.

// pattern ("unstructured", "per-row", "N:M"), targets (regex over tensor names), layer_sparsity.
std::vector<ParamSpec> pruningParams();

// The selection one run of the job prunes with: the pattern at `sparsity`, the targets and the per-block ratios.
PruningSelection pruningSelection(const MethodParams &params, double sparsity, int layers);

// Refuses a sweep with an N:M pattern (which fixes the ratio) and per-block ratios with one.
void checkPruningJob(const MethodParams &params, const std::vector<double> &sparsities);

// The labels of the linears the selection picks (at most `limit`, then "... N more").
std::vector<std::string> previewTargets(const Model &model, const PruningSelection &selection, size_t limit = 200);

// The outcome of a pruning run on `model`.
MethodOutcome pruningOutcome(const Model &model, PruningResult result);

// Base of the pruning methods: their parameters, job checks, target checks and preview. A subclass fills m_info
// (name, title, needs; params are set here) and implements run().
class PruningMethod : public CompressionMethod {
public:
    PruningMethod() { m_info.params = pruningParams(); m_info.nmPatterns = true; m_info.exportKind = ExportKind::PrunedDense; }
    const MethodInfo &info() const override { return m_info; }
    void checkJob(const MethodParams &params, const std::vector<double> &sparsities) const override;
    void checkRun(const Model &model, double sparsity, const MethodParams &params) const override;
    std::vector<std::string> preview(const Model &model, double sparsity, const MethodParams &params) const override;

protected:
    MethodInfo m_info;
};

} // namespace lathe
