// Wanda (Sun et al., "A Simple and Effective Pruning Approach for Large Language Models", ICLR 2024,
// arXiv 2306.11695): the score of weight W_ij is |W_ij| * ||X_j||_2, the norm of input feature j over every
// calibration token reaching that linear; each output row loses its lowest-scoring fraction (or, for N:M, the N
// lowest of every M consecutive inputs). Blocks are processed in order: the input norms of block l come from the
// dense block l fed by the already pruned blocks 0..l-1, and the pruned block's outputs feed block l+1.

#include "wanda.h"

#include "calibration.h"
#include "error.h"
#include "importance.h"
#include "layerwise.h"
#include "layerweights.h"
#include "model.h"
#include "transformer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

namespace lathe {

namespace {

// Which hooked signal is the input of a target linear.
BlockSignal inputSignal(TensorRole role) {
    switch (role) {
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV: return BlockSignal::AttnInput;
    case TensorRole::AttnO: return BlockSignal::AttnContext;
    case TensorRole::MlpGate:
    case TensorRole::MlpUp: return BlockSignal::MlpInput;
    case TensorRole::MlpDown: return BlockSignal::MlpHidden;
    default: break;
    }
    assert(false);
    return BlockSignal::Count;
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

    Transformer engine(model);
    reportProgress(progress, 0.0, "embedding the calibration set");
    LayerwiseSignals signals(engine, calibration, params.rowsPerChunk);
    PruningResult result;
    result.calibrationBytes = signals.bytes() * (params.measureError ? 2 : 1);
    const int layers = int(model.config.numLayers);

    // Sum of squares per input feature of the four hooked signals of the current block.
    std::vector<double> sumsq[size_t(BlockSignal::Count)];
    BlockHooks hooks;
    hooks.mask = BlockHooks::bit(BlockSignal::AttnInput) | BlockHooks::bit(BlockSignal::AttnContext) |
                 BlockHooks::bit(BlockSignal::MlpInput) | BlockHooks::bit(BlockSignal::MlpHidden);
    hooks.observe = [&](int, BlockSignal s, const Mat &x) {
        std::vector<double> &acc = sumsq[size_t(s)];
        if (acc.size() != size_t(x.cols()))
            acc.assign(size_t(x.cols()), 0.0);
        for (int64_t r = 0; r < x.rows(); ++r) {
            const float *row = x.data() + r * x.cols();
            for (int64_t c = 0; c < x.cols(); ++c)
                acc[size_t(c)] += double(row[c]) * row[c];
        }
    };

    for (int l = 0; l < layers; ++l) {
        const auto tl = std::chrono::steady_clock::now();
        const double f0 = double(l) / layers, f1 = double(l + 1) / layers;
        const std::string tag = "block " + std::to_string(l + 1) + "/" + std::to_string(layers);
        for (auto &a : sumsq)
            a.clear();
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
            const std::vector<double> &ss = sumsq[size_t(inputSignal(t.role))];
            Mat &w = (b.*t.member).w;
            require(int64_t(ss.size()) == w.cols(), model.sourcePath, "Wanda: input norms do not match " + t.label());
            std::vector<float> norms(ss.size());
            for (size_t j = 0; j < ss.size(); ++j)
                norms[j] = float(std::sqrt(ss[j]));
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
    }
    reportProgress(progress, 1.0, "pruned");
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
}

} // namespace lathe
