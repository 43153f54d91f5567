#include "methods/pruningmethod.h"

#include "base/error.h"
#include "base/unicodetext.h"
#include "model/model.h"

#include <cmath>

namespace lathe {

std::vector<ParamSpec> pruningParams() {
    ParamSpec pattern = declareChoice("pattern", "Pattern", {"unstructured", "per-row", "2:4", "4:8"},
                                      "unstructured (per matrix), per-row (each output row loses the ratio) or N:M "
                                      "(N of every M consecutive inputs pruned; fixes the ratio at N/M)");
    pattern.openChoice = true;
    pattern.check = [](const ParamValue &v) { parsePattern(std::get<std::string>(v), 0.5); };

    ParamSpec targets;
    targets.key = "targets";
    targets.label = "Targets";
    targets.type = ParamType::Text;
    targets.defaultValue = std::string(".*");
    targets.unit = "regex";
    targets.help = "regular expression searched in the block linears' tensor names; the ones it matches are pruned";
    targets.check = [](const ParamValue &v) {
        try {
            unicode::NamePattern re(std::get<std::string>(v));
        } catch (const LatheError &e) {
            throw LatheError(e.what(), e.hint().empty() ? "e.g. \"mlp\" or \"layers\\\\.(1[0-9])\\\\..*proj\"" : e.hint());
        }
    };

    ParamSpec layers;
    layers.key = "layer_sparsity";
    layers.label = "Per-block ratios";
    layers.type = ParamType::LayerRatios;
    layers.defaultValue = LayerRatios{};
    layers.unit = "fraction";
    layers.help = "ratios that replace the job's for some blocks: one per block [..] or {\"0-3\": 0.3, \"7\": 0.6}; "
                  "unstructured patterns only";
    return {pattern, targets, layers};
}

PruningSelection pruningSelection(const MethodParams &params, double sparsity, int layers) {
    PruningSelection sel;
    sel.pattern = parsePattern(params.get<std::string>("pattern"), sparsity);
    sel.targets = params.get<std::string>("targets");
    sel.layerRatio = params.get<LayerRatios>("layer_sparsity").resolve(layers);
    return sel;
}

void checkPruningJob(const MethodParams &params, const std::vector<double> &sparsities) {
    const SparsityPattern p = parsePattern(params.get<std::string>("pattern"), sparsities.empty() ? 0.5 : sparsities[0]);
    if (p.isNm() && sparsities.size() > 1)
        throw LatheError("job spec: an N:M pattern fixes the sparsity; a sweep makes no sense with it");
    if (p.isNm() && !params.get<LayerRatios>("layer_sparsity").empty())
        throw LatheError("job spec: per-block ratios apply to unstructured patterns; an N:M pattern fixes the ratio");
}

std::vector<std::string> previewTargets(const Model &model, const PruningSelection &selection, size_t limit) {
    const std::vector<PruningTarget> picked = selectTargets(model, selection);
    std::vector<std::string> out;
    for (size_t i = 0; i < picked.size() && i < limit; ++i)
        out.push_back(picked[i].label());
    if (picked.size() > limit)
        out.push_back("... " + std::to_string(picked.size() - limit) + " more");
    return out;
}

MethodOutcome pruningOutcome(const Model &model, PruningResult result) {
    MethodOutcome out;
    out.storedParams = model.parameterCount();
    out.params = out.storedParams - result.pruned;
    for (const PrunedLayer &l : result.layers)
        out.layers.push_back({{"layer", l.layer},
                              {"output_error", std::isnan(l.outputError) ? nlohmann::json(nullptr)
                                                                         : nlohmann::json(l.outputError)},
                              {"seconds", l.seconds}});
    out.pruning = std::move(result);
    return out;
}

void PruningMethod::checkJob(const MethodParams &params, const std::vector<double> &sparsities) const {
    checkPruningJob(params, sparsities);
}

void PruningMethod::checkRun(const Model &model, double sparsity, const MethodParams &params) const {
    selectTargets(model, pruningSelection(params, sparsity, int(model.config.numLayers)));
}

std::vector<std::string> PruningMethod::preview(const Model &model, double sparsity, const MethodParams &params) const {
    return previewTargets(model, pruningSelection(params, sparsity, int(model.config.numLayers)));
}

} // namespace lathe
