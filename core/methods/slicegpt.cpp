// SliceGPT (Ashkboos et al., "SliceGPT: Compress Large Language Models by Deleting Rows and Columns", ICLR 2024,
// arXiv 2401.15024). After norm fusion (normfusion.h) every norm is an RMSNorm, and RMSNorm(x Q) = RMSNorm(x) Q for
// orthogonal Q, so the residual stream may be expressed in any orthonormal basis. Per residual signal we take the
// PCA basis Q (eigenvectors of H = sum x^T x in fp64, damped, descending) and keep its first d columns: readers of
// the signal get W <- W Q_d, writers W <- Q_d^T W, and where two bases meet on the residual path a shortcut matrix
// Q_prev,d^T Q_next,d carries the stream across. Signals are computed on the already-sliced network, layer by
// layer; the signals, block passes and rotations live in a SliceGptEngine (CPU or GPU, slicegptengine.h).
// Sequential blocks (Llama, OPT, GPT-2): two PCAs per block, the residual after attention (Q_mid) and after the MLP
// (Q_out). Parallel Phi-2 blocks: one PCA per block. The last block's output and the head keep the full width
// unless sliceHead is set. Registered as "slicegpt". Differs from the official code
// (microsoft/TransformerCompression): the PCA runs in fp64 on the CPU or with cuSOLVER, signals stream through the
// blocks in chunks (host memory when they do not fit on the GPU), per-block fractions may be given as ranges,
// Phi-2's parallel blocks share one PCA, and a killed run continues from its last layer checkpoint with the same
// result (the signals, the current basis and the random state are saved with the finished blocks).

#include "methods/slicegpt.h"

#include "numeric/backend.h"

#include "base/clock.h"
#include "base/error.h"
#include "engine/transformer.h"
#include "methods/layercheckpoint.h"
#include "methods/method.h"
#include "methods/normfusion.h"
#include "methods/slicegptengine.h"
#include "model/layerweights.h"
#include "model/model.h"
#include "numeric/linalg.h"

#include <Eigen/Core>
#include <Eigen/QR>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cmath>
#include <random>
#include <sstream>

namespace lathe {

namespace {



int64_t roundedWidth(int64_t hidden, double sparsity, int64_t roundTo) {
    const int64_t raw = int64_t(std::floor((1.0 - sparsity) * double(hidden) + 1e-9));
    return roundTo > 1 ? raw / roundTo * roundTo : raw;
}

struct Pca {
    MatD basis;                  // width x width, eigenvectors as columns, descending eigenvalue
    std::vector<double> values;  // undamped eigenvalues
    double droppedFraction(int64_t kept) const {
        double total = 0, dropped = 0;
        for (size_t i = 0; i < values.size(); ++i) {
            const double v = std::max(0.0, values[i]);
            total += v;
            if (int64_t(i) >= kept)
                dropped += v;
        }
        return total > 0 ? dropped / total : 0.0;
    }
};

Pca pca(std::vector<double> h, int64_t n, double damping, ComputeBackend *solver) {
    double meanDiag = 0;
    for (int64_t i = 0; i < n; ++i)
        meanDiag += h[size_t(i * n + i)];
    meanDiag /= double(n);
    const double delta = damping * meanDiag;
    for (int64_t i = 0; i < n; ++i)
        h[size_t(i * n + i)] += delta;
    Pca p;
    std::vector<double> vectors;
    if (solver)
        solver->symmetricEigen(h.data(), n, p.values, &vectors);
    else
        symmetricEigen(h.data(), n, p.values, &vectors);
    for (double &v : p.values)
        v -= delta;
    p.basis = Eigen::Map<MatD>(vectors.data(), n, n);
    return p;
}

// Q[:, :d] <- Q[:, :d] R with R a seeded random orthogonal d x d matrix (the kept subspace is unchanged).
void randomlyOrient(MatD &q, int64_t d, std::mt19937_64 &rng) {
    std::normal_distribution<double> g;
    MatD a(d, d);
    for (int64_t i = 0; i < a.size(); ++i)
        a.data()[i] = g(rng);
    Eigen::HouseholderQR<MatD> qr(a);
    const MatD r = qr.householderQ();
    q.leftCols(d) = (q.leftCols(d) * r).eval();
}

} // namespace

SliceGptWidths sliceGptWidths(int64_t hidden, int64_t layers, const SliceGptParams &p) {
    auto check = [&](double s, const std::string &what) {
        if (!(s >= 0.0 && s < 1.0))
            throw LatheError("SliceGPT: " + what + " " + std::to_string(s) + " is outside [0, 1)",
                             "slicing 0.25 removes a quarter of the hidden width");
        const int64_t w = roundedWidth(hidden, s, p.roundTo);
        if (w <= 0)
            throw LatheError("SliceGPT: " + what + " " + std::to_string(s) + " leaves no width (hidden size " +
                                 std::to_string(hidden) + " rounded down to a multiple of " +
                                 std::to_string(p.roundTo) + ")",
                             "use a smaller slicing fraction");
        return w;
    };
    if (!p.layerSparsity.empty() && int64_t(p.layerSparsity.size()) != layers)
        throw LatheError("SliceGPT: " + std::to_string(p.layerSparsity.size()) + " per-layer fractions for a model with " +
                             std::to_string(layers) + " blocks",
                         "give one slicing fraction per block");
    SliceGptWidths w;
    w.embedding = check(p.sparsity, "slicing fraction");
    for (int64_t l = 0; l < layers; ++l) {
        const double s = p.layerSparsity.empty() ? p.sparsity : p.layerSparsity[size_t(l)];
        const int64_t width = check(s, "slicing fraction of block " + std::to_string(l));
        w.mid.push_back(width);
        w.output.push_back(width);
    }
    if (!p.sliceHead && layers > 0)
        w.output.back() = hidden;
    return w;
}

SliceGptResult sliceGpt(Model &model, const CalibrationSet &calibration, const SliceGptParams &params,
                        const ProgressCallback &progress) {
    const double t0 = steadySeconds();
    const std::string why = slicingUnsupportedReason(model);
    if (!why.empty())
        throw LatheError(model.sourcePath + ": " + why, "SliceGPT supports Llama-family, OPT, GPT-2 and Phi-2 models");
    ModelConfig &c = model.config;
    const int64_t D = c.hiddenSize;
    const int layers = int(c.numLayers);
    const SliceGptWidths widths = sliceGptWidths(D, layers, params);
    const bool parallel = c.family == ArchFamily::Phi;
    std::mt19937_64 rng(params.seed);

    SliceGptResult result;
    result.paramsBefore = model.parameterCount();
    // Fractions of the whole run: fusion 2%, embedding PCA 3%, blocks the rest.
    auto sub = [&](double from, double to) {
        return [&, from, to](const Progress &p) {
            return !progress || progress(Progress{from + (to - from) * p.fraction, p.stage});
        };
    };
    fuseNorms(model, sub(0.0, 0.02));

    reportProgress(progress, 0.02, "embedding the calibration set");
    SliceGptEngineOptions eo;
    eo.rowsPerChunk = params.rowsPerChunk;
    eo.precision = params.precision;
    eo.hostSignals = params.gpuHostSignals;
    if (params.gpu && !params.solver)
        throw LatheError("SliceGPT: block passes on a GPU need the GPU's backend", "a bug: please report it");
    const std::unique_ptr<SliceGptEngine> engine = params.gpu ? makeDeviceSliceGptEngine(*params.solver, model, calibration, eo)
                                                              : makeCpuSliceGptEngine(model, calibration, eo);
    result.calibrationBytes = engine->signalBytes();
    spdlog::info("SliceGPT on {}: {} calibration rows, {:.1f} MiB of signals per width-{} copy", engine->describe(),
                 engine->signalRows(), double(engine->signalBytes()) / (1 << 20), D);

    // A resumed run: the rotated embeddings and finished blocks go into the fused model, the signals into the
    // engine, and the basis and random state continue from where they were saved.
    std::optional<LayerCheckpoint::Restored> restored;
    if (params.checkpoint)
        restored = params.checkpoint->restore(model);
    const int first = restored ? restored->finishedBlocks() : 0;
    MatD prev; // Q_{l-1}, kept columns (D x d_in)
    if (restored) {
        const nlohmann::json &st = restored->info();
        std::istringstream(st.at("rng").get<std::string>()) >> rng;
        result.embeddingEnergyDropped = st.at("embedding_energy_dropped").get<double>();
        for (const nlohmann::json &j : st.at("layers"))
            result.layers.push_back({j.at("layer").get<int>(), j.at("mid_energy_dropped").get<double>(),
                                     j.at("output_energy_dropped").get<double>(), j.at("mid_width").get<int64_t>(),
                                     j.at("output_width").get<int64_t>(), j.at("seconds").get<double>()});
        const int64_t d = restored->signalWidth();
        prev = Eigen::Map<const MatD>(reinterpret_cast<const double *>(restored->blob("basis", DType::F64, {D, d})), D, d);
        engine->loadSignals(restored->signals(engine->signalRows(), d), d);
        spdlog::info("SliceGPT: continuing after block {} from the layer checkpoint", first);
    } else {
        // The embedding output: first PCA.
        Pca p0 = pca(engine->signalGram(), D, params.damping, params.solver);
        if (params.randomOrientation)
            randomlyOrient(p0.basis, widths.embedding, rng);
        result.embeddingEnergyDropped = p0.droppedFraction(widths.embedding);
        prev = p0.basis.leftCols(widths.embedding);
        EmbeddingWeights emb = loadEmbeddingWeights(model);
        engine->rotateInput(emb.token, prev);
        engine->rotateInput(emb.position, prev);
        storeEmbeddingWeights(model, emb);
        engine->projectSignals(prev);
    }
    // What a checkpoint saves besides the blocks: the basis, the random state, the reports, the embeddings.
    auto saveCheckpoint = [&](int finished) {
        LayerCheckpoint::State st;
        st.finishedBlocks = finished;
        std::ostringstream rngState;
        rngState << rng;
        nlohmann::json layers = nlohmann::json::array();
        for (const SliceGptLayerReport &r : result.layers)
            layers.push_back({{"layer", r.layer}, {"mid_energy_dropped", r.midEnergyDropped},
                              {"output_energy_dropped", r.outputEnergyDropped}, {"mid_width", r.midWidth},
                              {"output_width", r.outputWidth}, {"seconds", r.seconds}});
        st.info = {{"rng", rngState.str()}, {"embedding_energy_dropped", result.embeddingEnergyDropped},
                   {"layers", layers}};
        st.blobs.push_back({"basis", DType::F64, {prev.rows(), prev.cols()}, prev.data(), {}});
        for (TensorRole role : {TensorRole::TokenEmbedding, TensorRole::PositionEmbedding})
            if (const TensorInfo *t = model.find(role))
                st.outerTensors.push_back(t->name);
        st.signals = engine->signalBlob();
        params.checkpoint->save(model, st, [](int) { return LayerCheckpoint::BlockRecord{}; });
    };

    // Runs block l over the signals (they become its output, in the unrotated basis), then the PCA of that
    // output: the kept basis (D x d) and the energy it drops.
    auto outputBasis = [&](int l, double from, double to, const std::string &tag, int64_t d, double &dropped) {
        const BlockPart part = parallel ? BlockPart::Whole : BlockPart::Mlp;
        std::vector<double> h = engine->runBlock(l, part, progress, from, to, tag + ": block output");
        reportProgress(progress, to, tag + ": eigendecomposition");
        Pca p = pca(std::move(h), D, params.damping, params.solver);
        if (params.randomOrientation)
            randomlyOrient(p.basis, d, rng);
        dropped = p.droppedFraction(d);
        return MatD(p.basis.leftCols(d));
    };
    // Shortcut from a residual in basis `from` (d_from kept) to basis `to` (d_to kept), as a linear weight
    // (d_to x d_from): S = Q_to,d^T Q_from,d. With `to` empty it maps back to the unrotated basis (D x d_from).
    auto shortcut = [&](const MatD &fromD, const MatD *toD) -> Mat {
        if (!toD)
            return fromD.cast<float>();
        return engine->transposedProduct(*toD, fromD).cast<float>();
    };
    auto rotateInputs = [&](std::initializer_list<LinearWeights *> readers, const MatD &q) {
        for (LinearWeights *lin : readers)
            engine->rotateInput(lin->w, q);
    };

    const double blocksFrom = 0.05;
    for (int l = first; l < layers; ++l) {
        const double tl = steadySeconds();
        const double f0 = blocksFrom + (1.0 - blocksFrom) * double(l) / double(layers);
        const double f1 = blocksFrom + (1.0 - blocksFrom) * double(l + 1) / double(layers);
        const std::string tag = "block " + std::to_string(l + 1) + "/" + std::to_string(layers);
        SliceGptLayerReport rep;
        rep.layer = l;
        BlockWeights b = loadBlockWeights(model, l);
        rotateInputs({&b.q, &b.k, &b.v}, prev);
        if (parallel) {
            rotateInputs({&b.gate, &b.up}, prev);
            // One signal per block: the output, with the input carried back to the unrotated basis.
            b.attnShortcut = shortcut(prev, nullptr);
            engine->setBlock(l, b);
            const int64_t dOut = widths.output[size_t(l)];
            const MatD next = outputBasis(l, f0, f0 + (f1 - f0) * 0.9, tag, dOut, rep.outputEnergyDropped);
            b.attnShortcut = shortcut(prev, &next);
            engine->rotateOutput(b.o, next);
            engine->rotateOutput(b.down, next);
            engine->projectSignals(next);
            prev = next;
            rep.midWidth = rep.outputWidth = dOut;
        } else {
            // Signal 1: the residual entering the MLP, in the unrotated basis (so its PCA is of the true signal).
            // The signals become that residual; projected into the kept mid basis they are exactly what the
            // rotated attention sub-layer (o <- Q_mid^T o, shortcut Q_prev^T Q_mid) would write, so the MLP pass
            // starts from them and attention runs once per block.
            b.attnShortcut = shortcut(prev, nullptr);
            engine->setBlock(l, b);
            std::vector<double> hMid = engine->runBlock(l, BlockPart::Attention, progress, f0, f0 + (f1 - f0) * 0.4,
                                                        tag + ": attention output");
            reportProgress(progress, f0 + (f1 - f0) * 0.4, tag + ": eigendecomposition");
            Pca pm = pca(std::move(hMid), D, params.damping, params.solver);
            const int64_t dMid = widths.mid[size_t(l)];
            if (params.randomOrientation)
                randomlyOrient(pm.basis, dMid, rng);
            const MatD mid = pm.basis.leftCols(dMid);
            rep.midEnergyDropped = pm.droppedFraction(dMid);
            b.attnShortcut = shortcut(prev, &mid);
            engine->rotateOutput(b.o, mid);
            rotateInputs({&b.gate, &b.up}, mid);
            // Signal 2: the block output, again in the unrotated basis.
            engine->projectSignals(mid);
            b.mlpShortcut = shortcut(mid, nullptr);
            engine->setBlock(l, b);
            const int64_t dOut = widths.output[size_t(l)];
            const MatD next =
                outputBasis(l, f0 + (f1 - f0) * 0.45, f0 + (f1 - f0) * 0.9, tag, dOut, rep.outputEnergyDropped);
            b.mlpShortcut = shortcut(mid, &next);
            engine->rotateOutput(b.down, next);
            engine->projectSignals(next);
            prev = next;
            rep.midWidth = dMid;
            rep.outputWidth = dOut;
        }
        storeBlockWeights(model, l, b);
        rep.seconds = steadySeconds() - tl;
        spdlog::info("SliceGPT {}: widths {} / {}, energy dropped {:.4f} / {:.4f} ({:.1f} s)", tag, rep.midWidth,
                     rep.outputWidth, rep.midEnergyDropped, rep.outputEnergyDropped, rep.seconds);
        result.layers.push_back(rep);
        if (params.checkpoint && params.checkpoint->due())
            saveCheckpoint(l + 1);
        reportProgress(progress, f1, tag + ": done");
    }
    HeadWeights head = loadHeadWeights(model);
    engine->rotateInput(head.lmHead.w, prev);
    storeHeadWeights(model, head);
    c.slicing.embeddingWidth = widths.embedding;
    c.slicing.midWidths = widths.mid;
    c.slicing.outputWidths = widths.output;
    if (parallel)
        c.slicing.midWidths = widths.output;
    result.paramsAfter = model.parameterCount();
    result.seconds = steadySeconds() - t0;
    return result;
}

namespace {

class SliceGptMethod final : public CompressionMethod {
public:
    SliceGptMethod() {
        m_info.name = "slicegpt";
        m_info.title = "SliceGPT (PCA rotation + slicing)";
        m_info.summary = "rotates the residual stream into its PCA basis and deletes the weakest directions "
                         "(Ashkboos et al., ICLR 2024)";
        m_info.needsCalibration = true;
        m_info.ratioMeaning = "fraction of the hidden width removed (rows and columns of every block matrix)";
        m_info.exportKind = ExportKind::Sliced;
        m_info.calibrationPasses = 2.2; // rotated and sliced block passes, Gram matrices, the fused model's setup
        const SliceGptParams d;
        m_info.params.push_back(declareParam("slicegpt.slice_head", "Slice the head", ParamType::Bool, d.sliceHead,
                                           "also slice the last block's output and the LM head's input"));
        m_info.params.push_back(declareParam("slicegpt.random_orientation", "Random orientation", ParamType::Bool,
                                           d.randomOrientation,
                                           "rotate each kept subspace by a random orthogonal matrix (paper's option)"));
        ParamSpec round = declareParam("slicegpt.round_to", "Round widths to", ParamType::Integer, d.roundTo,
                                     "widths are rounded down to a multiple of it; 8 suits GPU kernels");
        round.min = 1;
        round.max = 4096;
        m_info.params.push_back(round);
        ParamSpec damping = declareParam("slicegpt.damping", "Damping", ParamType::Real, d.damping,
                                       "the ridge added to the covariance, as a fraction of its mean diagonal; 0.01 "
                                       "is usual");
        damping.max = 1;
        damping.unit = "fraction";
        m_info.params.push_back(damping);
        ParamSpec precision = declareParam("slicegpt.precision", "GPU precision", ParamType::Choice, std::string("bf16"),
                                         "of the block passes on a GPU (the CPU computes in fp32)");
        precision.choices = {"bf16", "fp16", "fp32"};
        precision.openChoice = true; // also bfloat16, float16, float32
        precision.check = [](const ParamValue &v) { parsePrecision(std::get<std::string>(v)); };
        m_info.params.push_back(precision);
        ParamSpec layers = declareParam("layer_sparsity", "Per-block fractions", ParamType::LayerRatios, LayerRatios{},
                                      "fractions that replace the job's for some blocks: one per block [..] or "
                                      "{\"0-3\": 0.3}");
        layers.unit = "fraction";
        m_info.params.push_back(layers);
    }
    const MethodInfo &info() const override { return m_info; }
    void checkRun(const Model &model, double sparsity, const MethodParams &params) const override {
        const std::string why = slicingUnsupportedReason(model);
        if (!why.empty())
            throw LatheError(model.sourcePath + ": " + why, "SliceGPT supports Llama-family, OPT, GPT-2 and Phi-2 models");
        sliceGptWidths(model.config.hiddenSize, model.config.numLayers, sliceParams(params, sparsity, model));
    }
    std::vector<std::string> preview(const Model &model, double sparsity, const MethodParams &params) const override {
        const SliceGptWidths w =
            sliceGptWidths(model.config.hiddenSize, model.config.numLayers, sliceParams(params, sparsity, model));
        char line[96];
        std::snprintf(line, sizeof line, "%g: hidden width %lld -> %lld", sparsity,
                      (long long)model.config.hiddenSize, (long long)w.embedding);
        return {line};
    }
    bool runsOnDevice(ComputeBackend &device) const override {
        return deviceService<SliceGptEngineService>(device) != nullptr;
    }
    MethodOutcome run(Model &model, const MethodParams &params, const MethodContext &context,
                      const ProgressCallback &progress) const override {
        SliceGptParams sp = sliceParams(params, context.sparsity, model);
        sp.solver = context.device;
        sp.gpu = context.device && runsOnDevice(*context.device);
        sp.checkpoint = context.checkpoint;
        const SliceGptResult r = sliceGpt(model, *context.calibration, sp, progress);
        MethodOutcome out;
        for (const SliceGptLayerReport &l : r.layers)
            out.layers.push_back({{"layer", l.layer}, {"mid_width", l.midWidth}, {"output_width", l.outputWidth},
                                  {"mid_energy_dropped", l.midEnergyDropped},
                                  {"output_energy_dropped", l.outputEnergyDropped}, {"seconds", l.seconds}});
        out.params = out.storedParams = r.paramsAfter;
        return out;
    }

private:
    static SliceGptParams sliceParams(const MethodParams &params, double sparsity, const Model &model) {
        SliceGptParams p;
        p.sparsity = sparsity;
        p.roundTo = params.get<int64_t>("slicegpt.round_to");
        p.sliceHead = params.get<bool>("slicegpt.slice_head");
        p.randomOrientation = params.get<bool>("slicegpt.random_orientation");
        p.damping = params.get<double>("slicegpt.damping");
        p.precision = parsePrecision(params.get<std::string>("slicegpt.precision"));
        const LayerRatios &ratios = params.get<LayerRatios>("layer_sparsity");
        if (!ratios.empty()) {
            const int layers = int(model.config.numLayers);
            p.layerSparsity.assign(size_t(layers), sparsity);
            for (const auto &[l, r] : ratios.resolve(layers))
                p.layerSparsity[size_t(l)] = r;
        }
        return p;
    }
    MethodInfo m_info;
};

} // namespace

const CompressionMethod &sliceGptMethod() {
    static const SliceGptMethod method;
    return method;
}

} // namespace lathe
