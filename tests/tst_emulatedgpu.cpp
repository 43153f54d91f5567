// The GPU backend (gpu/: dequantization, the forward pass, SliceGPT, the trainer: their kernels, cuBLAS and cuSOLVER
// calls and host code) run on the CPU: its .cu sources compiled as C++ against gpu/cudaruntimeemulation.h (the CUDA
// runtime, cuBLAS and cuSOLVER on host memory, through gpu/emulation/'s stand-ins for the toolkit's headers) and
// gpu/cudaemulation.h (kernels as fibers), then every check of `lathe-cli check-gpu`, unchanged: the engine's
// (gpu/gpuselfcheck.h), every training op against core/train/ops.h and whole steps of every family and method
// against CausalLm (gpu/trainopscheck.h), at check-gpu's tolerances. So the project's CI, which has no GPU, runs the
// GPU backend's code; what a GPU adds is left to check-gpu there: cuBLAS's and cuSOLVER's own arithmetic, timing,
// memory limits and races between blocks.

#include <QtTest>

#include "cudabackend.h"
#include "cudaruntimeemulation.h"
#include "gpuselfcheck.h"
#include "trainopscheck.h"

#include "base/error.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "clirun.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "model/syntheticmodel.h"
#include "numeric/backend.h"
#include "testsupport.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"
#include "train/opsmemory.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace lathe;

namespace {

nlohmann::json readJson(const std::filesystem::path &path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

// Writes `spec`, its output folder set to root/name, to root/name.json and runs `lathe-cli command` on it: the run's
// results.json, or null when it failed (its message printed).
nlohmann::json runJob(const std::filesystem::path &root, const QString &command, const std::string &name,
                      nlohmann::json spec) {
    spec["output"] = {{"dir", (root / name).string()}};
    const std::filesystem::path path = root / (name + ".json");
    test::writeText(path.string(), spec.dump(2));
    const test::CliRun r = test::runCli({command, QString::fromStdString(path.string())});
    if (r.exitCode != 0) {
        qWarning("lathe-cli %s: %s", qPrintable(command), r.err.c_str());
        return {};
    }
    return readJson(root / name / "results.json");
}

// `what`'s value from lathe-cli on the emulated device (`device`) within `relative` of the CPU's.
void requireClose(const char *what, double device, double cpu, double relative) {
    const QByteArray text = QByteArray(what) + ": device " + QByteArray::number(device, 'g', 10) + ", CPU " +
                            QByteArray::number(cpu, 'g', 10);
    qInfo("%s", text.constData());
    QVERIFY2(std::isfinite(device) && std::abs(device - cpu) <= relative * std::abs(cpu), text.constData());
}

void requireAllPassed(const std::vector<gpu::GpuCheck> &checks, size_t atLeast) {
    int failed = 0;
    for (const gpu::GpuCheck &c : checks) {
        qInfo("%s %-44s error %.3g (tolerance %.3g) %s", c.passed ? "pass" : "FAIL", c.name.c_str(), c.error,
              c.tolerance, c.detail.c_str());
        failed += c.passed ? 0 : 1;
    }
    QVERIFY2(checks.size() >= atLeast, qPrintable(QString("%1 checks").arg(checks.size())));
    QCOMPARE(failed, 0);
}

} // namespace

class TestEmulatedGpu : public QObject {
    Q_OBJECT

    // gpu/cudabackend.cu's backend of the emulated device, as a program reaches it (the platform registered with
    // core, as the plugin registers it).
    std::unique_ptr<ComputeBackend> m_device;

    // A GPU trainer for `lm` on the emulated device, made as a run makes it (through the device's service).
    std::unique_ptr<train::DeviceTrainer> trainerFor(const train::CausalLm<float> &lm, ComputePrecision precision) {
        return deviceService<train::DeviceTrainingService>(*m_device)->create(
            lm, train::AdamW<float>(train::AdamWOptions{}), precision);
    }

private slots:
    void initTestCase() {
        gpu::registerCudaBackend();
        m_device = createBackend(DevicePreference::Cuda);
        QCOMPARE(QString::fromStdString(m_device->name()), QString("cuda"));
    }

    // The engine's checks: the device registry and handles, dequantization of every storage format, the forward
    // pass of five families in fp32 (and sliced), SliceGPT on the device in fp32 and bf16 (signals on the device and
    // in pinned host memory), the demo model's perplexity in fp32, bf16 and fp16 (one 512-token window: its softmax
    // rows are most of the emulation's time), streamed blocks, a bad token id refused, cuSOLVER's eigensolver and SVD.
    void engine() { requireAllPassed(gpu::runGpuEngineChecks(*m_device, test::sourceDir(), 1), 26); }

    // Every training op of gpu/trainops.h, forward and backward, against its CPU reference.
    void ops() { requireAllPassed(gpu::runTrainOpChecks(), 28); }

    // The forward pass's device memory (deviceForwardMemory: what the compression preflight promises, less its
    // allowance) against the peak of what the pass allocates on the emulated device, from its creation (the weights,
    // each matrix through its fp32 staging copy) through a pass: equal.
    // Untied and tied heads, q/k/v biases, learned positions, the parallel block, a sliced model (its shortcut
    // matrices), and the demo model at 256 tokens (its score blocks are most of the pass); fp32, bf16 and fp16; one
    // window (an evaluation's) and two sequences; and each with streamed blocks, against deviceBlockWeights.
    void forwardMemoryFormula() {
        // The device memory a pass holds once created (its weights), and with `runPass` the peak of what it takes
        // from its creation through one pass.
        struct PassMemory {
            uint64_t created = 0, peak = 0;
        };
        const auto measure = [&](const Model &model, ComputePrecision precision, int64_t batch, int64_t seq,
                                 bool resident, bool runPass) {
            const uint64_t before = emu::deviceBytesInUse();
            emu::resetDevicePeak();
            PassMemory m;
            {
                DeviceForwardOptions options;
                options.precision = precision;
                options.allowResident = resident;
                const std::unique_ptr<DeviceForward> pass = createDeviceForward(*m_device, model, options);
                m.created = emu::deviceBytesInUse() - before;
                int64_t count = 0;
                if (runPass &&
                    !std::isfinite(
                        pass->sumNextTokenNll(TokenBatch::random(model.config.vocabSize, batch, seq, 3), &count)))
                    throw LatheError("the pass's loss is not finite");
            }
            if (emu::deviceBytesInUse() != before)
                throw LatheError("the pass did not free all it took");
            m.peak = emu::devicePeakBytes() - before;
            return m;
        };
        const auto check = [&](const std::string &name, const Model &model, ComputePrecision precision, int64_t batch,
                               int64_t seq) {
            const PassMemory resident = measure(model, precision, batch, seq, true, true);
            const uint64_t peak = resident.peak;
            const uint64_t formula = deviceForwardMemory(model, batch * seq, seq, precision).total();
            const QByteArray what = QByteArray::fromStdString(name) + " " + precisionName(precision) + " " +
                                    QByteArray::number(qlonglong(batch)) + " x " + QByteArray::number(qlonglong(seq)) +
                                    ": peak " + QByteArray::number(qulonglong(peak)) + " bytes, formula " +
                                    QByteArray::number(qulonglong(formula));
            qInfo("%s", what.constData());
            // Exactly: the formula follows the pass's allocations, so a change to them must change it too.
            QVERIFY2(peak == formula, what.constData());
            // Streamed blocks: the pass holds none once created, so it holds less by exactly every block's
            // weights as uploaded (deviceBlockWeights, by which the pass chooses between resident and streamed
            // blocks, and SliceGPT's engine estimates its work).
            const PassMemory streamed = measure(model, precision, batch, seq, false, false);
            const DeviceBlockWeights blocks = deviceBlockWeights(model, precision);
            const QByteArray why = what + "; once created: resident " +
                                   QByteArray::number(qulonglong(resident.created)) + ", streamed " +
                                   QByteArray::number(qulonglong(streamed.created)) + ", blocks " +
                                   QByteArray::number(qulonglong(blocks.total));
            QVERIFY2(blocks.largest > 0 && blocks.largest * uint64_t(model.config.numLayers) >= blocks.total,
                     why.constData());
            QVERIFY2(resident.created - streamed.created == blocks.total, why.constData());
        };
        const std::string fixtures = test::sourceDir() + "/tests/fixtures/";
        std::vector<std::pair<std::string, std::unique_ptr<Model>>> models;
        for (const char *family : {"tf-llama", "tf-qwen2", "tf-gpt2", "tf-opt", "tf-phi"})
            models.emplace_back(family, openModel(fixtures + family));
        std::unique_ptr<Model> sliced = openModel(fixtures + "tf-llama");
        gpu::sliceForChecks(*sliced);
        models.emplace_back("tf-llama sliced", std::move(sliced));
        for (const auto &[name, model] : models)
            for (const ComputePrecision precision :
                 {ComputePrecision::Fp32, ComputePrecision::Bf16, ComputePrecision::Fp16}) {
                check(name, *model, precision, 1, 24);
                check(name, *model, precision, 2, 24);
            }
        // Two tokens: the largest matrix's fp32 staging copy outweighs the pass's buffers.
        check("tf-llama", *models.front().second, ComputePrecision::Bf16, 1, 2);
        const std::unique_ptr<Model> demo = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        for (const ComputePrecision precision : {ComputePrecision::Fp32, ComputePrecision::Bf16})
            check("stories260K", *demo, precision, 1, 256);
    }

    // bench train --profile's table: every op timed on the device once per call, outermost only, and the bf16
    // rounding of the products' operands timed on its own inside them (nested: counted in their time too). Present
    // with bf16 products, absent with fp32 (no rounding); profiling off, nothing is timed.
    void profile() {
        const std::unique_ptr<Model> model = openModel(test::sourceDir() + "/tests/fixtures/tf-llama");
        const train::CausalLm<float> lm(*model);
        const TokenBatch batch = TokenBatch::random(model->config.vocabSize, 2, 24, 11);
        for (const ComputePrecision precision : {ComputePrecision::Bf16, ComputePrecision::Fp32}) {
            auto trainer = trainerFor(lm, precision);
            trainer->forwardBackward(batch);
            QVERIFY(trainer->opTimes().empty());
            trainer->profileOps(true);
            trainer->forwardBackward(batch);
            trainer->profileOps(false);
            const std::vector<train::OpTime> times = trainer->opTimes();
            const auto find = [&](const std::string &op, bool nested) -> const train::OpTime * {
                for (const train::OpTime &t : times)
                    if (t.op == op && t.nested == nested)
                        return &t;
                return nullptr;
            };
            const int64_t linears = 7 * model->config.numLayers; // q, k, v, o, gate, up, down per block
            const train::OpTime *forward = find("linearForward", false), *backward = find("linearBackward", false);
            QVERIFY(forward && backward);
            QCOMPARE(forward->calls, linears);
            QCOMPARE(backward->calls, linears);
            QVERIFY(!find("linearForward", true) && !find("gemm", false)); // inner ops are not timed again
            const train::OpTime *rounding = find("bf16 rounding", true);
            if (precision == ComputePrecision::Fp32) {
                QVERIFY(!rounding);
                continue;
            }
            // At least the two operands of each forward product and three of each backward's.
            QVERIFY(rounding && rounding->calls >= 5 * linears);
            QVERIFY(rounding->seconds >= 0);
        }
    }

    // The GPU memory the preflight promises (train::opsTrainerDeviceBytes, less its 512 MiB allowance for the CUDA
    // context and cuBLAS's workspaces) against the peak of what the trainer and its ops really allocate on the device
    // over a step (every cudaMalloc, the ops' scratch included): never less, and at most a twentieth more plus 1 MiB
    // (the formula's scratch is sized for the worst op). Decoders (tied and untied heads, the fused q/k/v product,
    // the parallel block) and BERT at 3 x 40 tokens, the tiny synthetic Llama at 2 x 160 (its score blocks, 2 x 4 x
    // 160^2 floats, are most of its step's memory); fp32 and bf16 products, score blocks and the fused attention;
    // recomputing blocks in a decoder and in BERT.
    void memoryFormula() {
        const auto check = [&](const std::string &name, ComputePrecision precision, bool fused, bool recompute) {
            const bool tiny = name == "tiny";
            const std::unique_ptr<Model> model = tiny ? makeSyntheticModel(*syntheticShape("tiny"))
                                                      : openModel(test::sourceDir() + "/tests/fixtures/" + name);
            const ModelConfig &c = model->config;
            train::CausalLm<float> lm(*model);
            lm.setRecompute(recompute);
            train::MlmMasking masking; // BERT's (unused by a decoder)
            masking.maskId = 3;
            lm.setMasking(masking);
            const int64_t B = tiny ? 2 : 3, S = std::min<int64_t>(tiny ? 160 : 40, c.maxPositions);
            const train::AttentionStore store =
                fused ? train::AttentionStore::LogSumExp : train::AttentionStore::Probabilities;
            const gpu::ScopedEnvironment env("LATHE_GPU_TRAIN_ATTENTION", fused ? "fused" : "blocks");
            const uint64_t before = emu::deviceBytesInUse();
            emu::resetDevicePeak();
            uint64_t formula = 0;
            {
                auto trainer = trainerFor(lm, precision);
                trainer->zeroGradients();
                trainer->forwardBackward(TokenBatch::random(c.vocabSize, B, S, 5), 1.0f, 7);
                trainer->step(1e-3, 1.0);
                const train::OpsTrainerMemory m =
                    train::opsTrainerMemory(c, lm.parameters().count(false), lm.parameters().count(true), B, S,
                                            precision, recompute, store, trainer->linearKindBytes());
                QCOMPARE(m.buffers + m.linearKinds, trainer->deviceBytes());
                formula = m.total() - m.allowance;
            }
            const uint64_t peak = emu::devicePeakBytes() - before;
            const QByteArray what = QByteArray::fromStdString(name) + " " + precisionName(precision) +
                                    (fused ? " fused" : "") + (recompute ? " recompute" : "") + ": peak " +
                                    QByteArray::number(qulonglong(peak)) + " bytes, formula " +
                                    QByteArray::number(qulonglong(formula));
            qInfo("%s", what.constData());
            QCOMPARE(emu::deviceBytesInUse(), before); // the trainer freed all it took
            QVERIFY2(peak <= formula, what.constData());
            QVERIFY2(formula <= peak + peak / 20 + (uint64_t(1) << 20), what.constData());
        };
        for (const char *name : {"tf-llama", "tf-gpt2", "tf-phi", "tf-bert-mlm", "tiny"}) {
            const bool recomputes = std::string(name) == "tf-llama" || std::string(name) == "tf-bert-mlm";
            for (const bool recompute : {false, true})
                if (!recompute || recomputes) {
                    check(name, ComputePrecision::Fp32, false, recompute);
                    check(name, ComputePrecision::Bf16, false, recompute);
                    check(name, ComputePrecision::Bf16, true, recompute);
                }
        }
    }

    // A device too small for the run: a LatheError that says so, with a hint, where the memory runs out (creating
    // the trainer, or its first step's activations); everything taken is given back, and the device works on.
    void outOfMemory() {
        const std::unique_ptr<Model> model = openModel(test::sourceDir() + "/tests/fixtures/tf-llama");
        const train::CausalLm<float> lm(*model);
        const TokenBatch batch = TokenBatch::random(model->config.vocabSize, 3, 40, 5);
        const uint64_t before = emu::deviceBytesInUse();
        // 100 KB: the parameters do not fit; 600 KB: they do, the step's activations do not (it needs 1.3 MB).
        for (const uint64_t room : {uint64_t(100) << 10, uint64_t(600) << 10}) {
            bool refused = false;
            try {
                const emu::ScopedDeviceLimit small(room);
                auto trainer = trainerFor(lm, ComputePrecision::Bf16);
                trainer->forwardBackward(batch);
            } catch (const LatheError &e) {
                refused = true;
                QVERIFY2(std::string(e.what()).find("out of GPU memory: ") == 0, e.what());
                QVERIFY2(e.hint().find("data.batch") != std::string::npos, e.hint().c_str());
            }
            QVERIFY(refused);
            QCOMPARE(emu::deviceBytesInUse(), before);
        }
        QVERIFY(std::isfinite(trainerFor(lm, ComputePrecision::Bf16)->forwardBackward(batch)));
    }

    // The programs' GPU paths through the plugin, as on a GPU machine: lathe-cli loads the emulated backend built as
    // a plugin (liblathe_gpu_emulated.so: gpu/gpuplugin.cpp on the same objects) through $LATHE_GPU_PLUGIN, lists
    // its device, and runs an evaluation, a training job and a SliceGPT job on it (fp32 products throughout) beside
    // the same work on the CPU: perplexities and evaluation losses within 1e-5 (the emulation's products accumulate
    // in double, the CPU's in fp32). The plugin's exports, its logger and the device plumbing of eval, train and
    // compress, which the in-process checks above do not reach.
    void programsThroughThePlugin() {
        namespace fs = std::filesystem;
        QVERIFY2(std::getenv("LATHE_CLI"), "LATHE_CLI must point to lathe-cli (set by ctest)");
        const gpu::ScopedEnvironment plugin("LATHE_GPU_PLUGIN", LATHE_EMULATED_PLUGIN);
        const test::CliRun devices = test::runCli({"devices"});
        QVERIFY2(devices.exitCode == 0, devices.err.c_str());
        QVERIFY2(devices.out.find("gpu      cuda:0 CUDA emulation") != std::string::npos, devices.out.c_str());
        QVERIFY2(devices.out.find("liblathe_gpu_emulated.so") != std::string::npos, devices.out.c_str());

        const std::string demo = test::sourceDir() + "/resources/demo/stories260K.bin";
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        const auto perplexity = [&](const QString &device) {
            const test::CliRun r =
                test::runCli({"eval", "--model", QString::fromStdString(demo), "--text", QString::fromStdString(text),
                              "--seq-len", "64", "--max-tokens", "128", "--device", device, "--precision", "fp32",
                              "--json"});
            if (r.exitCode != 0)
                qWarning("%s", r.err.c_str());
            return r.exitCode == 0 ? nlohmann::json::parse(r.out) : nlohmann::json{{"device", r.err}};
        };
        const nlohmann::json gpuEval = perplexity("cuda"), cpuEval = perplexity("cpu");
        QCOMPARE(QString::fromStdString(gpuEval.value("device", "")), QString("cuda"));
        requireClose("eval perplexity", gpuEval.value("perplexity", NAN), cpuEval.value("perplexity", NAN), 1e-5);

        // Two steps of 2 x 16 tokens, evaluations before them and after each, the model exported.
        const fs::path root = test::tempDir("emulated-plugin");
        const nlohmann::json train = {
            {"model", demo},
            {"data",
             {{"train", text}, {"holdout", 0.1}, {"seq_len", 16}, {"batch", 2}, {"eval_windows", 2}, {"seed", 1}}},
            {"optimizer", {{"lr", 1e-3}, {"warmup", 1}, {"clip", 1.0}}},
            {"steps", 2},
            {"eval_every", 1},
            {"precision", "fp32"}};
        const auto runTrain = [&](const std::string &device) {
            nlohmann::json spec = train;
            spec["device"] = device;
            return runJob(root, "train", "train-" + device, spec);
        };
        const nlohmann::json gpuTrain = runTrain("cuda"), cpuTrain = runTrain("cpu");
        QVERIFY2(gpuTrain.value("device", "").find("CUDA emulation") != std::string::npos, gpuTrain.dump().c_str());
        QCOMPARE(gpuTrain["evals"].size(), size_t(3)); // before the first step and after each
        QCOMPARE(cpuTrain["evals"].size(), size_t(3));
        for (size_t i = 0; i < 3; ++i)
            requireClose("train eval loss", gpuTrain["evals"][i]["eval_loss"], cpuTrain["evals"][i]["eval_loss"], 1e-5);
        QVERIFY(fs::exists(root / "train-cuda" / "model"));

        // SliceGPT at 25%, its block passes in fp32 on the device, the dense and sliced models evaluated there.
        const auto runSlice = [&](const std::string &device) {
            const nlohmann::json spec = {
                {"model", demo},
                {"method", "slicegpt"},
                {"sparsity", 0.25},
                {"slicegpt", {{"precision", "fp32"}}},
                {"calibration", {{"text", text}, {"samples", 8}, {"seq_len", 32}}},
                {"evaluation", {{"text", text}, {"seq_len", 32}, {"max_tokens", 128}, {"dense", true}}},
                {"device", device}};
            return runJob(root, "compress", "slice-" + device, spec);
        };
        const nlohmann::json gpuSlice = runSlice("cuda"), cpuSlice = runSlice("cpu");
        QVERIFY2(gpuSlice.contains("runs") && cpuSlice.contains("runs"), gpuSlice.dump().c_str());
        requireClose("dense perplexity", gpuSlice["dense"]["perplexity"], cpuSlice["dense"]["perplexity"], 1e-5);
        requireClose("sliced perplexity", gpuSlice["runs"][0]["perplexity"], cpuSlice["runs"][0]["perplexity"], 1e-5);
        std::ifstream log(root / "slice-cuda" / "run.log");
        const std::string logText((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
        QVERIFY2(logText.find("device: CUDA emulation") != std::string::npos, logText.c_str());
    }

    // Whole steps: six families in fp32, bf16 and bf16 with the fused attention, the fused kernels unpadded and
    // under SAT, and the methods' linears; the trainer made as a run makes it (through the device's service).
    void steps() { requireAllPassed(gpu::runTrainStepChecks(*m_device, test::sourceDir() + "/tests/fixtures"), 24); }
};

QTEST_GUILESS_MAIN(TestEmulatedGpu)
#include "tst_emulatedgpu.moc"
