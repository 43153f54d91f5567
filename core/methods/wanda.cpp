// Wanda (Sun et al., "A Simple and Effective Pruning Approach for Large Language Models", ICLR 2024,
// arXiv 2306.11695): the score of weight W_ij is |W_ij| * ||X_j||_2, the norm of input feature j over every
// calibration token reaching that linear; each output row loses its lowest-scoring fraction (or, for N:M, the N
// lowest of every M consecutive inputs). Blocks are processed in order: the input norms of block l come from the
// dense block l fed by the already pruned blocks 0..l-1, and the pruned block's outputs feed block l+1.
// Registered as "wanda". Differs from the official code (locuslab/wanda): calibration windows are drawn from the
// text the user gives (not C4), signals stream through the blocks in chunks, and "per-row" is the default
// comparison group for unstructured patterns (as the paper); per-block ratios may be given; a killed run continues
// from its last layer checkpoint with the same result.

#include "methods/wanda.h"

#include "analysis/importance.h"
#include "base/error.h"
#include "engine/calibration.h"
#include "engine/transformer.h"
#include "methods/layercheckpoint.h"
#include "methods/layerwise.h"
#include "methods/pruningmethod.h"
#include "model/layerweights.h"
#include "model/model.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

namespace lathe {

namespace {

// What a layer checkpoint keeps of block `layer`'s pruning besides its weights: the report and every matrix's
// mask and counts.
LayerCheckpoint::BlockRecord blockRecord(const PruningResult &result, int layer) {
    LayerCheckpoint::BlockRecord r;
    for (const PrunedLayer &pl : result.layers)
        if (pl.layer == layer)
            r.info["layer"] = {{"output_error", pl.outputError}, {"seconds", pl.seconds}};
    r.info["matrices"] = nlohmann::json::array();
    for (const PrunedMatrix &pm : result.matrices) {
        if (pm.layer != layer)
            continue;
        r.info["matrices"].push_back({{"label", pm.label}, {"pruned", pm.pruned}, {"weight_error", pm.weightError}});
        r.blobs.push_back({"mask." + pm.label, DType::U8, {int64_t(pm.maskBits.size())}, pm.maskBits.data(), {}});
    }
    return r;
}

// The reverse: block `layer`'s matrices and report into `result`, in the order the uninterrupted run has them.
void restoreBlockRecord(const LayerCheckpoint::Restored &restored, int layer, const std::vector<PruningTarget> &targets,
                        PruningResult &result) {
    const nlohmann::json &info = restored.blockInfo(layer);
    const nlohmann::json &matrices = info.at("matrices");
    size_t k = 0;
    for (const PruningTarget &t : targets) {
        if (t.layer != layer)
            continue;
        require(k < matrices.size() && matrices[k].at("label") == t.label(), "layer checkpoint",
                "block " + std::to_string(layer) + " has other matrices than the run prunes",
                "remove the layer-checkpoint folder to run this point from its first block");
        PrunedMatrix pm;
        pm.label = t.label();
        pm.layer = layer;
        pm.member = t.member;
        pm.rows = t.rows;
        pm.cols = t.cols;
        pm.pruned = matrices[k].at("pruned").get<int64_t>();
        pm.weightError = matrices[k].at("weight_error").get<double>();
        const int64_t bytes = (pm.rows * pm.cols + 7) / 8;
        const uint8_t *bits = restored.blockBlob(layer, "mask." + pm.label, DType::U8, {bytes});
        pm.maskBits.assign(bits, bits + bytes);
        result.pruned += pm.pruned;
        result.targetEntries += pm.rows * pm.cols;
        result.matrices.push_back(std::move(pm));
        ++k;
    }
    PrunedLayer pl;
    pl.layer = layer;
    const nlohmann::json &l = info.at("layer");
    pl.outputError = l.at("output_error").is_number() ? l.at("output_error").get<double>() : std::nan("");
    pl.seconds = l.at("seconds").get<double>();
    result.layers.push_back(pl);
}

} // namespace

PruningResult wandaPrune(Model &model, const CalibrationSet &calibration, const WandaParams &params,
                         const ProgressCallback &progress) {
    const auto t0 = std::chrono::steady_clock::now();
    PruningSelection selection = params.selection;
    if (!selection.pattern.isNm())
        selection.pattern.perRow = true;
    const std::vector<PruningTarget> targets = selectTargets(model, selection);
    if (model.config.family == ArchFamily::Bert)
        throw LatheError(model.sourcePath + ": Wanda here prunes decoder language models", "use magnitude pruning");

    // A resumed run: the finished blocks' weights are put into the model before the engine reads any.
    std::optional<LayerCheckpoint::Restored> restored;
    if (params.checkpoint)
        restored = params.checkpoint->restore(model);
    Transformer engine(model);
    reportProgress(progress, 0.0, "embedding the calibration set");
    LayerwiseSignals signals(engine, calibration, params.rowsPerChunk);
    PruningResult result;
    result.pattern = selection.pattern;
    result.calibrationBytes = signals.bytes() * (params.measureError ? 2 : 1);
    const int layers = int(model.config.numLayers);
    const int first = restored ? restored->finishedBlocks() : 0;
    if (restored) {
        signals.load(restored->signals(signals.rows(), signals.width()), signals.width());
        for (int l = 0; l < first; ++l)
            restoreBlockRecord(*restored, l, targets, result);
    }

    // ||X_j||^2 of the inputs of the current block's linears.
    InputSquareSums sums(layers);
    const BlockHooks hooks = sums.hooks();

    for (int l = first; l < layers; ++l) {
        const auto tl = std::chrono::steady_clock::now();
        const double f0 = double(l) / layers, f1 = double(l + 1) / layers;
        const std::string tag = "block " + std::to_string(l + 1) + "/" + std::to_string(layers);
        sums.clearLayer(l);
        // Dense pass: input norms, and the dense outputs for the error measure.
        std::vector<Mat> dense(params.measureError ? size_t(signals.chunks()) : 0);
        for (int i = 0; i < signals.chunks(); ++i) {
            reportProgress(progress, f0 + (f1 - f0) * 0.5 * i / signals.chunks(), tag + ": input norms");
            Mat y = signals.chunk(i);
            engine.runBlock(l, y, signals.batch(i), &hooks);
            if (params.measureError)
                dense[size_t(i)] = std::move(y);
        }
        reportProgress(progress, f0 + (f1 - f0) * 0.5, tag + ": pruning");
        BlockWeights b = engine.block(l);
        for (const PruningTarget &t : targets) {
            if (t.layer != l)
                continue;
            BlockSignal signal = BlockSignal::Count;
            linearInputSignal(t.role, signal);
            const std::vector<float> norms = sums.norms(l, signal);
            Mat &w = (b.*t.member).w;
            require(int64_t(norms.size()) == w.cols(), model.sourcePath, "Wanda: input norms do not match " + t.label());
            const std::vector<float> scores = wandaScores(w.data(), w.rows(), w.cols(), norms);
            const std::vector<uint8_t> mask = pruneMask(scores.data(), w.rows(), w.cols(), patternFor(selection, l));
            PrunedMatrix pm = applyMask(t, w, mask);
            result.pruned += pm.pruned;
            result.targetEntries += pm.rows * pm.cols;
            result.matrices.push_back(std::move(pm));
        }
        engine.setBlock(l, b);
        // Pruned pass: the next block's inputs.
        double errSq = 0, refSq = 0;
        for (int i = 0; i < signals.chunks(); ++i) {
            reportProgress(progress, f0 + (f1 - f0) * (0.55 + 0.45 * i / signals.chunks()), tag + ": pruned outputs");
            engine.runBlock(l, signals.chunk(i), signals.batch(i));
            if (params.measureError) {
                errSq += (signals.chunk(i) - dense[size_t(i)]).squaredNorm();
                refSq += dense[size_t(i)].squaredNorm();
                dense[size_t(i)] = Mat();
            }
        }
        storeBlockWeights(model, l, b);
        engine.releaseBlock(l);
        PrunedLayer pl;
        pl.layer = l;
        if (params.measureError && refSq > 0)
            pl.outputError = std::sqrt(errSq / refSq);
        pl.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
        spdlog::info("Wanda {}: output error {:.4f} ({:.1f} s)", tag, pl.outputError, pl.seconds);
        result.layers.push_back(pl);
        if (params.checkpoint && params.checkpoint->due()) {
            LayerCheckpoint::State st;
            st.finishedBlocks = l + 1;
            st.signals = signals.blob();
            params.checkpoint->save(model, st, [&](int layer) { return blockRecord(result, layer); });
        }
    }
    reportProgress(progress, 1.0, "pruned");
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

namespace {

class WandaMethod final : public PruningMethod {
public:
    WandaMethod() {
        m_info.name = "wanda";
        m_info.title = "Wanda (calibrated pruning)";
        m_info.summary = "prunes by |W| x input norm, block by block on calibration text (Sun et al., ICLR 2024)";
        m_info.needsCalibration = true;
        m_info.ratioMeaning = "fraction of each output row's weights set to zero (unstructured patterns run per row)";
        m_info.previewScore = ImportanceKind::Wanda;
        m_info.calibrationCopies = 2; // the signals and the dense outputs for the error measure
        m_info.calibrationPasses = 1.2; // each block run on the signals before and after pruning
    }
    void checkRun(const Model &model, double sparsity, const MethodParams &params) const override {
        if (model.config.family == ArchFamily::Bert)
            throw LatheError(model.sourcePath + ": Wanda here prunes decoder language models", "use magnitude");
        PruningMethod::checkRun(model, sparsity, params);
    }
    MethodOutcome run(Model &model, const MethodParams &params, const MethodContext &context,
                      const ProgressCallback &progress) const override {
        WandaParams wp;
        wp.selection = pruningSelection(params, context.sparsity, int(model.config.numLayers));
        wp.checkpoint = context.checkpoint;
        return pruningOutcome(model, wandaPrune(model, *context.calibration, wp, progress));
    }
};

} // namespace

const CompressionMethod &wandaMethod() {
    static const WandaMethod method;
    return method;
}

} // namespace lathe
