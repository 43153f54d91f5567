// The training engine's causal LM, trainer and commands (core/train/causallm.h, run/trainingrun.h, issue 17):
// - every parameter's gradient against finite differences in fp64 on the Llama-family fixtures (untied head with
//   GQA, tied head with q/k/v biases, stories260K), its fp32 loss against the evaluation protocol's mean NLL, and
//   frozen parameters without gradient buffers;
// - against PyTorch autograd (tests/fixtures/make_grad_references.py): the fp32 loss within 1e-5, every
//   parameter's gradient within 1e-4 of that gradient's largest magnitude, and one AdamW step within 1e-6 of
//   torch.optim.AdamW (relative to max(1, the largest |value|));
// - overfitting one batch, `lathe-cli grad`, a training run killed with SIGKILL and resumed, BERT's masked LM,
//   Taylor scores;
// - the step split over the cores (rows of the element-wise ops, heads of attention, parts of GEMMs): in fp64 (no
//   BLAS) one, two and three threads give the same bits; in fp32 the same within 1e-6 of each gradient's largest
//   entry.
// The ops one by one are in tst_trainops.cpp.

#include "base/error.h"
#include "model/layerweights.h"
#include "testsupport.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "tokenizers/tokenizer.h"
#include "clirun.h"
#include "gradcheck.h"
#include "referencefile.h"
#include "run/trainingrun.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/linearkinds.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "train/schedule.h"
#include "train/ops.h"
#include "train/taylor.h"
#include "analysis/matrixscores.h"
#include "numeric/spectrum.h"
#include "numeric/blas.h"
#include "engine/calibration.h"

#include <Eigen/SVD>
#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>

using namespace lathe;
using namespace lathe::train;
namespace fs = std::filesystem;

namespace {

using MatX = Matrix<double>;

using test::randomMat;



// stories260K and its first `windows` windows of `seq` tokens of the bundled TinyStories excerpt, as one batch.
std::pair<std::unique_ptr<Model>, TokenBatch> storiesWindows(int64_t windows, int64_t seq) {
    auto m = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
    const std::vector<int32_t> ids =
        loadTokenizer(*m)->encodeForModel(readTextFile(test::dataDir() + "/text/tinystories-excerpt.txt"));
    TokenBatch batch;
    batch.batch = windows;
    batch.seq = seq;
    batch.tokens.assign(ids.begin(), ids.begin() + windows * seq);
    return {std::move(m), std::move(batch)};
}

// max |got - want| and max(floor, max |want|) over a tensor.
std::pair<double, double> maxError(const float *got, const std::vector<float> &want, double floor) {
    double err = 0, scale = floor;
    for (size_t i = 0; i < want.size(); ++i) {
        err = std::max(err, std::abs(double(got[i]) - double(want[i])));
        scale = std::max(scale, std::abs(double(want[i])));
    }
    return {err, scale};
}

// A tensor as PyTorch holds it, in our layout: GPT-2's Conv1D weights are stored (in x out), ours (out x in).
std::vector<float> inOurLayout(const Parameter<float> &p, const std::vector<float> &torch) {
    if (!p.transposedInFile)
        return torch;
    const int64_t rows = p.value.rows(), cols = p.value.cols(); // ours; torch's is (cols x rows)
    std::vector<float> out(torch.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            out[size_t(r * cols + c)] = torch[size_t(c * rows + r)];
    return out;
}

} // namespace


class TestTrainModel : public QObject {
    Q_OBJECT
private slots:
    void modelGradients_data() {
        QTest::addColumn<QString>("model");
        QTest::newRow("hf-llama (untied, GQA)") << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-llama");
        QTest::newRow("tf-qwen2 (tied, q/k/v biases)")
            << QString::fromStdString(test::sourceDir() + "/tests/fixtures/tf-qwen2");
        QTest::newRow("stories260K (tied)")
            << QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin");
        QTest::newRow("hf-opt (LayerNorm, learned positions, ReLU)")
            << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-opt");
        QTest::newRow("hf-gpt2 (fused q|k|v, GELU)") << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-gpt2");
        QTest::newRow("hf-phi (parallel block, partial rotary, biased head)")
            << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-phi");
        QTest::newRow("tf-bert-mlm (post-norm, bidirectional, segments, masked-LM head)")
            << QString::fromStdString(test::sourceDir() + "/tests/fixtures/tf-bert-mlm");
    }

    // Every parameter of the whole model, at 8 random elements each (all of a small one), against central finite
    // differences of the fp64 loss; with a small vocabulary chunk so that the chunked head is exercised.
    void modelGradients() {
        QFETCH(QString, model);
        auto m = openModel(model.toStdString());
        CausalLm<double> lm(*m);
        lm.setLossChunk(37);
        TokenBatch batch;
        batch.batch = 2;
        batch.seq = 9;
        std::mt19937 rng(11);
        std::uniform_int_distribution<int32_t> tok(0, int32_t(m->config.vocabSize) - 1);
        for (int64_t i = 0; i < batch.batch * batch.seq; ++i)
            batch.tokens.push_back(tok(rng));
        if (lm.maskedLm()) { // masks drawn from seed 0 at every forward; half the tokens chosen; segment ids
            MlmMasking masking;
            masking.maskId = 3;
            masking.rate = 0.5;
            lm.setMasking(masking);
            batch.tokenTypes.assign(batch.tokens.size(), 0);
            for (size_t i = 0; i < batch.tokenTypes.size(); i += 2)
                batch.tokenTypes[i] = 1;
        }
        lm.forward(batch);
        lm.backward();
        int checked = 0;
        for (Parameter<double> &p : lm.parameters().all()) {
            // The fp64 loss rounds at ~1e-15 of its value, ~1e-9 in a central difference of step 1e-6: 1e-5 of a
            // gradient whose largest entry is 1e-4 (BERT's queries: attention nearly uniform at init).
            const double err = test::modelFdError(lm, batch, p, rng);
            QVERIFY2(err < 1e-5, qPrintable(QString::fromStdString(p.name) + ": " + QString::number(err)));
            ++checked;
        }
        QVERIFY(checked >= 2 + 6 * int(m->config.numLayers)); // embedding, final norm, norms and linears per block
        // Backward accumulates: a second pass doubles the gradients; zeroGrad clears them.
        lm.forward(batch);
        const Matrix<double> once = lm.parameters().all().front().grad;
        lm.backward();
        QVERIFY((lm.parameters().all().front().grad - 2 * once).norm() <= 1e-12 * once.norm());
        lm.parameters().zeroGrad();
        QVERIFY(lm.parameters().all().front().grad.isZero());
    }

    void againstPyTorch_data() {
        QTest::addColumn<QString>("fixture");
        for (const char *f : {"tf-llama", "tf-qwen2", "hf-llama", "tf-opt", "tf-gpt2", "tf-phi", "tf-bert-mlm"})
            QTest::newRow(f) << QString(f);
    }

    void againstPyTorch() {
        QFETCH(QString, fixture);
        const std::string dir = test::sourceDir() + "/tests/fixtures/" + fixture.toStdString();
        const auto ref = test::readReference(dir + "/grad-reference.safetensors");
        auto m = openModel(dir);
        CausalLm<float> lm(*m);
        lm.setLossChunk(40); // chunked head: vocabularies of 96 and 128
        const test::RefTensor &ids = ref.at("input_ids");
        TokenBatch batch;
        batch.batch = ids.dim(0);
        batch.seq = ids.dim(1);
        batch.tokens = ids.i32;
        // BERT: the masked inputs, segment ids and labels torch saw (-1 where no loss).
        const bool mlm = ref.count("labels") > 0;
        QCOMPARE(lm.maskedLm(), mlm);
        if (mlm)
            batch.tokenTypes = ref.at("token_type_ids").i32;
        const double loss = mlm ? lm.forwardWithTargets(batch, ref.at("labels").i32) : lm.forward(batch);
        const double want = ref.at("loss").f32[0];
        QVERIFY2(std::abs(loss - want) <= 1e-5 * want, qPrintable(QString("%1 vs %2").arg(loss).arg(want)));
        lm.backward();
        int compared = 0;
        double worstGrad = 0, worstStep = 0;
        for (Parameter<float> &p : lm.parameters().all()) {
            auto it = ref.find("grad." + p.name);
            QVERIFY2(it != ref.end(), p.name.c_str());
            const std::vector<float> g = inOurLayout(p, it->second.f32);
            QCOMPARE(int64_t(g.size()), int64_t(p.grad.size()));
            const auto [err, scale] = maxError(p.grad.data(), g, 1e-30);
            // Gradients that are zero analytically (OPT's key bias: softmax ignores a constant added to a row of
            // scores) hold only rounding noise in both; they must stay below 1e-6.
            if (scale < 1e-5) {
                QVERIFY2(err < 1e-6, qPrintable(QString::fromStdString(p.name) + ": " + QString::number(err)));
                continue;
            }
            QVERIFY2(err <= 1e-4 * scale, qPrintable(QString::fromStdString(p.name) + ": " + QString::number(err / scale)));
            worstGrad = std::max(worstGrad, err / scale);
            ++compared;
        }
        QVERIFY(compared > 0);
        QCOMPARE(int(lm.parameters().all().size()), int(std::count_if(ref.begin(), ref.end(), [](const auto &e) { return e.first.rfind("grad.", 0) == 0; })));
        // One AdamW step from the same gradients, with torch's gradients so that only the optimizer is compared.
        for (Parameter<float> &p : lm.parameters().all()) {
            const std::vector<float> g = inOurLayout(p, ref.at("grad." + p.name).f32);
            std::copy(g.begin(), g.end(), p.grad.data());
        }
        AdamWOptions o;
        o.beta1 = 0.9;
        o.beta2 = 0.95;
        o.eps = 1e-8;
        o.weightDecay = 0.1;
        AdamW<float> adam(o);
        adam.step(lm.parameters(), 1e-3);
        QCOMPARE(adam.stateBytes(), lm.parameters().gradientBytes() * 2);
        for (const Parameter<float> &p : lm.parameters().all()) {
            const auto [err, scale] = maxError(p.value.data(), inOurLayout(p, ref.at("adamw." + p.name).f32), 1.0);
            QVERIFY2(err <= 1e-6 * scale, qPrintable(QString::fromStdString(p.name) + ": " + QString::number(err)));
            worstStep = std::max(worstStep, err / scale);
        }
        qInfo("%s: loss %.7f (torch %.7f), worst gradient error %.2e of its largest magnitude, worst AdamW error %.2e",
              qPrintable(fixture), loss, want, worstGrad, worstStep);
    }

    // The fp32 training loss on the evaluation protocol's windows is the evaluation's mean NLL.
    void modelLossIsTheEvaluationNll() {
        const auto [m, batch] = storiesWindows(3, 64);
        PerplexityParams pp;
        pp.seqLen = 64;
        Transformer engine(*m);
        const PerplexityResult want = evaluatePerplexity(engine, batch.tokens, pp);
        QCOMPARE(want.windows, int64_t(3));
        CausalLm<float> lm(*m);
        const double got = lm.forward(batch);
        QVERIFY2(std::abs(got - want.meanNll) < 1e-5 * want.meanNll,
                 qPrintable(QString("%1 vs %2").arg(got, 0, 'g', 9).arg(want.meanNll, 0, 'g', 9)));
    }

    // stories260K overfits one batch: AdamW drives its loss on one window of the TinyStories excerpt below 0.1.
    void overfitOneBatch() {
        const auto [m, batch] = storiesWindows(1, 64);
        CausalLm<float> lm(*m);
        AdamWOptions o;
        o.weightDecay = 0.0;
        AdamW<float> adam(o);
        const double first = lm.forward(batch);
        double loss = first;
        int step = 0;
        for (; step < 300 && loss >= 0.1; ++step) {
            lm.parameters().zeroGrad();
            lm.backward();
            adam.step(lm.parameters(), 1e-2);
            loss = lm.forward(batch);
        }
        qInfo("overfitting one 64-token window: loss %.4f -> %.4f in %d AdamW steps (lr 1e-2)", first, loss, step);
        QVERIFY2(loss < 0.1, qPrintable(QString::number(loss)));
    }

    // lathe-cli grad: its loss is lathe-cli eval's mean NLL on the same windows; --out holds every parameter's
    // gradient under its Hugging Face name and shape, equal to the norms the JSON reports; an existing file is
    // refused and left alone.
    void gradCommand() {
        const QString model = QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin");
        const QString text = QString::fromStdString(test::dataDir() + "/text/tinystories-excerpt.txt");
        const std::string out = test::tempDir("grad") + "/grads.safetensors";
        const test::CliRun g = test::runCli({"grad", "--model", model, "--text", text, "--seq-len", "128", "--windows",
                                             "2", "--out", QString::fromStdString(out), "--json"});
        QVERIFY2(g.exitCode == 0, g.err.c_str());
        const test::CliRun e = test::runCli({"eval", "--model", model, "--text", text, "--seq-len", "128",
                                             "--max-tokens", "256", "--device", "cpu", "--json"});
        QVERIFY2(e.exitCode == 0, e.err.c_str());
        const nlohmann::json gj = nlohmann::json::parse(g.out), ej = nlohmann::json::parse(e.out);
        QCOMPARE(gj["predictions"].get<int64_t>(), int64_t(2 * 127));
        QVERIFY(std::abs(gj["loss"].get<double>() - ej["mean_nll"].get<double>()) < 1e-5 * ej["mean_nll"].get<double>());
        const auto grads = test::readReference(out);
        auto m = openModel(model.toStdString());
        for (const nlohmann::json &p : gj["gradients"]) {
            const std::string name = p["name"];
            QVERIFY2(grads.count(name) && m->find(name), name.c_str());
            const test::RefTensor &t = grads.at(name);
            QCOMPARE(t.shape, m->find(name)->shape);
            double sq = 0;
            for (float v : t.f32)
                sq += double(v) * double(v);
            QVERIFY(std::abs(std::sqrt(sq) - p["norm"].get<double>()) <= 1e-5 * std::max(1e-12, p["norm"].get<double>()));
        }
        QCOMPARE(grads.size(), gj["gradients"].size());
        const auto size = std::filesystem::file_size(out);
        const test::CliRun again = test::runCli({"grad", "--model", model, "--text", text, "--out", QString::fromStdString(out)});
        QCOMPARE(again.exitCode, 1);
        QVERIFY(QString::fromStdString(again.err).contains("exists"));
        QCOMPARE(std::filesystem::file_size(out), size);
    }

    // lathe-cli train, issue 17 item 6: a run killed with SIGKILL at a random moment and resumed with
    // `train --resume RUN_DIR` ends with the losses, evaluations and exported weights of an uninterrupted run (10
    // kill points from a fixed seed over its duration); a cancelled run stops at a step boundary and says so.
    void trainResumeAfterSigkill() {
        const fs::path root = test::tempDir("train-resume");
        const nlohmann::json j = {
            {"model", test::sourceDir() + "/resources/demo/stories260K.bin"},
            {"data", {{"train", test::dataDir() + "/text/tinystories-excerpt.txt"}, {"holdout", 0.1}, {"seq_len", 64},
                      {"batch", 2}, {"accumulate", 2}, {"eval_windows", 2}, {"seed", 5}}},
            {"optimizer", {{"lr", 2e-3}, {"schedule", "cosine"}, {"warmup", 5}, {"clip", 1.0}}},
            {"steps", 60},
            {"eval_every", 20},
            {"checkpoint_every", 7},
            {"output", {{"dir", "unused"}}}};
        const test::ReferenceRun reference = test::runReference(root, j, "train");
        const QString specPath = reference.specPath;
        const fs::path ref = reference.out;
        const qint64 total = reference.ms;
        const test::CliRun &r0 = reference.run;
        QVERIFY2(r0.exitCode == 0, r0.err.c_str());
        auto stripped = [](const fs::path &dir) {
            nlohmann::json r = nlohmann::json::parse(readTextFile((dir / "results.json").string()));
            for (auto &s : r["steps"])
                s.erase("tokens_per_s");
            return std::make_pair(r["steps"], r["evals"]);
        };
        const auto want = stripped(ref);
        QCOMPARE(int(want.first.size()), 60);
        QCOMPARE(int(want.second.size()), 4); // before training and at steps 20, 40, 60
        const std::string wantModel = readTextFile((ref / "model" / "model.safetensors").string());
        std::mt19937 rng(20261202);
        int interrupted = 0, fromCheckpoint = 0;
        for (int k = 0; k < 10; ++k) {
            const fs::path out = root / ("k" + std::to_string(k));
            const int delay = int(std::uniform_int_distribution<qint64>(0, total)(rng));
            interrupted += test::runCliKilledAfter({"train", specPath, "--output", QString::fromStdString(out.string())},
                                                   delay);
            const std::string where = "kill at " + std::to_string(delay) + " ms: ";
            test::CliRun r;
            if (fs::exists(out / "spec.json"))
                r = test::runCli({"train", "--resume", QString::fromStdString(out.string())});
            else // killed before the run folder held its spec: the job, resumed into that folder, starts afresh
                r = test::runCli({"train", specPath, "--resume", QString::fromStdString(out.string())});
            QVERIFY2(r.exitCode == 0, (where + r.err).c_str());
            const auto got = stripped(out);
            QVERIFY2(got.first == want.first, (where + "steps").c_str());
            QVERIFY2(got.second == want.second, (where + "evaluations").c_str());
            QVERIFY2(readTextFile((out / "model" / "model.safetensors").string()) == wantModel, (where + "model").c_str());
            fromCheckpoint += readTextFile((out / "run.log").string()).find("resumed at step") != std::string::npos;
            for (const auto &e : fs::recursive_directory_iterator(out))
                QVERIFY2(e.path().filename().string().find(".lathe-tmp-") == std::string::npos, e.path().c_str());
        }
        qInfo("%d of 10 training runs were killed mid-way (uninterrupted: %lld ms), %d resumed from a checkpoint",
              interrupted, static_cast<long long>(total), fromCheckpoint);

        // Cancel at step 3: results.json says cancelled, with the 3 steps done.
        TrainingSpec spec = TrainingSpec::fromFile(specPath.toStdString());
        spec.outputDir = (root / "cancel").string();
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(CancelledError, runTraining(spec, [&](const Progress &) { return ++calls < 3; }));
        const auto r = nlohmann::json::parse(readTextFile((root / "cancel" / "results.json").string()));
        QCOMPARE(QString::fromStdString(r["status"].get<std::string>()), QString("cancelled"));
        QCOMPARE(int(r["steps"].size()), 3);
        // Bad specs are refused by key before any work, and the run folder is never an input.
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson({{"stpes", 3}}));
        spec.outputDir = test::dataDir();
        QVERIFY_THROWS_EXCEPTION(LatheError, validateTrainingSpec(spec));
    }

    // The spec's device: "cpu" (default) and "auto" without a usable GPU train the same bits on the CPU, the log
    // saying why auto chose it; bad devices and precisions are refused by key before any
    // work; "cuda" without a GPU is refused with the reason.
    void trainDeviceChoice() {
        const fs::path root = test::tempDir("train-device");
        nlohmann::json j = {
            {"model", test::sourceDir() + "/resources/demo/stories260K.bin"},
            {"data", {{"train", test::dataDir() + "/text/tinystories-excerpt.txt"}, {"holdout", 0.1}, {"seq_len", 32},
                      {"batch", 2}, {"eval_windows", 2}, {"seed", 3u}}},
            {"optimizer", {{"lr", 1e-3}}},
            {"steps", 4},
            {"eval_every", 2},
            {"checkpoint_every", 0},
            {"output", {{"dir", (root / "cpu").string()}, {"export", false}}}};
        // Without a device the GPU trainer takes the job where it can (auto), in bf16 products.
        const TrainingSpec byDefault = TrainingSpec::fromJson(j);
        QCOMPARE(QString::fromStdString(byDefault.device), QString("auto"));
        QCOMPARE(QString::fromStdString(byDefault.precision), QString("bf16"));
        j["device"] = "cpu";
        TrainingSpec cpu = TrainingSpec::fromJson(j);
        QCOMPARE(QString::fromStdString(cpu.device), QString("cpu"));
        validateTrainingSpec(cpu);
        const TrainingResult a = runTraining(cpu);
        QCOMPARE(QString::fromStdString(a.device), QString("cpu"));
        std::string whyNone;
        const bool gpu = !gpuDevices(&whyNone).empty();
        j["device"] = "auto";
        j["output"]["dir"] = (root / "auto").string();
        TrainingSpec autoSpec = TrainingSpec::fromJson(j);
        QCOMPARE(QString::fromStdString(autoSpec.toJson().at("device").get<std::string>()), QString("auto"));
        validateTrainingSpec(autoSpec);
        const TrainingResult b = runTraining(autoSpec);
        if (!gpu) {
            QCOMPARE(QString::fromStdString(b.device), QString("cpu"));
            QCOMPARE(int(b.steps.size()), 4);
            for (size_t i = 0; i < a.steps.size(); ++i)
                QCOMPARE(b.steps[i].loss, a.steps[i].loss);
            QCOMPARE(b.evals.back().loss, a.evals.back().loss);
            const std::string log = readTextFile((root / "auto" / "run.log").string());
            QVERIFY2(log.find("device auto: training on the CPU (no usable GPU") != std::string::npos, log.c_str());
        } else { // the GPU trainer ran it (stories260K is a Llama)
            QVERIFY2(b.device != "cpu", b.device.c_str());
        }
        auto refused = [&](nlohmann::json spec, const std::string &words) {
            spec["output"]["dir"] = (root / "refused").string();
            try {
                validateTrainingSpec(TrainingSpec::fromJson(spec));
            } catch (const LatheError &e) {
                QVERIFY2(std::string(e.what()).find(words) != std::string::npos, e.what());
                QVERIFY(!fs::exists(root / "refused"));
                return;
            }
            QFAIL(("accepted: " + spec.dump()).c_str());
        };
        nlohmann::json bad = j;
        bad["device"] = "tpu";
        refused(bad, "tpu");
        bad = j;
        bad["precision"] = "fp16";
        refused(bad, "precision fp16");
        if (!gpu) {
            bad = j;
            bad["device"] = "cuda";
            refused(bad, "CUDA");
        }
        // lathe-cli train --device replaces the job's: refused by name before any work, or trained on the CPU.
        const std::string specPath = (root / "job.json").string();
        test::writeText(specPath, j.dump());
        const QString spec = QString::fromStdString(specPath);
        test::CliRun r = test::runCli({"train", spec, "--device", "tpu", "--output",
                                       QString::fromStdString((root / "cli-tpu").string())});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("unknown device 'tpu'") != std::string::npos, r.err.c_str());
        QVERIFY(!fs::exists(root / "cli-tpu"));
        r = test::runCli({"train", spec, "--device", "cpu", "--precision", "fp32", "--output",
                          QString::fromStdString((root / "cli-cpu").string())});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        const auto saved = nlohmann::json::parse(readTextFile((root / "cli-cpu" / "spec.json").string()));
        QCOMPARE(QString::fromStdString(saved.at("device").get<std::string>()), QString("cpu"));
        QCOMPARE(QString::fromStdString(saved.at("precision").get<std::string>()), QString("fp32"));
    }

    // BERT's masking (maskTokens): a function of the seed alone; about 15% of the tokens chosen, 80% of those
    // become [MASK], 10% a random id, 10% stay; specials never chosen; every window gets a target.
    void maskedLmMasking() {
        MlmMasking masking;
        masking.maskId = 4;
        masking.special = {2, 3}; // [CLS], [SEP]
        TokenBatch b = TokenBatch::random(600, 64, 128, 9);
        for (int64_t w = 0; w < b.batch; ++w) {
            b.tokens[size_t(w * b.seq)] = 2;
            b.tokens[size_t(w * b.seq + b.seq - 1)] = 3;
        }
        const MaskedBatch a = maskTokens(b, masking, 600, 7), again = maskTokens(b, masking, 600, 7),
                          other = maskTokens(b, masking, 600, 8);
        QVERIFY(a.inputs.tokens == again.inputs.tokens && a.targets == again.targets);
        QVERIFY(a.targets != other.targets);
        int64_t chosen = 0, masked = 0, kept = 0;
        for (size_t i = 0; i < b.tokens.size(); ++i) {
            if (a.targets[i] < 0) {
                QCOMPARE(a.inputs.tokens[i], b.tokens[i]); // not chosen: unchanged
                continue;
            }
            QCOMPARE(a.targets[i], b.tokens[i]);
            QVERIFY(b.tokens[i] != 2 && b.tokens[i] != 3);
            ++chosen;
            masked += a.inputs.tokens[i] == 4;
            kept += a.inputs.tokens[i] == b.tokens[i];
        }
        const double n = double(b.tokens.size()), rate = double(chosen) / n;
        qInfo("masked-LM masking: %.4f of %lld tokens chosen; of those %.3f [MASK], %.3f unchanged", rate,
              static_cast<long long>(n), double(masked) / double(chosen), double(kept) / double(chosen));
        QVERIFY2(std::abs(rate - 0.15) < 0.01, qPrintable(QString::number(rate)));
        QVERIFY(std::abs(double(masked) / double(chosen) - 0.8) < 0.03);
        QVERIFY(std::abs(double(kept) / double(chosen) - 0.1) < 0.03); // random ids rarely equal the original
        // A window too short for the draws to choose a token still gets one; [CLS] and [SEP] never.
        TokenBatch tiny;
        tiny.batch = 50;
        tiny.seq = 3;
        for (int w = 0; w < 50; ++w)
            tiny.tokens.insert(tiny.tokens.end(), {2, 17, 3});
        const MaskedBatch t = maskTokens(tiny, masking, 600, 1);
        for (int w = 0; w < 50; ++w)
            QVERIFY(t.targets[size_t(3 * w)] < 0 && t.targets[size_t(3 * w + 1)] == 17 && t.targets[size_t(3 * w + 2)] < 0);
    }

    // lathe-cli train on a BertForMaskedLM (tf-bert-mlm, with the WordPiece fixture's vocabulary): the masked-LM
    // objective is named in the plan, the evaluation's masked-LM perplexity falls, a run killed and resumed ends
    // with the same steps, evaluations and weights (the masks follow the step, not the process), the export loads
    // back; a BertModel without the head and a tokenizer without [MASK] are refused before anything is written.
    void trainBertMaskedLm() {
        const fs::path root = test::tempDir("train-bert");
        const std::string model = test::sourceDir() + "/tests/fixtures/tf-bert-mlm";
        nlohmann::json j = {
            {"model", model},
            {"data", {{"train", test::dataDir() + "/text/tinystories-excerpt.txt"}, {"holdout", 0.1}, {"seq_len", 32},
                      {"batch", 4}, {"eval_windows", 4}, {"seed", 3}}},
            {"optimizer", {{"lr", 3e-3}, {"schedule", "constant"}}},
            {"steps", 40},
            {"eval_every", 20},
            {"checkpoint_every", 15},
            {"output", {{"dir", "unused"}}}};
        const test::ReferenceRun first = test::runReference(root, j, "train");
        const QString specPath = first.specPath;
        const fs::path ref = first.out;
        QVERIFY2(first.run.exitCode == 0, first.run.err.c_str());
        QVERIFY(first.run.out.find("objective: masked-LM (15% of tokens)") != std::string::npos);
        nlohmann::json res = nlohmann::json::parse(readTextFile((ref / "results.json").string()));
        QCOMPARE(QString::fromStdString(res["plan"]["objective"].get<std::string>()), QString("masked-LM (15% of tokens)"));
        const double before = res["evals"].front()["eval_ppl"], after = res["evals"].back()["eval_ppl"];
        qInfo("tf-bert-mlm, 40 steps of 4 x 32 tokens: masked-LM perplexity %.1f -> %.1f", before, after);
        QVERIFY2(after < 0.7 * before, qPrintable(QString("%1 -> %2").arg(before).arg(after)));
        // Killed at two moments and resumed: the same run.
        const std::string wantModel = readTextFile((ref / "model" / "model.safetensors").string());
        for (const qint64 delay : {first.ms / 3, 2 * first.ms / 3}) {
            const fs::path out = root / ("k" + std::to_string(delay));
            test::runCliKilledAfter({"train", specPath, "--output", QString::fromStdString(out.string())}, int(delay));
            const test::CliRun r = fs::exists(out / "spec.json")
                                       ? test::runCli({"train", "--resume", QString::fromStdString(out.string())})
                                       : test::runCli({"train", specPath, "--resume", QString::fromStdString(out.string())});
            QVERIFY2(r.exitCode == 0, r.err.c_str());
            nlohmann::json got = nlohmann::json::parse(readTextFile((out / "results.json").string()));
            for (nlohmann::json *x : {&got, &res})
                for (auto &s : (*x)["steps"])
                    s.erase("tokens_per_s");
            QVERIFY(got["steps"] == res["steps"] && got["evals"] == res["evals"]);
            QVERIFY(readTextFile((out / "model" / "model.safetensors").string()) == wantModel);
        }
        // The export: the head and the tied decoder trained, loadable and trainable again.
        auto exported = openModel((ref / "model").string());
        CausalLm<float> lm(*exported);
        QVERIFY(lm.maskedLm());
        auto source = openModel(model);
        QVERIFY(exported->loadFloat(*exported->find("cls.predictions.bias")) !=
                source->loadFloat(*source->find("cls.predictions.bias")));
        // A fine-tuning method on the masked LM: PST at 50% leaves half of every block linear zero in the export.
        nlohmann::json pst = j;
        pst["method"] = "pst";
        pst["pst"] = {{"final_sparsity", 0.5}};
        pst["steps"] = 20;
        test::writeText(specPath.toStdString(), pst.dump(2));
        const test::CliRun rp = test::runCli({"train", specPath, "--output", QString::fromStdString((root / "pst").string())});
        QVERIFY2(rp.exitCode == 0, rp.err.c_str());
        auto pruned = openModel((root / "pst" / "model").string());
        for (const char *name : {"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.output.dense.weight"}) {
            const std::vector<float> w = pruned->loadFloat(*pruned->find(name));
            QCOMPARE(std::count(w.begin(), w.end(), 0.0f), std::ptrdiff_t(w.size() / 2));
        }
        // Refusals, with nothing written.
        j["model"] = test::sourceDir() + "/tests/fixtures/tf-bert";
        j["tokenizer"] = test::sourceDir() + "/tests/fixtures/tokenizers/wordpiece/vocab.txt";
        test::writeText(specPath.toStdString(), j.dump(2));
        const test::CliRun noHead = test::runCli({"train", specPath, "--output", QString::fromStdString((root / "x").string())});
        QVERIFY(noHead.exitCode != 0 && noHead.err.find("no masked-LM head") != std::string::npos);
        j["model"] = model;
        j["tokenizer"] = test::sourceDir() + "/tests/fixtures/tokenizers/bpe-gpt2style/tokenizer.json";
        test::writeText(specPath.toStdString(), j.dump(2));
        const test::CliRun noMask = test::runCli({"train", specPath, "--output", QString::fromStdString((root / "x").string())});
        QVERIFY2(noMask.exitCode != 0 && noMask.err.find("[MASK]") != std::string::npos, noMask.err.c_str());
        QVERIFY(!fs::exists(root / "x"));
    }

    // Taylor scores (train/taylor.h): the mean over the calibration sequences of |W ⊙ dL/dW| for every block linear,
    // against the same computed in fp64 per sequence (within 1e-4 of the largest score); the views use them.
    void taylorScores() {
        auto [m, batch] = storiesWindows(2, 48);
        CalibrationSet set;
        set.seqLen = 48;
        set.sequences = {std::vector<int32_t>(batch.tokens.begin(), batch.tokens.begin() + 48),
                         std::vector<int32_t>(batch.tokens.begin() + 48, batch.tokens.end())};
        const auto scores = collectGradientMagnitudes(*m, set);
        QCOMPARE(int(scores.size()), 7 * int(m->config.numLayers));
        CausalLm<double> ref(*m);
        std::map<std::string, Matrix<double>> want;
        for (const auto &seq : set.sequences) {
            TokenBatch b;
            b.batch = 1;
            b.seq = 48;
            b.tokens = seq;
            ref.parameters().zeroGrad();
            ref.forward(b);
            ref.backward();
            for (const Parameter<double> &p : ref.parameters()) {
                if (!scores.count(p.name))
                    continue;
                Matrix<double> &w = want[p.name];
                if (!w.size())
                    w = Matrix<double>::Zero(p.value.rows(), p.value.cols());
                w += 0.5 * p.grad.cwiseAbs();
            }
        }
        for (const auto &[name, got] : scores) {
            const Matrix<double> &w = want.at(name);
            QCOMPARE(int64_t(got.size()), int64_t(w.size()));
            double err = 0;
            for (int64_t i = 0; i < w.size(); ++i)
                err = std::max(err, std::abs(double(got[size_t(i)]) - w.data()[i]));
            QVERIFY2(err <= 1e-4 * w.maxCoeff(), qPrintable(QString::fromStdString(name) + ": " + QString::number(err)));
        }
        // The views rank by them when asked, and say what is missing otherwise.
        auto norms = std::make_shared<InputNorms>();
        MatrixScoresRequest req;
        req.model = std::shared_ptr<const Model>(std::move(m));
        req.tensor = "model.layers.2.mlp.up_proj.weight";
        req.kind = ImportanceKind::Taylor;
        req.pattern.ratio = 0.5;
        req.norms = norms;
        QCOMPARE(computeMatrixScores(req).used, ImportanceKind::Magnitude);
        QVERIFY(QString::fromStdString(computeMatrixScores(req).note).contains("gradients"));
        norms->gradients = scores;
        const MatrixScores ms = computeMatrixScores(req);
        QCOMPARE(ms.used, ImportanceKind::Taylor);
        QVERIFY(ms.error.empty() && ms.note.empty());
        // LoSparse: rows of |S| ⊙ g with S = W - L R at rank losparseRank(rho); each row one value, so a 50% mask
        // prunes whole rows (the rows of S LoSparse would drop first), and the score histogram has at most `rows`
        // distinct values. Checked against S from an fp64 SVD.
        req.kind = ImportanceKind::LoSparse;
        req.rankRatio = 0.2;
        const MatrixScores ls = computeMatrixScores(req);
        QCOMPARE(ls.used, ImportanceKind::LoSparse);
        QVERIFY(ls.error.empty());
        const TensorInfo *t = req.model->find(req.tensor);
        const std::vector<float> wv = req.model->loadFloat(*t);
        const int64_t rows = t->shape[0], cols = t->shape[1], rank = losparseRank(rows, cols, 0.2);
        QVERIFY(rank > 1 && rank < std::min(rows, cols));
        const Matrix<double> wd = Eigen::Map<const Matrix<float>>(wv.data(), rows, cols).cast<double>();
        Eigen::BDCSVD<Eigen::MatrixXd> svd(wd, Eigen::ComputeThinU | Eigen::ComputeThinV);
        const Matrix<double> sd = wd - svd.matrixU().leftCols(rank) * svd.singularValues().head(rank).asDiagonal() *
                                            svd.matrixV().leftCols(rank).transpose();
        const std::vector<float> got = loSparseScores(wv.data(), rows, cols, scores.at(req.tensor), rank);
        const std::vector<float> &g = scores.at(req.tensor);
        double worst = 0, largest = 0;
        for (int64_t r = 0; r < rows; ++r) {
            double want = 0;
            for (int64_t c = 0; c < cols; ++c)
                want += std::abs(sd(r, c)) * g[size_t(r * cols + c)] / double(cols);
            largest = std::max(largest, want);
            for (int64_t c = 0; c < cols; ++c)
                worst = std::max(worst, std::abs(double(got[size_t(r * cols + c)]) - want));
        }
        QVERIFY2(worst <= 1e-4 * largest, qPrintable(QString::number(worst / largest)));
        QCOMPARE(ls.stats.rowZeroFraction.size(), size_t(rows));
        int partial = 0;
        for (double f : ls.stats.rowZeroFraction)
            partial += f > 0 && f < 1;
        QVERIFY(partial <= 1); // whole rows (one row may be cut at the 50% boundary)
    }

    // A frozen parameter has no gradient buffer and backward leaves it so; the others still get theirs.
    void frozenParametersGetNoGradient() {
        auto m = openModel(test::sourceDir() + "/tests/fixtures/hf-llama");
        CausalLm<float> lm(*m);
        const uint64_t all = lm.parameters().gradientBytes();
        const std::string frozen = "model.layers.0.mlp.down_proj.weight";
        lm.parameters().setTrainable(frozen, false);
        Parameter<float> *p = lm.parameters().find(frozen);
        QVERIFY(p && !p->trainable() && p->grad.size() == 0);
        QCOMPARE(lm.parameters().gradientBytes(), all - uint64_t(p->value.size()) * 4);
        TokenBatch batch;
        batch.batch = 1;
        batch.seq = 8;
        batch.tokens = {1, 5, 9, 2, 7, 3, 3, 8};
        lm.forward(batch);
        lm.backward();
        QCOMPARE(p->grad.size(), Eigen::Index(0));
        QVERIFY(lm.parameters().find("model.layers.0.mlp.up_proj.weight")->grad.norm() > 0);
        QVERIFY_THROWS_EXCEPTION(LatheError, lm.parameters().setTrainable("no.such.weight", false));
        // BERT is refused by name until its MLM head is supported.
        auto bert = openModel(test::sourceDir() + "/tests/fixtures/hf-bert");
        QVERIFY_THROWS_EXCEPTION(LatheError, CausalLm<float>{*bert});
    }

    // A step on stories260K (GQA: 8 heads on 4 KV heads) with rows enough that every op splits, on one thread and
    // on several. fp64 runs no BLAS, so everything split (norm rows and their column sums, heads and the per-head K/V
    // gradients added in order, activations, cross-entropy rows) must give the very same bits. fp32 also splits its
    // GEMMs into single-threaded BLAS calls, whose tiling may round differently: within 1e-6 of each gradient's
    // largest entry.
    void threadsGiveTheSameStep() {
        auto [model, batch] = storiesWindows(4, 64);
        const int saved = blasThreads();
        auto step = [&](auto &lm, int threads) {
            setBlasThreads(threads);
            const double loss = double(lm.forward(batch));
            lm.backward();
            setBlasThreads(saved);
            return loss;
        };
        // Three threads split the 32 (window, head) items at 11 and 22: heads 2 and 3 of window 1 share a KV head and
        // land on different threads.
        CausalLm<double> one64(*model);
        const double loss64 = step(one64, 1);
        for (int threads : {2, 3}) {
            CausalLm<double> many64(*model);
            QCOMPARE(step(many64, threads), loss64);
            for (size_t i = 0; i < one64.parameters().all().size(); ++i)
                QVERIFY2(many64.parameters().all()[i].grad == one64.parameters().all()[i].grad,
                         one64.parameters().all()[i].name.c_str());
        }
        CausalLm<float> one32(*model), two32(*model);
        const double l1 = step(one32, 1), l2 = step(two32, 2);
        QVERIFY(std::abs(l1 - l2) <= 1e-6 * std::abs(l1));
        double worst = 0;
        for (size_t i = 0; i < one32.parameters().all().size(); ++i) {
            const Matrix<float> &a = one32.parameters().all()[i].grad, &b = two32.parameters().all()[i].grad;
            worst = std::max(worst, double((a - b).cwiseAbs().maxCoeff()) /
                                        std::max(1e-30, double(a.cwiseAbs().maxCoeff())));
        }
        qInfo("fp32 gradients, one thread against two: largest difference %.3g of the gradient's largest entry",
              worst);
        QVERIFY(worst <= 1e-6);
    }
};

QTEST_GUILESS_MAIN(TestTrainModel)
#include "tst_trainmodel.moc"
