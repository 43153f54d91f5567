// Magnitude pruning, the data-free baseline of the pruning literature (Han et al., "Learning both Weights and
// Connections for Efficient Neural Networks", NeurIPS 2015; as used by SparseGPT and Wanda for LLMs): the score of a
// weight is |W_ij|; unstructured pruning removes the lowest scores of each matrix, N:M pruning the N lowest of
// every M consecutive inputs in a row. Registered as "magnitude" (parameters: pruningmethod.h). Differs from
// SparseGPT's and Wanda's baseline code in nothing but the option of per-row groups and per-block ratios.

#include "methods/magnitude.h"

#include "analysis/importance.h"
#include "methods/pruningmethod.h"
#include "model/layerweights.h"
#include "model/model.h"

#include <chrono>

namespace lathe {

PruningResult magnitudePrune(Model &model, const PruningSelection &selection, const ProgressCallback &progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<PruningTarget> targets = selectTargets(model, selection);
    PruningResult result;
    result.pattern = selection.pattern;
    const int layers = int(model.config.numLayers);
    for (int l = 0; l < layers; ++l) {
        reportProgress(progress, double(l) / double(layers),
                       "block " + std::to_string(l + 1) + "/" + std::to_string(layers) + ": pruning");
        const auto tl = std::chrono::steady_clock::now();
        BlockWeights b;
        bool loaded = false;
        for (const PruningTarget &t : targets) {
            if (t.layer != l)
                continue;
            if (!loaded) {
                b = loadBlockWeights(model, l);
                loaded = true;
            }
            Mat &w = (b.*t.member).w;
            const std::vector<float> scores = magnitudeScores(w.data(), w.rows(), w.cols());
            const std::vector<uint8_t> mask = pruneMask(scores.data(), w.rows(), w.cols(), patternFor(selection, l));
            PrunedMatrix pm = applyMask(t, w, mask);
            result.pruned += pm.pruned;
            result.targetEntries += pm.rows * pm.cols;
            result.matrices.push_back(std::move(pm));
        }
        if (loaded)
            storeBlockWeights(model, l, b);
        PrunedLayer pl;
        pl.layer = l;
        pl.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
        result.layers.push_back(pl);
    }
    reportProgress(progress, 1.0, "pruned");
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

namespace {

class MagnitudeMethod final : public PruningMethod {
public:
    MagnitudeMethod() {
        m_info.name = "magnitude";
        m_info.title = "Magnitude (data-free pruning)";
        m_info.summary = "zeroes the weights of smallest |W| per matrix, per row or in N:M groups; no calibration";
        m_info.ratioMeaning = "fraction of each selected matrix's weights set to zero";
        m_info.previewScore = ImportanceKind::Magnitude;
        m_info.calibrationCopies = 0;
    }
    MethodOutcome run(Model &model, const MethodParams &params, const MethodContext &context,
                      const ProgressCallback &progress) const override {
        const PruningSelection sel = pruningSelection(params, context.sparsity, int(model.config.numLayers));
        return pruningOutcome(model, magnitudePrune(model, sel, progress));
    }
};

} // namespace

const CompressionMethod &magnitudeMethod() {
    static const MagnitudeMethod method;
    return method;
}

} // namespace lathe
