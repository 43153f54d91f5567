// Post-training compression methods: norm fusion (exact), SliceGPT (rotation at 0% is exact, sliced models run
// natively and survive a Hugging Face round trip, widths and bad input), magnitude and Wanda pruning (exact counts,
// N:M validity, target selection, Wanda's scores against an independent dense computation).

#include "analysis/sensitivity.h"
#include "engine/calibration.h"
#include "engine/deviceforward.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "export/exportestimate.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"
#include "export/slicedexport.h"
#include "export/sparsearchive.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "methods/magnitude.h"
#include "methods/registry.h"
#include "methods/normfusion.h"
#include "methods/slicegpt.h"
#include "methods/slicegptengine.h"
#include "methods/wanda.h"
#include "model/layerweights.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "run/compressionrun.h"
#include "run/preflight.h"
#include "clirun.h"
#include "remotecodecheck.h"
#include "testsupport.h"
#include "tokenizers/tokenizer.h"

#include <QtTest/QtTest>

#include <cmath>
#include <map>
#include <random>
#include <set>

using namespace lathe;

namespace {

CalibrationSet randomCalibration(int64_t vocab, int64_t samples, int64_t seq, uint32_t seed) {
    CalibrationParams p;
    p.samples = samples;
    p.seqLen = seq;
    return makeCalibrationSet(TokenBatch::random(vocab, 1, samples * seq, seed).tokens, p);
}

Mat logitsOf(const Model &m, const TokenBatch &b) {
    Transformer t(m);
    return t.forward(b);
}

std::string fixture(const QString &name) { return test::fixturesDir() + "/tf-" + name.toStdString(); }

void decoderRows() {
    QTest::addColumn<QString>("name");
    for (const char *n : {"llama", "qwen2", "opt", "gpt2", "phi"})
        QTest::newRow(n) << QString(n);
}

CompressionSpec demoSpec(const std::string &method, const std::string &text, const std::string &tag) {
    CompressionSpec s;
    s.model = test::sourceDir() + "/resources/demo/stories260K.bin";
    s.setMethod(method);
    s.sparsities = {method == "slicegpt" ? 0.25 : 0.5};
    s.calibrationText = text;
    s.calibrationSamples = 8;
    s.calibrationSeqLen = 128;
    s.evalText = text;
    s.evalSeqLen = 128;
    s.evalMaxTokens = 2048;
    s.outputDir = test::tempDir("run-" + tag) + "/out";
    return s;
}

template <typename F> QString errorOf(F &&f) {
    try {
        f();
    } catch (const LatheError &e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

} // namespace

class TestMethods : public QObject {
    Q_OBJECT

private slots:
    void fusedLogitsEqual_data() { decoderRows(); }

    // LayerNorm -> RMSNorm fusion and head untying leave the function unchanged (METHODS.md, SliceGPT step 2).
    void fusedLogitsEqual() {
        QFETCH(QString, name);
        auto model = openModel(fixture(name));
        const TokenBatch b = TokenBatch::random(model->config.vocabSize, 2, 12, 1);
        const Mat before = logitsOf(*model, b);
        fuseNorms(*model);
        QVERIFY(model->config.slicing.active());
        for (const TensorInfo &t : model->tensors())
            QVERIFY2(std::string(roleGroup(t.role)) != "norm", t.name.c_str());
        QVERIFY(model->find(TensorRole::LmHead) != nullptr);
        const double err = relativeMaxError(logitsOf(*model, b), before);
        qInfo("%s: fused vs original logits, relative max error %.3g", qPrintable(name), err);
        QVERIFY(err <= 1e-5);
        // A second fusion is refused.
        QVERIFY(errorOf([&] { fuseNorms(*model); }).contains("already"));
    }

    void sliceAtZeroIsARotation_data() { decoderRows(); }

    // With nothing sliced SliceGPT only changes the basis of the residual stream: same logits.
    void sliceAtZeroIsARotation() {
        QFETCH(QString, name);
        auto model = openModel(fixture(name));
        const TokenBatch b = TokenBatch::random(model->config.vocabSize, 2, 12, 2);
        const Mat before = logitsOf(*model, b);
        SliceGptParams p;
        p.sparsity = 0.0;
        p.roundTo = 1;
        const CalibrationSet cal = randomCalibration(model->config.vocabSize, 6, 16, 3);
        const SliceGptResult r = sliceGpt(*model, cal, p);
        QCOMPARE(int64_t(r.layers.size()), model->config.numLayers);
        QVERIFY(model->find(TensorRole::AttnShortcut, 0) != nullptr);
        const double err = relativeMaxError(logitsOf(*model, b), before);
        qInfo("%s: rotated vs original logits, relative max error %.3g", qPrintable(name), err);
        QVERIFY(err <= 1e-4);
    }

    void slicedModelRoundTrip_data() { decoderRows(); }

    // A sliced model has the planned widths, runs natively, and reads back from a Hugging Face folder unchanged.
    void slicedModelRoundTrip() {
        QFETCH(QString, name);
        auto model = openModel(fixture(name));
        const int64_t D = model->config.hiddenSize;
        const TokenBatch b = TokenBatch::random(model->config.vocabSize, 1, 10, 4);
        SliceGptParams p;
        p.sparsity = 0.25;
        const CalibrationSet cal = randomCalibration(model->config.vocabSize, 6, 16, 5);
        const int64_t paramsBefore = model->parameterCount();
        const SliceGptResult r = sliceGpt(*model, cal, p);
        const int64_t d = (D * 3 / 4) / 8 * 8;
        QCOMPARE(model->config.slicing.embeddingWidth, d);
        QCOMPARE(model->find(TensorRole::TokenEmbedding)->shape[1], d);
        QCOMPARE(model->config.slicing.outputWidths.back(), D); // the head keeps the full width by default
        QCOMPARE(r.paramsBefore, paramsBefore);
        QCOMPARE(r.paramsAfter, model->parameterCount());
        for (const SliceGptLayerReport &l : r.layers)
            QVERIFY(l.outputEnergyDropped >= 0 && l.outputEnergyDropped < 1);
        const Mat sliced = logitsOf(*model, b);
        QVERIFY(sliced.allFinite());
        const std::string dir = test::tempDir("sliced") + "/out";
        writeHfFolder(*model, dir);
        auto back = openModel(dir);
        QVERIFY(back->config.slicing.active());
        QCOMPARE(back->config.slicing.midWidths, model->config.slicing.midWidths);
        QVERIFY(relativeMaxError(logitsOf(*back, b), sliced) <= 1e-6);
    }

    // Widths: rounded down to a multiple of 8; a width rounding to zero, a fraction outside [0, 1) and a wrong number
    // of per-layer fractions are refused with the reason.
    void sliceWidthsAndBadInput() {
        SliceGptParams p;
        p.sparsity = 0.2;
        SliceGptWidths w = sliceGptWidths(4096, 2, p);
        QCOMPARE(w.embedding, int64_t(3272)); // 0.8 * 4096 = 3276.8 -> 3276 -> 3272
        QCOMPARE(w.output.back(), int64_t(4096));
        p.sliceHead = true;
        QCOMPARE(sliceGptWidths(4096, 2, p).output.back(), int64_t(3272));
        p.sparsity = 1.0;
        QVERIFY(errorOf([&] { sliceGptWidths(64, 2, p); }).contains("outside [0, 1)"));
        p.sparsity = -0.1;
        QVERIFY(errorOf([&] { sliceGptWidths(64, 2, p); }).contains("outside [0, 1)"));
        p.sparsity = 0.9;
        QVERIFY(errorOf([&] { sliceGptWidths(64, 2, p); }).contains("leaves no width"));
        p.sparsity = 0.1;
        p.layerSparsity = {0.1};
        QVERIFY(errorOf([&] { sliceGptWidths(64, 2, p); }).contains("per-layer"));
        p.layerSparsity = {0.1, 0.5};
        w = sliceGptWidths(64, 2, p);
        QCOMPARE(w.mid[1], int64_t(32));
    }

    // Magnitude: exact counts per matrix, the smallest magnitudes go, N:M groups valid, regex and per-layer ratios.
    void magnitudePruning() {
        auto model = openModel(fixture("llama"));
        auto original = openModel(fixture("llama"));
        PruningSelection s;
        s.pattern = parsePattern("unstructured", 0.5);
        s.targets = "mlp";
        s.layerRatio = parseLayerRatios(nlohmann::json::parse(R"({"1": 0.25})"), 2);
        const PruningResult r = magnitudePrune(*model, s);
        QCOMPARE(int(r.matrices.size()), 2 * 3); // gate, up, down in two blocks
        for (const PrunedMatrix &m : r.matrices) {
            const double want = m.layer == 1 ? 0.25 : 0.5;
            QCOMPARE(m.pruned, int64_t(std::floor(want * double(m.rows * m.cols))));
        }
        const BlockWeights before = loadBlockWeights(*original, 0), after = loadBlockWeights(*model, 0);
        QVERIFY(after.q.w == before.q.w); // not a target
        // Every pruned weight is no larger in magnitude than every kept one.
        float maxPruned = 0, minKept = INFINITY;
        for (int64_t i = 0; i < after.up.w.size(); ++i) {
            const float v = std::fabs(before.up.w.data()[i]);
            if (after.up.w.data()[i] == 0.0f)
                maxPruned = std::max(maxPruned, v);
            else
                minKept = std::min(minKept, v);
        }
        QVERIFY(maxPruned <= minKept);

        auto nm = openModel(fixture("llama"));
        PruningSelection s24;
        s24.pattern = parsePattern("2:4", 0);
        magnitudePrune(*nm, s24);
        const BlockWeights b = loadBlockWeights(*nm, 1);
        const SparsityStats st = zeroStats(b.down.w.data(), b.down.w.rows(), b.down.w.cols(), 2, 4);
        QVERIFY(st.nmValid);
        QCOMPARE(st.sparsity, 0.5);
    }

    void pruningBadInput() {
        auto model = openModel(fixture("llama"));
        PruningSelection s;
        s.targets = "(";
        QVERIFY(errorOf([&] { magnitudePrune(*model, s); }).contains("not a valid regular expression"));
        s.targets = "no_such_tensor";
        QVERIFY(errorOf([&] { magnitudePrune(*model, s); }).contains("matches none"));
        s.targets = ".*";
        s.pattern = parsePattern("unstructured", 1.0);
        QVERIFY(!errorOf([&] { magnitudePrune(*model, s); }).isEmpty());
        s.pattern = parsePattern("3:7", 0);
        QVERIFY(errorOf([&] { magnitudePrune(*model, s); }).contains("7"));
        QVERIFY(errorOf([&] { parsePattern("2-4", 0); }).contains("unknown sparsity pattern"));
        QVERIFY(errorOf([&] { parseLayerRatios(nlohmann::json::array({0.1}), 2); }).contains("per-layer"));
        s.pattern = parsePattern("unstructured", 0.5);
        s.layerRatio = {{7, 0.5}};
        QVERIFY(errorOf([&] { magnitudePrune(*model, s); }).contains("block 7"));
        // Nothing was touched by the refused runs.
        auto original = openModel(fixture("llama"));
        QVERIFY(loadBlockWeights(*model, 0).up.w == loadBlockWeights(*original, 0).up.w);
    }

    // Wanda on block 0 equals |W| * ||X|| from an independent dense pass (collectInputNorms); each row loses
    // exactly half; later blocks see pruned inputs and report an output error.
    void wandaAgainstDenseNorms() {
        auto model = openModel(fixture("llama"));
        auto reference = openModel(fixture("llama"));
        const CalibrationSet cal = randomCalibration(model->config.vocabSize, 5, 16, 7);
        Transformer dense(*reference);
        const InputNorms norms = collectInputNorms(dense, *reference, cal);
        WandaParams p;
        p.selection.pattern = parsePattern("unstructured", 0.5);
        const PruningResult r = wandaPrune(*model, cal, p);
        QCOMPARE(int(r.layers.size()), 2);
        QVERIFY(std::isfinite(r.layers[1].outputError) && r.layers[1].outputError > 0);
        const BlockWeights before = loadBlockWeights(*reference, 0), after = loadBlockWeights(*model, 0);
        const std::vector<float> &n = norms.norms.at("model.layers.0.mlp.down_proj.weight");
        const Mat &w = before.down.w;
        for (int64_t row = 0; row < w.rows(); ++row) {
            std::vector<std::pair<float, int64_t>> scores;
            for (int64_t c = 0; c < w.cols(); ++c)
                scores.push_back({std::fabs(w(row, c)) * n[size_t(c)], c});
            std::sort(scores.begin(), scores.end());
            int64_t zeros = 0;
            for (int64_t c = 0; c < w.cols(); ++c)
                zeros += after.down.w(row, c) == 0.0f;
            QCOMPARE(zeros, w.cols() / 2);
            // The half with the lowest scores is the half that went (up to float ties at the boundary).
            for (size_t i = 0; i + 1 < scores.size() / 2; ++i)
                QCOMPARE(after.down.w(row, scores[i].second), 0.0f);
            for (size_t i = scores.size() / 2 + 1; i < scores.size(); ++i)
                QVERIFY(after.down.w(row, scores[i].second) != 0.0f);
        }
    }

    void slicedExportLoadsInTransformers_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("ropeScaling"); // JSON patched into the config before slicing, or empty
        for (const char *n : {"llama", "qwen2", "opt", "gpt2", "phi"})
            QTest::newRow(n) << QString(n) << QString();
        QTest::newRow("llama, llama3 rope scaling")
            << QString("llama")
            << QString(R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 64})");
        QTest::newRow("llama, linear rope scaling") << QString("llama") << QString(R"({"type": "linear", "factor": 4.0})");
    }

    // The exported folder carries its modelling code; transformers (pip, CPU) loads it with trust_remote_code and
    // produces Lathe's logits, and its KV cache, padded batches and generate() agree with its own full passes
    // (tests/support/check_sliced_export.py).
    void slicedExportLoadsInTransformers() {
        QFETCH(QString, name);
        QFETCH(QString, ropeScaling);
        const QString python = QString::fromStdString(test::referencePython());
        if (python.isEmpty())
            QSKIP("no Python with transformers (packaging/make-reference-env.sh, or set LATHE_REFERENCE_ENV)");
        auto model = openModel(fixture(name));
        if (!ropeScaling.isEmpty())
            model->config.hf["rope_scaling"] = nlohmann::json::parse(ropeScaling.toStdString());
        SliceGptParams p;
        p.sparsity = 0.25;
        sliceGpt(*model, randomCalibration(model->config.vocabSize, 6, 16, 9), p);
        const TokenBatch b = TokenBatch::random(model->config.vocabSize, 2, 9, 10);
        const Mat logits = logitsOf(*model, b);
        const std::string dir = test::tempDir("sliced-export") + "/model";
        exportSlicedModel(*model, dir);
        QCOMPARE(test::checkRemoteCodeExport(python, dir, logits, b, name), 0);
    }

    // The sensitivity sweep: pruning one block (or one kind of linear) gives the perplexity Wanda itself gives when
    // it prunes only that part (its inputs are dense either way), the OWL outlier ratios are shares, and the
    // command prints the per-block sparsities for a job spec.
    void sensitivitySweepMatchesWanda() {
        const std::string model = test::sourceDir() + "/resources/demo/stories260K.bin";
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        auto m = openModel(model);
        const std::vector<int32_t> ids = loadTokenizer(*m)->encodeForModel(joinDatasetRows(readTextFile(text)));
        SensitivityParams p;
        p.calibrationWindows = 4;
        p.evalWindows = 2;
        p.seqLen = 128;
        const SensitivityResult r = sensitivitySweep(model, ids, p);
        QCOMPARE(int(r.blocks.size()), 5);
        QCOMPARE(int(r.kinds.size()), 7);
        QCOMPARE(r.evalTokens, int64_t(2 * 127));
        PerplexityParams pp;
        pp.seqLen = 128;
        pp.maxTokens = 256;
        CalibrationParams cp;
        cp.samples = 4;
        cp.seqLen = 128;
        const CalibrationSet calibration = makeCalibrationSet(ids, cp);
        const auto wandaOnly = [&](const std::string &targets) {
            auto pruned = openModel(model);
            WandaParams wp;
            wp.selection.pattern.ratio = 0.5;
            wp.selection.targets = targets;
            wandaPrune(*pruned, calibration, wp);
            Transformer t(*pruned);
            return evaluatePerplexity(t, ids, pp).perplexity;
        };
        {
            Transformer t(*m);
            QCOMPARE(r.densePerplexity, evaluatePerplexity(t, ids, pp).perplexity);
        }
        QVERIFY(qFuzzyCompare(r.blocks[2].perplexity, wandaOnly("layers\\.2\\.")));
        const auto down = std::find_if(r.kinds.begin(), r.kinds.end(), [](auto &u) { return u.kind == TensorRole::MlpDown; });
        QVERIFY(down != r.kinds.end());
        // A kind spans every block: its scores come from the dense pass, where Wanda proper recomputes each block's
        // inputs after pruning the blocks before it; the two stay close.
        const double sequential = wandaOnly("down_proj");
        qInfo("down_proj in every block: sweep %.4f, sequential Wanda %.4f (dense %.4f)", down->perplexity, sequential,
              r.densePerplexity);
        QVERIFY(std::abs(down->perplexity / sequential - 1) < 0.05);
        for (const SensitivityUnit &u : r.blocks) {
            QVERIFY(u.perplexity > r.densePerplexity * 0.95 && std::isfinite(u.perplexity));
            QVERIFY(u.outlierRatio > 0 && u.outlierRatio < 0.1);
            QCOMPARE(u.parameters, r.blocks[0].parameters);
        }
        const test::CliRun cli = test::runCli({"sensitivity", "--model", QString::fromStdString(model), "--text",
                                               QString::fromStdString(text), "--calibration-windows", "4",
                                               "--eval-windows", "2", "--seq-len", "128", "--target", "0.6", "--json"});
        QCOMPARE(cli.exitCode, 0);
        const nlohmann::json j = nlohmann::json::parse(cli.out);
        QCOMPARE(j["dense_perplexity"].get<double>(), r.densePerplexity);
        QCOMPARE(j["blocks"][2]["perplexity"].get<double>(), r.blocks[2].perplexity);
        for (const char *key : {"layer_sparsity_from_sensitivity", "layer_sparsity_from_outliers"}) {
            double sum = 0;
            for (const auto &v : j[key])
                sum += v.get<double>();
            QVERIFY2(std::abs(sum / 5 - 0.6) < 1e-3, key);
            // The array is a job spec's layer_sparsity as it stands.
            QCOMPARE(int(LayerRatios::fromJson(j[key]).resolve(5).size()), 5);
        }
    }

    // The preflight estimate: phases from a timed probe, memory and export size, a refusal for a run that cannot fit
    // (here: calibration signals of a million long windows), and `compress --estimate` creating nothing.
    void preflightEstimate() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("wanda", text, "preflight");
        const Preflight p = preflightCompression(spec);
        QVERIFY(p.probe.forwardSeconds > 0 && p.probe.seqLen == 128);
        QVERIFY(p.calibrationTokens > 1000 && p.evalTokens == p.calibrationTokens);
        const RunEstimate &e = p.estimate;
        QVERIFY(e.seconds > 0);
        QCOMPARE(int(e.phases.size()), 4); // dense evaluation, evaluation, wanda, export
        QVERIFY(e.exportBytes > uint64_t(openModel(spec.model)->parameterCount()) * 4);
        QVERIFY(e.refusal.empty());
        QVERIFY(QString::fromStdString(e.summary()).startsWith("about "));
        QVERIFY(!QFile::exists(QString::fromStdString(spec.outputDir)));
        auto model = openModel(spec.model);
        spec.calibrationSamples = 1'000'000;
        spec.calibrationSeqLen = 512;
        const RunEstimate huge = estimateCompressionRun(spec, *model, p.probe, int64_t(1) << 40, p.evalTokens);
        QVERIFY(huge.hostAvailable == 0 || huge.refusal.find("of memory") != std::string::npos);
        const QString specFile = QString::fromStdString(test::tempDir("preflight-cli") + "/job.json");
        test::writeText(specFile.toStdString(), demoSpec("magnitude", text, "preflight-cli").toJson().dump());
        const test::CliRun r = test::runCli({"compress", specFile, "--estimate"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(QString::fromStdString(r.out).contains("estimate: about"));
        QVERIFY(QString::fromStdString(r.out).contains("dense evaluation"));
    }

    // The job runner end to end on the demo model (stories260K) and TinyStories text: Wanda 50%, evaluation,
    // export with zeros in place, the compact archive, the run folder's files.
    void compressionRunWanda() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("wanda", text, "wanda");
        spec.gguf = "q8_0"; // and a GGUF for llama.cpp beside the folder
        const CompressionRunResult r = runCompression(spec);
        QCOMPARE(QString::fromStdString(r.status), QString("done"));
        QCOMPARE(int(r.runs.size()), 1);
        const CompressionRunRecord &run = r.runs[0];
        qInfo("stories260K Wanda 50%%: PPL %.3f -> %.3f (128-token windows)", r.densePerplexity, run.perplexity);
        QVERIFY(r.densePerplexity > 1 && run.perplexity > r.densePerplexity * 0.9);
        QVERIFY(run.bytesCompact < run.bytesDense);
        for (const char *f : {"spec.json", "run.log", "progress.jsonl", "results.json", "run.h5"})
            QVERIFY2(QFile::exists(QString::fromStdString(spec.outputDir + "/" + f)), f);
        // The run record names its calibration: one window index per sequence.
        const nlohmann::json record = nlohmann::json::parse(readTextFile(spec.outputDir + "/results.json"));
        QCOMPARE(record["calibration"]["sequences"].get<int64_t>(), spec.calibrationSamples);
        QCOMPARE(int64_t(record["calibration"]["windows"].size()), spec.calibrationSamples);
        auto exported = openModel(spec.outputDir + "/model");
        const BlockWeights b = loadBlockWeights(*exported, 2);
        const SparsityStats st = zeroStats(b.up.w.data(), b.up.w.rows(), b.up.w.cols());
        QCOMPARE(st.sparsity, 0.5);
        for (float f : st.rowZeroFraction)
            QCOMPARE(f, 0.5f); // Wanda prunes per output row
        if (sparseArchiveAvailable()) {
            int64_t rows = 0, cols = 0;
            const std::vector<float> dense = readSparseMatrix(spec.outputDir + "/run.h5",
                                                              "model.layers.2.mlp.up_proj.weight", rows, cols);
            QCOMPARE(rows, int64_t(b.up.w.rows()));
            QVERIFY(std::equal(dense.begin(), dense.end(), b.up.w.data()));
        }
        // The GGUF holds the same zeros (Q8_0 quantizes a zero to zero) and names the run.
        QCOMPARE(QString::fromStdString(run.ggufFile), QString::fromStdString(spec.outputDir + "/model.gguf"));
        QCOMPARE(record["runs"][0]["gguf_file"].get<std::string>(), run.ggufFile);
        QVERIFY(run.bytesGguf > 0 && run.bytesGguf < run.bytesDense);
        auto gguf = openModel(run.ggufFile);
        QCOMPARE(gguf->metadata["lathe.method"].get<std::string>(), spec.label());
        const std::vector<float> q = gguf->loadFloat("model.layers.2.mlp.up_proj.weight");
        QCOMPARE(gguf->find("model.layers.2.mlp.up_proj.weight")->dtype, DType::Q8_0);
        for (size_t i = 0; i < q.size(); ++i)
            QCOMPARE(q[i] == 0.0f, b.up.w.data()[i] == 0.0f);
        // The workbench's per-export sizes (issue 19 item 4), from the writers' rules before the run, against the
        // files the run wrote: the folder's tensors, the GGUF and the archive, each within its headers.
        CompressionPlan plan;
        plan.pattern.ratio = 0.5;
        plan.pattern.perRow = true; // Wanda's
        std::map<std::string, uint64_t> estimated;
        const std::unique_ptr<Model> source = openModel(spec.model);
        QVERIFY(!ggufExportBlocker(*source));
        for (const ExportSize &x : estimateExportSizes(*source, plan, true))
            estimated[x.format] = x.bytes;
        const auto near = [](const char *what, uint64_t estimate, uint64_t actual, uint64_t headers) {
            qInfo("%s: estimated %llu bytes, written %llu", what, static_cast<unsigned long long>(estimate),
                  static_cast<unsigned long long>(actual));
            QVERIFY2(estimate <= actual && actual <= estimate + headers, what);
        };
        near("GGUF q8_0", estimated.at("GGUF q8_0"), run.bytesGguf, 64 << 10);
        near("folder f32", estimated.at("HF folder f32"),
             uint64_t(std::filesystem::file_size(spec.outputDir + "/model/model.safetensors")), 16 << 10);
        if (sparseArchiveAvailable())
            near("run.h5", estimated.at("run.h5 archive"),
                 uint64_t(std::filesystem::file_size(spec.outputDir + "/run.h5")), 256 << 10);
        // A sliced model has no GGUF form: refused before anything is created.
        CompressionSpec sliced = demoSpec("slicegpt", text, "sliced-gguf");
        sliced.gguf = "f16";
        QVERIFY(errorOf([&] { checkCompressionSpec(sliced); }).contains("cannot be written as GGUF"));
        QVERIFY(!QFile::exists(QString::fromStdString(sliced.outputDir)));
        sliced.gguf = "q4_0";
        QVERIFY(errorOf([&] { checkCompressionSpec(sliced); }).contains("output.gguf"));
    }

    // A bf16 export: the reported perplexity is the exported checkpoint's (weights rounded to bf16 before the
    // evaluation), so evaluating the folder afterwards gives the same number.
    void compressionRunEvaluatesTheExport() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("magnitude", text, "bf16");
        spec.dtype = "bf16";
        spec.evalDense = false;
        const CompressionRunResult r = runCompression(spec);
        QCOMPARE(QString::fromStdString(r.status), QString("done"));
        auto exported = openModel(spec.outputDir + "/model");
        QCOMPARE(exported->find("model.layers.0.mlp.up_proj.weight")->dtype, DType::BF16);
        auto tok = loadTokenizer(*openModel(spec.model));
        PerplexityParams pp;
        pp.seqLen = spec.evalSeqLen;
        pp.maxTokens = spec.evalMaxTokens;
        Transformer t(*exported);
        const double again = evaluatePerplexity(t, tok->encodeForModel(joinDatasetRows(readTextFile(text))), pp).perplexity;
        qInfo("bf16 export: reported %.9f, evaluated from the folder %.9f", r.runs[0].perplexity, again);
        QVERIFY(std::abs(again - r.runs[0].perplexity) <= 1e-9 * again);
    }

    // 2:4 magnitude: the N:M compact form reads back exactly.
    void compressionRunNm() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("magnitude", text, "nm");
        spec.params.set("pattern", std::string("2:4"));
        const CompressionRunResult r = runCompression(spec);
        QCOMPARE(QString::fromStdString(r.status), QString("done"));
        auto exported = openModel(spec.outputDir + "/model");
        const BlockWeights b = loadBlockWeights(*exported, 1);
        QVERIFY(zeroStats(b.down.w.data(), b.down.w.rows(), b.down.w.cols(), 2, 4).nmValid);
        if (sparseArchiveAvailable()) {
            int64_t rows = 0, cols = 0;
            const std::vector<float> dense = readSparseMatrix(spec.outputDir + "/run.h5",
                                                              "model.layers.1.mlp.down_proj.weight", rows, cols);
            QVERIFY(std::equal(dense.begin(), dense.end(), b.down.w.data()));
        }
    }

    // SliceGPT through the runner: the exported sliced folder opens natively and gives the run's perplexity.
    void compressionRunSliceGpt() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("slicegpt", text, "slice");
        spec.sparsities = {0.0, 0.25};
        const CompressionRunResult r = runCompression(spec);
        QCOMPARE(int(r.runs.size()), 2);
        qInfo("stories260K SliceGPT: dense %.3f, 0%% %.3f, 25%% %.3f", r.densePerplexity, r.runs[0].perplexity,
              r.runs[1].perplexity);
        QVERIFY(std::fabs(r.runs[0].perplexity / r.densePerplexity - 1.0) < 1e-4); // rotation only
        QVERIFY(r.runs[1].perplexity > r.densePerplexity && std::isfinite(r.runs[1].perplexity));
        auto sliced = openModel(r.runs[1].exportDir);
        QVERIFY(sliced->config.slicing.active());
        QCOMPARE(sliced->config.slicing.embeddingWidth, int64_t(48));
    }

    // Cancel mid-run: CancelledError, results.json says so, no model folder is left.
    void compressionCancel() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        CompressionSpec spec = demoSpec("slicegpt", text, "cancel");
        bool threw = false;
        try {
            runCompression(spec, [](const Progress &p) { return p.fraction < 0.4; });
        } catch (const CancelledError &) {
            threw = true;
        }
        QVERIFY(threw);
        QVERIFY(!QFile::exists(QString::fromStdString(spec.outputDir + "/model")));
        const nlohmann::json j = nlohmann::json::parse(readTextFile(spec.outputDir + "/results.json"));
        QCOMPARE(QString::fromStdString(j["status"].get<std::string>()), QString("cancelled"));
    }

    // The registry (issue 16 item 2): the post-training methods with their declarations, then the fine-tuning ones
    // (tst_finetune runs those); `lathe-cli methods --json` lists them all with every parameter; each post-training
    // parameter survives the compression spec's JSON both ways at a value other than its default.
    void methodRegistry() {
        QStringList names;
        for (const CompressionMethod *m : compressionMethods())
            names << QString::fromStdString(m->info().name);
        QCOMPARE(names, QStringList({"wanda", "magnitude", "slicegpt", "losparse", "pst", "sat", "recovery"}));
        QVERIFY(!findMethod("sparsegpt"));
        QCOMPARE(methodNamed("slicegpt").info().exportKind, ExportKind::Sliced);
        QVERIFY(!methodNamed("magnitude").info().needsCalibration && methodNamed("wanda").info().needsCalibration);

        const test::CliRun r = test::runCli({"methods", "--json"}, 20000);
        QCOMPARE(r.exitCode, 0);
        const nlohmann::json listed = nlohmann::json::parse(r.out);
        QCOMPARE(int(listed.size()), 7);
        std::map<std::string, std::set<std::string>> keys;
        for (const nlohmann::json &m : listed) {
            QVERIFY(m.contains("kind") && m.contains("needs_calibration") && m.contains("export"));
            for (const nlohmann::json &p : m["parameters"]) {
                QVERIFY2(p.contains("type") && p.contains("default") && !p["help"].get<std::string>().empty(),
                         p.dump().c_str());
                keys[m["name"]].insert(p["key"]);
            }
        }
        QCOMPARE(keys["wanda"], (std::set<std::string>{"pattern", "targets", "layer_sparsity"}));
        QCOMPARE(keys["magnitude"], keys["wanda"]);
        QCOMPARE(keys["slicegpt"], (std::set<std::string>{"slicegpt.slice_head", "slicegpt.random_orientation",
                                                           "slicegpt.round_to", "slicegpt.damping",
                                                           "slicegpt.precision", "layer_sparsity"}));
        const test::CliRun text = test::runCli({"methods"}, 20000);
        QCOMPARE(text.exitCode, 0);
        QVERIFY(QString::fromStdString(text.out).contains("slicegpt.damping"));

        // Every parameter at a value other than its default, through JSON and back.
        const std::map<std::string, ParamValue> changed = {
            {"pattern", std::string("2:4")},
            {"targets", std::string("mlp")},
            {"layer_sparsity", LayerRatios::fromJson(nlohmann::json{{"0-1", 0.3}, {"3", 0.6}})},
            {"slicegpt.slice_head", true},
            {"slicegpt.random_orientation", true},
            {"slicegpt.round_to", int64_t(16)},
            {"slicegpt.damping", 0.0123456789012345},
            {"slicegpt.precision", std::string("fp16")}};
        for (const CompressionMethod *m : methodsOfKind(MethodKind::PostTraining)) {
            CompressionSpec spec;
            spec.setMethod(m->info().name);
            for (const ParamSpec &p : m->info().params) {
                if (m->info().name != "slicegpt" && p.key == "layer_sparsity")
                    continue; // with 2:4 refused by checkJob, not by the JSON reading: tested below
                spec.params.set(p.key, changed.at(p.key));
                QVERIFY2(!(spec.params.value(p.key) == p.defaultValue), p.key.c_str());
            }
            const CompressionSpec back = CompressionSpec::fromJson(spec.toJson());
            QCOMPARE(QString::fromStdString(back.methodName()), QString::fromStdString(m->info().name));
            QVERIFY2(back.params == spec.params, spec.toJson().dump().c_str());
            QCOMPARE(back.toJson(), spec.toJson());
        }
        // Parameters of another method are ignored (older specs carried all of them); unknown ones are refused.
        const CompressionSpec w = CompressionSpec::fromJson({{"method", "wanda"}, {"slicegpt", {{"damping", 0.5}}}});
        QCOMPARE(QString::fromStdString(w.params.get<std::string>("pattern")), QString("unstructured"));
        QVERIFY(errorOf([] { CompressionSpec::fromJson({{"method", "slicegpt"}, {"slicegpt", {{"dampng", 0.5}}}}); })
                    .contains("unknown key 'slicegpt.dampng'"));
        // An N:M pattern fixes the ratio: no per-block ratios, no sweep.
        CompressionSpec nm = demoSpec("wanda", test::sourceDir() + "/README.md", "nm-check");
        nm.params.set("pattern", std::string("2:4"));
        nm.params.set("layer_sparsity", LayerRatios::fromJson(nlohmann::json{{"0", 0.3}}));
        QVERIFY(errorOf([&] { validateSpec(nm); }).contains("per-block ratios"));
        // SliceGPT takes per-block fractions as ranges too (it took only a full array before): the widths follow.
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        CompressionSpec sg = demoSpec("slicegpt", test::sourceDir() + "/README.md", "sg-ranges");
        sg.params.set("layer_sparsity", LayerRatios::fromJson(nlohmann::json{{"1-2", 0.5}}));
        checkSpecAgainstModel(sg, *model);
        const std::vector<std::string> lines = sg.method->preview(*model, 0.25, sg.params);
        QCOMPARE(int(lines.size()), 1);
        sg.params.set("layer_sparsity", LayerRatios::fromJson(nlohmann::json{{"1-9", 0.5}}));
        QVERIFY(errorOf([&] { checkSpecAgainstModel(sg, *model); }).contains("names block 9"));
        QCOMPARE(QString::fromStdString(nm.label()), QString("wanda 2:4 layer_sparsity={\"0\":0.3}"));
    }

    // One device registry (issue 16 item 4): devices are named auto, cpu, cuda, cuda:N; the CPU offers neither
    // the device forward pass nor SliceGPT's device engine, and asking it for them is a LatheError, not a crash;
    // without a GPU, cuda:N is refused with the reason.
    void deviceChoice() {
        const std::pair<const char *, std::string> good[] = {
            {"auto", "auto"}, {"", "auto"}, {"cpu", "cpu"}, {"cuda", "cuda:0"}, {"gpu", "cuda:0"}, {"cuda:3", "cuda:3"}};
        for (const auto &[text, canonical] : good)
            QCOMPARE(QString::fromStdString(DeviceChoice::parse(text).text()), QString::fromStdString(canonical));
        for (const char *bad : {"tpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda:99999999999", "CPU"})
            QVERIFY2(errorOf([&] { DeviceChoice::parse(bad); }).contains("unknown device"), bad);
        auto cpu = makeCpuBackend();
        QCOMPARE(cpu->device().index, -1);
        QVERIFY(!hasDeviceForward(*cpu));
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        QVERIFY(errorOf([&] { createDeviceForward(*cpu, *model, DeviceForwardOptions{}); }).contains("cannot run on"));
        CalibrationSet none;
        QVERIFY(!errorOf([&] { makeDeviceSliceGptEngine(*cpu, *model, none, SliceGptEngineOptions{}); }).isEmpty());
        if (!gpuUsable()) {
            QVERIFY(gpuDevices().empty());
            QVERIFY(errorOf([] { createBackend(DeviceChoice::parse("cuda:2")); }).contains("no usable CUDA device"));
            QCOMPARE(QString::fromStdString(createBackend(DevicePreference::Auto)->name()), QString("cpu"));
        }
        const test::CliRun r = test::runCli({"devices"}, 20000);
        QCOMPARE(r.exitCode, 0);
        QVERIFY(QString::fromStdString(r.out).contains("backend"));
        const test::CliRun bad = test::runCli({"eval", "--model", "x", "--text", "y", "--device", "cuda:x"}, 20000);
        QCOMPARE(bad.exitCode, 1);
        QVERIFY(QString::fromStdString(bad.err).contains("unknown device"));
    }

    // Bad job specs are refused before any work, with the key or value named.
    void compressionSpecBadInput() {
        QVERIFY(errorOf([] { CompressionSpec::fromJson(nlohmann::json{{"methd", "wanda"}}); }).contains("unknown key"));
        QVERIFY(errorOf([] { CompressionSpec::fromJson(nlohmann::json{{"sparsity", "half"}}); }).contains("must be a number"));
        CompressionSpec s = demoSpec("wanda", test::sourceDir() + "/README.md", "bad");
        s.sparsities = {1.2};
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("outside [0, 1)"));
        s.sparsities = {0.5};
        QVERIFY(errorOf([&] { s.setMethod("sparsegpt"); }).contains("unknown method"));
        QVERIFY(errorOf([&] { CompressionSpec::fromJson({{"method", "sparsegpt"}}); }).contains("unknown method"));
        QCOMPARE(QString::fromStdString(s.methodName()), QString("wanda"));
        s.device = "tpu";
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("unknown device"));
        s.device = "auto";
        s.evalPrecision = "fp8";
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("unknown precision"));
        s.evalPrecision = "fp32";
        if (!gpuUsable()) { // no GPU here: asking for one is refused before any work, with the reason
            for (const char *d : {"cuda", "cuda:1"}) {
                s.device = d;
                QVERIFY(errorOf([&] { validateSpec(s); }).contains("CUDA"));
            }
            s.device = "auto";
        }
        s.device = "cuda:x";
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("unknown device"));
        s.device = "auto";
        s.calibrationText = "/nonexistent.txt";
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("does not exist"));
        s.calibrationText = test::sourceDir() + "/README.md";
        s.outputDir = test::sourceDir() + "/docs"; // exists, not empty
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("not empty"));
        s.outputDir = test::sourceDir(); // holds the model and the texts
        QVERIFY(errorOf([&] { validateSpec(s); }).contains("contains the input"));
        // BERT cannot be sliced; the run stops before any work and says why.
        CompressionSpec bert = demoSpec("slicegpt", test::sourceDir() + "/README.md", "bert");
        bert.model = fixture("bert");
        QVERIFY(errorOf([&] { runCompression(bert); }).contains("post-norm"));
        QVERIFY(!QFile::exists(QString::fromStdString(bert.outputDir + "/model")));
    }
};

QTEST_GUILESS_MAIN(TestMethods)
#include "tst_methods.moc"
