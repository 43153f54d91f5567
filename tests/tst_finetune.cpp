// Fine-tuning methods run by `lathe-cli train` (methods/trainingmethod.h, losparse.cpp, pst.cpp; issue 18), end to
// end on stories260K:
// - the job spec: method parameters in nested objects, a literal dotted key and a post-training method refused,
//   and `compress` refusing a fine-tuning method with a pointer to `train`;
// - PST: the sparsity follows the cubic schedule step by step; only the method's matrices train; the export is
//   mask ⊙ (W + U V) with exactly floor(s n) zeros per target matrix, and evaluating the exported folder with
//   `lathe-cli eval` gives the run's final evaluation loss;
// - LoSparse: the budget (low-rank part + kept rows of S) is what the report says, pruned rows of the export's
//   S part are zero (W - L R), and the exported folder evaluates to the run's final loss; with low_rank_only the
//   model is L R alone from the first evaluation on (the SVD truncation baseline) and S neither trains nor exports;
// - recovery (magnitude + fine-tuning): the zeros of the export are exactly the floor(s n) smallest |W| of each
//   original matrix while the kept weights trained, and a second run at sparsity 0 on that export keeps its zeros;
// - the memory plan of `lathe-cli train --dry-run`, made from the tensor table without loading a weight, counts
//   the parameters and trainable parameters of the model a run builds, for every family and method;
// - both resume after SIGKILL with the steps, evaluations and exported weights of an uninterrupted run (the
//   method's own state, masks and running scores, travels in the checkpoint).

#include "analysis/matrixscores.h"
#include "base/error.h"
#include "base/unicodetext.h"
#include "clirun.h"
#include "engine/evaluation.h"
#include "export/losparseexport.h"
#include "export/sparsearchive.h"
#include "engine/transformer.h"
#include "train/linearkinds.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "base/mappedfile.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "model/model.h"
#include "referencefile.h"
#include "remotecodecheck.h"
#include "run/compressionspec.h"
#include "run/trainingrun.h"
#include "errorof.h"
#include "testsupport.h"

#include <QtTest/QtTest>
#include <QElapsedTimer>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

using namespace lathe;
namespace fs = std::filesystem;

namespace {

const int64_t kSeq = 64, kEvalWindows = 4;

nlohmann::json job(const nlohmann::json &method, int64_t steps) {
    nlohmann::json j = {
        {"model", test::sourceDir() + "/resources/demo/stories260K.bin"},
        {"data", {{"train", test::dataDir() + "/text/tinystories-excerpt.txt"},
                  {"eval", test::dataDir() + "/text/tinystories-excerpt.txt"}, {"seq_len", kSeq}, {"batch", 2},
                  {"eval_windows", kEvalWindows}, {"seed", uint64_t(3)}}},
        {"optimizer", {{"lr", 3e-3}, {"schedule", "cosine"}, {"warmup", 2}}},
        {"steps", steps},
        {"eval_every", 0},
        {"checkpoint_every", 5},
        {"output", {{"dir", "unused"}}}};
    if (method.is_object())
        j.update(method);
    return j;
}

// The run's final evaluation loss against `lathe-cli eval` of its exported folder (`sub`) on the same windows.
void exportEvaluatesLikeTheRun(const fs::path &dir, const std::string &sub = "model") {
    const nlohmann::json r = nlohmann::json::parse(readTextFile((dir / "results.json").string()));
    const double want = r["evals"].back()["eval_loss"].get<double>();
    const test::CliRun e = test::runCli({"eval", "--model", QString::fromStdString((dir / sub).string()), "--text",
                                         QString::fromStdString(test::dataDir() + "/text/tinystories-excerpt.txt"),
                                         "--seq-len", QString::number(kSeq), "--max-tokens",
                                         QString::number(kSeq * kEvalWindows), "--device", "cpu", "--json"});
    QVERIFY2(e.exitCode == 0, e.err.c_str());
    const double got = nlohmann::json::parse(e.out)["mean_nll"].get<double>();
    QVERIFY2(std::abs(got - want) < 1e-5 * want, qPrintable(QString("eval %1, run %2").arg(got).arg(want)));
}

std::string run(const nlohmann::json &j, const fs::path &out) {
    test::writeText((out.string() + ".json"), j.dump(2));
    const test::CliRun r = test::runCli({"train", QString::fromStdString(out.string() + ".json"), "--output",
                                         QString::fromStdString(out.string())});
    return r.exitCode == 0 ? std::string() : r.err + r.out;
}

} // namespace

class TestFineTune : public QObject {
    Q_OBJECT

private slots:
    void jobSpecs() {
        const nlohmann::json base = job(nlohmann::json::object(), 4);
        nlohmann::json j = base;
        j["method"] = "pst";
        j["pst"] = {{"final_sparsity", 0.5}, {"rank", 4}};
        const TrainingSpec s = TrainingSpec::fromJson(j);
        QVERIFY(s.method && s.method->info().name == "pst");
        QCOMPARE(s.methodParams.get<double>("pst.final_sparsity"), 0.5);
        QCOMPARE(s.methodParams.get<int64_t>("pst.rank"), int64_t(4));
        QCOMPARE(TrainingSpec::fromJson(s.toJson()).toJson(), s.toJson()); // round trip
        // A literal dotted key is refused (it would be read by nothing), so are unknown parameters, bad values,
        // another method's parameters and post-training methods.
        j.erase("pst");
        j["pst.final_sparsity"] = 0.5;
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(j));
        j.erase("pst.final_sparsity");
        j["pst"] = {{"final_sparsty", 0.5}};
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(j));
        j["pst"] = {{"final_sparsity", 1.5}};
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(j));
        j["pst"] = {{"ramp_begin", 0.8}, {"ramp_end", 0.2}};
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(j));
        j["pst"] = {{"targets", "("}};
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(j));
        j.erase("pst");
        j["losparse"] = {{"rank_ratio", 0.2}}; // another method's parameters: warned about and ignored
        QVERIFY(!TrainingSpec::fromJson(j).methodParams.has("losparse.rank_ratio"));
        j.erase("losparse");
        j["method"] = "wanda";
        try {
            TrainingSpec::fromJson(j);
            QFAIL("a post-training method was accepted");
        } catch (const LatheError &e) {
            QVERIFY(QString(e.what()).contains("post-training"));
        }
        CompressionSpec c;
        try {
            c.setMethod("losparse");
            QFAIL("compress accepted a fine-tuning method");
        } catch (const LatheError &e) {
            QVERIFY(QString::fromStdString(e.hint()).contains("lathe-cli train"));
        }
        QCOMPARE(int(methodsOfKind(MethodKind::FineTuning).size()), 4);
        // lathe-cli methods lists them with their kind.
        const test::CliRun m = test::runCli({"methods", "--json"});
        QVERIFY2(m.exitCode == 0, m.err.c_str());
        int fineTuning = 0;
        for (const auto &e : nlohmann::json::parse(m.out))
            fineTuning += e["kind"] == "fine-tuning";
        QCOMPARE(fineTuning, 4);
    }

    void pst() {
        const fs::path out = fs::path(test::tempDir("ft-pst")) / "run";
        const int64_t steps = 20;
        const nlohmann::json j = job({{"method", "pst"}, {"pst", {{"final_sparsity", 0.6}, {"ramp_begin", 0.1}, {"ramp_end", 0.7}}}},
                                     steps);
        const std::string err = run(j, out);
        QVERIFY2(err.empty(), err.c_str());
        const nlohmann::json r = nlohmann::json::parse(readTextFile((out / "results.json").string()));
        // The schedule: 0 for the first 10% of steps, cubic to 0.6 at 70%, then 0.6.
        for (const auto &s : r["steps"]) {
            const double t = double(s["step"].get<int64_t>() - 1), sparsity = s["method"]["sparsity"].get<double>();
            double want = 0.6;
            if (t < 0.1 * steps)
                want = 0;
            else if (t < 0.7 * steps)
                want = 0.6 * (1 - std::pow(1 - (t - 0.1 * steps) / (0.6 * steps), 3));
            QVERIFY2(std::abs(sparsity - want) < 1e-12, qPrintable(QString("step %1: %2").arg(t).arg(sparsity)));
        }
        // The Train dialog's preview is the run's schedule, step for step.
        const TrainingSpec spec = TrainingSpec::fromJson(j);
        const auto preview = spec.method->schedule(spec.methodParams, steps);
        QCOMPARE(preview.name, std::string("sparsity"));
        for (size_t i = 0; i < preview.values.size(); ++i)
            QCOMPARE(preview.values[i], r["steps"][i]["method"]["sparsity"].get<double>());
        const nlohmann::json &m = r["method"];
        QCOMPARE(m["sparsity"].get<double>(), 0.6);
        // Only U, V, A, B, R, C train: per target (out x in), r (out + in) + r' (out + in) + out + in at rank 8.
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        int64_t trainable = 0, targets = 0, zerosWanted = 0;
        for (const TensorInfo &t : model->tensors())
            if (t.layer >= 0 && t.shape.size() == 2) {
                trainable += 17 * (t.shape[0] + t.shape[1]);
                ++targets;
                zerosWanted += int64_t(std::floor(0.6 * double(t.shape[0] * t.shape[1])));
            }
        QCOMPARE(m["linears"].get<int64_t>(), targets);
        QCOMPARE(m["trainable_parameters"].get<int64_t>(), trainable);
        QCOMPARE(m["optimizer_state_bytes"].get<int64_t>(), 8 * trainable);
        // The export: exactly floor(0.6 n) zeros in each target, the rest of the checkpoint as it was.
        const auto tensors = test::readReference((out / "model" / "model.safetensors").string());
        int64_t zeros = 0;
        for (const TensorInfo &t : model->tensors()) {
            const auto &e = tensors.at(t.name);
            if (t.layer >= 0 && t.shape.size() == 2)
                zeros += std::count(e.f32.begin(), e.f32.end(), 0.0f);
            else
                QVERIFY2(e.f32 == model->loadFloat(t), t.name.c_str()); // frozen
        }
        QCOMPARE(zeros, zerosWanted);
        // The compact archive, as pruning runs write it: every target, lossless against the folder's weights.
        if (sparseArchiveAvailable()) {
            int matrices = 0;
            for (const TensorInfo &t : model->tensors()) {
                if (t.layer < 0 || t.shape.size() != 2)
                    continue;
                int64_t rows = 0, cols = 0;
                const std::vector<float> dense = readSparseMatrix((out / "run.h5").string(), t.name, rows, cols);
                QVERIFY2(dense == tensors.at(t.name).f32, t.name.c_str());
                ++matrices;
            }
            QCOMPARE(matrices, int(targets));
        }
        QVERIFY(!tensors.count("model.layers.0.mlp.up_proj.pst_u")); // an ordinary Hugging Face folder
        exportEvaluatesLikeTheRun(out);
    }

    void losparse() {
        const fs::path out = fs::path(test::tempDir("ft-losparse")) / "run";
        const nlohmann::json j = job({{"method", "losparse"},
                                      {"losparse", {{"rank_ratio", 0.1}, {"final_keep", 0.2}, {"delta_t", 2},
                                                    {"initial_warmup", 0.1}, {"final_warmup", 0.3}}}},
                                     20);
        const std::string err = run(j, out);
        QVERIFY2(err.empty(), err.c_str());
        const nlohmann::json results = nlohmann::json::parse(readTextFile((out / "results.json").string()));
        const nlohmann::json &m = results["method"];
        const TrainingSpec spec = TrainingSpec::fromJson(j);
        const auto preview = spec.method->schedule(spec.methodParams, 20);
        for (size_t i = 0; i < preview.values.size(); ++i)
            QCOMPARE(preview.values[i], results["steps"][i]["method"]["kept_fraction_of_s"].get<double>());
        // The budget adds up from the matrices, and the kept rows hold at most 20% of S's parameters (whole rows:
        // within one row of it).
        int64_t lowRank = 0, kept = 0, dense = 0, widest = 0;
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        for (const auto &e : m["matrices"]) {
            const TensorInfo *t = model->find(e["weight"].get<std::string>());
            QVERIFY(t);
            const int64_t out = t->shape[0], in = t->shape[1], r = e["rank"].get<int64_t>();
            QCOMPARE(r, int64_t(std::ceil(0.1 * double(out * in) / double(out + in))));
            lowRank += r * (out + in);
            kept += e["kept_rows"].get<int64_t>() * in;
            dense += out * in;
            widest = std::max(widest, in);
        }
        QCOMPARE(m["low_rank_parameters"].get<int64_t>(), lowRank);
        QCOMPARE(m["sparse_parameters_kept"].get<int64_t>(), kept);
        QVERIFY(double(kept) <= 0.2 * double(dense) && double(kept) > 0.2 * double(dense) - double(widest));
        QVERIFY(std::abs(m["budget_fraction"].get<double>() - double(lowRank + kept) / double(dense)) < 1e-12);
        exportEvaluatesLikeTheRun(out);
        // The compact form beside it holds exactly the budget's values for the targets.
        auto file = MappedFile::open((out / "model-compact" / "model.safetensors").string());
        const SafetensorsHeader h = parseSafetensorsHeader(file->data(), file->size(), "compact");
        int64_t factors = 0, rows = 0;
        for (const SafetensorsEntry &e : h.entries) {
            const auto ends = [&](const char *s) { return e.name.size() > strlen(s) && e.name.rfind(s) == e.name.size() - strlen(s); };
            if (ends(".lowrank_left") || ends(".lowrank_right"))
                factors += e.shape[0] * e.shape[1];
            if (ends(".sparse_rows"))
                rows += e.shape[0] * e.shape[1];
        }
        QCOMPARE(factors, lowRank);
        QCOMPARE(rows, kept);
        // Lathe opens the compact folder too: each linear's weight rebuilt as L R + S, so it evaluates like the run
        // and counts the merged model's parameters; S is kept as a buffer whose zero rows are the row mask.
        exportEvaluatesLikeTheRun(out, "model-compact");
        auto compact = openModel((out / "model-compact").string());
        auto merged = openModel((out / "model").string());
        QCOMPARE(compact->parameterCount(), merged->parameterCount());
        for (const std::string &w : compact->warnings) // its parts are accounted for, not unknown tensors
            QVERIFY2(w.find(".lowrank_") == std::string::npos && w.find(".sparse") == std::string::npos, w.c_str());
        int64_t keptRows = 0;
        for (const auto &e : m["matrices"]) {
            const std::string w = e["weight"].get<std::string>();
            const std::string base = w.substr(0, w.size() - std::strlen(".weight"));
            const TensorInfo *s = compact->find(base + ".sparse");
            QVERIFY2(s && s->role == TensorRole::Buffer, base.c_str());
            const std::vector<float> sv = compact->loadFloat(*s);
            for (int64_t r = 0; r < s->shape[0]; ++r)
                keptRows += std::any_of(sv.begin() + r * s->shape[1], sv.begin() + (r + 1) * s->shape[1],
                                        [](float v) { return v != 0.0f; });
            QVERIFY(compact->find(base + ".lowrank_left") && !compact->find(base + ".sparse_rows"));
        }
        int64_t wantRows = 0;
        for (const auto &e : m["matrices"])
            wantRows += e["kept_rows"].get<int64_t>();
        QCOMPARE(keptRows, wantRows);
    }

    // The SVD truncation baseline: S is gone before the first evaluation and never comes back.
    void losparseLowRankOnly() {
        const fs::path out = fs::path(test::tempDir("ft-losparse-lr")) / "run";
        const nlohmann::json j = job({{"method", "losparse"}, {"losparse", {{"rank_ratio", 0.2}, {"low_rank_only", true}}}}, 6);
        const std::string err = run(j, out);
        QVERIFY2(err.empty(), err.c_str());
        const nlohmann::json r = nlohmann::json::parse(readTextFile((out / "results.json").string()));
        QCOMPARE(r["method"]["sparse_parameters_kept"].get<int64_t>(), int64_t(0));
        QCOMPARE(r["method"]["budget_fraction"].get<double>(), r["method"]["low_rank_fraction"].get<double>());
        for (const auto &s : r["steps"])
            QCOMPARE(s["method"]["kept_fraction_of_s"].get<double>(), 0.0);
        // Trainable: everything but S (L and R replace each target's weight).
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        int64_t others = 0;
        for (const TensorInfo &t : model->tensors())
            if (!(t.layer >= 0 && t.shape.size() == 2))
                others += t.numel();
        QCOMPARE(r["plan"]["trainable_parameters"].get<int64_t>(),
                 others + r["method"]["low_rank_parameters"].get<int64_t>());
        // The step-0 evaluation is already the truncated model: far from the dense model's.
        const test::CliRun dense = test::runCli({"eval", "--model", QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin"),
                                                 "--text", QString::fromStdString(test::dataDir() + "/text/tinystories-excerpt.txt"),
                                                 "--seq-len", QString::number(kSeq), "--max-tokens",
                                                 QString::number(kSeq * kEvalWindows), "--device", "cpu", "--json"});
        QVERIFY2(dense.exitCode == 0, dense.err.c_str());
        QVERIFY(r["evals"][0]["eval_loss"].get<double>() > nlohmann::json::parse(dense.out)["mean_nll"].get<double>() + 0.5);
        exportEvaluatesLikeTheRun(out);
    }

    void recovery() {
        const fs::path root = test::tempDir("ft-recovery");
        nlohmann::json j = job({{"method", "recovery"}, {"recovery", {{"sparsity", 0.6}}}}, 8);
        j["output"]["gguf"] = "f32"; // and a GGUF for llama.cpp with the same weights
        const std::string err = run(j, root / "run");
        QVERIFY2(err.empty(), err.c_str());
        const nlohmann::json r = nlohmann::json::parse(readTextFile((root / "run" / "results.json").string()));
        QCOMPARE(r["method"]["requested_sparsity"].get<double>(), 0.6);
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        const auto tensors = test::readReference((root / "run" / "model" / "model.safetensors").string());
        int64_t targets = 0, changed = 0;
        for (const TensorInfo &t : model->tensors()) {
            if (t.layer < 0 || t.shape.size() != 2)
                continue;
            ++targets;
            const std::vector<float> before = model->loadFloat(t), &after = tensors.at(t.name).f32;
            train::Matrix<float> magnitudes(t.shape[0], t.shape[1]);
            for (int64_t i = 0; i < magnitudes.size(); ++i)
                magnitudes.data()[i] = std::abs(before[size_t(i)]);
            // Eigen's storage order is the safetensors row-major order for these matrices (train::Matrix).
            const std::vector<uint8_t> mask = train::pruneSmallestMask<float>(magnitudes, 0.6);
            for (size_t i = 0; i < mask.size(); ++i) {
                QVERIFY2((after[i] == 0.0f) == !mask[i], qPrintable(QString::fromStdString(t.name) + " " + QString::number(i)));
                changed += mask[i] && after[i] != before[i];
            }
        }
        QCOMPARE(r["method"]["linears"].get<int64_t>(), targets);
        QVERIFY(changed > 0); // the kept weights trained
        QCOMPARE(r["gguf_file"].get<std::string>(), (root / "run" / "model.gguf").string());
        auto gguf = openModel((root / "run" / "model.gguf").string());
        QCOMPARE(gguf->metadata["lathe.method"].get<std::string>(), std::string("recovery"));
        for (const TensorInfo &t : model->tensors())
            QVERIFY2(gguf->loadFloat(t.name) == tensors.at(t.name).f32, t.name.c_str());
        // Reopened, the sparsity view says how much of each matrix the export holds as zeros.
        MatrixScoresRequest req;
        req.model = std::shared_ptr<const Model>(openModel((root / "run" / "model").string()));
        req.tensor = "model.layers.1.mlp.down_proj.weight";
        const MatrixScores ms = computeMatrixScores(req);
        QVERIFY(ms.error.empty());
        QCOMPARE(ms.loadedZeros, std::floor(0.6 * double(ms.rows * ms.cols)) / double(ms.rows * ms.cols));
        QVERIFY(fs::exists(root / "run" / "run.h5") || !sparseArchiveAvailable());
        exportEvaluatesLikeTheRun(root / "run");
        // A pruned model fine-tuned at sparsity 0 keeps its own zeros.
        nlohmann::json again = job({{"method", "recovery"}, {"recovery", {{"sparsity", 0.0}}}}, 4);
        again["model"] = (root / "run" / "model").string();
        const std::string err2 = run(again, root / "again");
        QVERIFY2(err2.empty(), err2.c_str());
        const auto second = test::readReference((root / "again" / "model" / "model.safetensors").string());
        for (const TensorInfo &t : model->tensors())
            if (t.layer >= 0 && t.shape.size() == 2) {
                const std::vector<float> &a = tensors.at(t.name).f32, &b = second.at(t.name).f32;
                for (size_t i = 0; i < a.size(); ++i)
                    QVERIFY2((a[i] == 0.0f) == (b[i] == 0.0f), t.name.c_str());
            }
    }

    // SAT: the ladder (0.5 for half the steps, then 0.25, then 0), a first dense step, the gathered steps really
    // skip work (the MLP's gradient rows of skipped channels are zero: tst_linearkinds checks that), evaluation on
    // the whole network, and the export evaluates like the run.
    void sat() {
        const fs::path out = fs::path(test::tempDir("ft-sat")) / "run";
        const nlohmann::json j = job({{"method", "sat"}, {"sat", {{"omission", 0.5}, {"hold", 0.5}, {"rungs", 2}}}}, 16);
        const std::string err = run(j, out);
        QVERIFY2(err.empty(), err.c_str());
        const nlohmann::json r = nlohmann::json::parse(readTextFile((out / "results.json").string()));
        for (const auto &s : r["steps"]) {
            const int64_t t = s["step"].get<int64_t>() - 1;
            const double omission = s["method"]["omission"].get<double>();
            QCOMPARE(omission, t < 8 ? 0.5 : t < 12 ? 0.25 : 0.0);
            // The top channels by activation norm leave out at most their count's share of the activation's
            // energy (the first step runs dense, and so does ω = 0).
            const double share = s["method"]["omitted_activation_share"].get<double>();
            if (t == 0 || omission == 0)
                QCOMPARE(share, 0.0);
            else
                QVERIFY2(share > 0 && share <= omission + 1e-9, std::to_string(share).c_str());
        }
        const TrainingSpec spec = TrainingSpec::fromJson(j);
        const auto preview = spec.method->schedule(spec.methodParams, 16);
        for (size_t i = 0; i < preview.values.size(); ++i)
            QCOMPARE(preview.values[i], r["steps"][i]["method"]["omission"].get<double>());
        exportEvaluatesLikeTheRun(out);
        // Magnitude scores run too, and a refused parameter names its key.
        nlohmann::json m = j;
        m["sat"]["scores"] = "magnitude";
        QVERIFY(run(m, fs::path(test::tempDir("ft-sat-mag")) / "run").empty());
        // Sampled selection: other channels, so other weights; the share stays a fraction.
        nlohmann::json sampled = j;
        sampled["sat"]["selection"] = "sample";
        const fs::path sampledOut = fs::path(test::tempDir("ft-sat-sample")) / "run";
        QVERIFY(run(sampled, sampledOut).empty());
        const nlohmann::json rs = nlohmann::json::parse(readTextFile((sampledOut / "results.json").string()));
        QCOMPARE(rs["method"]["selection"].get<std::string>(), std::string("sample"));
        for (const auto &s : rs["steps"]) {
            const double share = s["method"]["omitted_activation_share"].get<double>();
            QVERIFY2(share >= 0 && share < 1, std::to_string(share).c_str());
        }
        QVERIFY(readTextFile((sampledOut / "model" / "model.safetensors").string()) !=
                readTextFile((out / "model" / "model.safetensors").string()));
        m["sat"]["scores"] = "random";
        QVERIFY_THROWS_EXCEPTION(LatheError, TrainingSpec::fromJson(m));
    }

    // LoSparse's compact export (L, R, the kept rows of S and their index, with the shipped modelling code):
    // transformers loads it with trust_remote_code and gives the logits Lathe's engine gives for the merged weights,
    // and its KV cache, padded batches and generate() agree with its own full passes
    // (tests/support/check_sliced_export.py); untied GQA, tied with q/k/v biases, and GPT-2's Conv1D.
    void loSparseCompactExportLoadsInTransformers_data() {
        QTest::addColumn<QString>("name");
        for (const char *n : {"tf-llama", "tf-qwen2", "tf-gpt2"})
            QTest::newRow(n) << QString(n);
    }
    void loSparseCompactExportLoadsInTransformers() {
        QFETCH(QString, name);
        const std::string path = test::fixturesDir() + "/" + name.toStdString();
        auto model = openModel(path);
        train::CausalLm<float> lm(*model);
        int n = 0;
        for (const auto &slot : lm.linears()) {
            if (n++ % 2) // every other linear
                continue;
            lm.replaceLinear(slot.kind->weightName(), [](auto &ps, auto *w, auto *b) {
                auto k = std::make_unique<train::LowRankSparseLinear<float>>(ps, w, b, 2);
                std::vector<uint8_t> rows(size_t(k->outFeatures()), 1);
                for (size_t r = 0; r < rows.size(); r += 3)
                    rows[r] = 0;
                k->setRowMask(rows);
                return k;
            });
        }
        // Lathe's logits of the merged weights.
        auto merged = openModel(path);
        lm.forEachExportTensor([&](const std::string &t, const train::Matrix<float> &v) {
            std::vector<int64_t> shape = {v.rows()};
            if (v.cols() > 1)
                shape.push_back(v.cols());
            merged->setFloat(t, std::vector<float>(v.data(), v.data() + v.size()), shape);
        });
        const TokenBatch b = TokenBatch::random(merged->config.vocabSize, 2, 9, 10);
        Transformer engine(*merged);
        const Mat logits = engine.forward(b);
        const std::string dir = test::tempDir("losparse-export") + "/model";
        auto copy = openModel(path);
        HfWriteOptions o;
        o.dtype = DType::F32;
        exportLoSparseCompact(*copy, lm, dir, o);
        // The factors under the module paths; the row index as int64.
        auto file = MappedFile::open(dir + "/model.safetensors");
        const SafetensorsHeader h = parseSafetensorsHeader(file->data(), file->size(), dir);
        int factors = 0, indices = 0;
        for (const SafetensorsEntry &e : h.entries) {
            factors += e.name.find(".lowrank_left") != std::string::npos;
            indices += e.name.find(".sparse_index") != std::string::npos && e.dtype == DType::I64;
        }
        QVERIFY(factors > 0 && factors == (n + 1) / 2 && indices == factors);
        const QString python = QString::fromStdString(test::referencePython());
        if (python.isEmpty())
            QSKIP("no Python with transformers (packaging/make-reference-env.sh, or set LATHE_REFERENCE_ENV)");
        QCOMPARE(test::checkRemoteCodeExport(python, dir, logits, b, name), 0);
    }

    // SIGKILL at random moments and --resume: the same steps, evaluations and exported weights as an uninterrupted
    // run, with the method's state (masks, running scores, the schedule) restored from the checkpoint.
    void dryRunPlanCountsTheBuiltModel_data() {
        QTest::addColumn<QString>("model");
        QTest::addColumn<QString>("method");
        QTest::addColumn<QString>("trainable");
        const QStringList models = {"resources/demo/stories260K.bin", "tests/fixtures/tf-gpt2", "tests/fixtures/tf-opt",
                                    "tests/fixtures/tf-phi", "tests/fixtures/tf-qwen2"};
        const QStringList methods = {"{}", R"({"method": "losparse", "losparse": {"rank_ratio": 0.2}})",
                                     R"({"method": "losparse", "losparse": {"low_rank_only": true, "targets": "mlp|fc"}})",
                                     R"({"method": "pst", "pst": {"rank": 4, "mask_rank": 2}})",
                                     R"({"method": "sat"})", R"({"method": "recovery"})"};
        for (const QString &m : models)
            for (const QString &method : methods)
                for (const QString &trainable : {QString(".*"), QString("\\.0\\.")})
                    QTest::newRow(qPrintable(m.section('/', -1) + " " + method + " " + trainable)) << m << method << trainable;
    }
    void dryRunPlanCountsTheBuiltModel() {
        QFETCH(QString, model);
        QFETCH(QString, method);
        QFETCH(QString, trainable);
        nlohmann::json j = job(nlohmann::json::parse(method.toStdString()), 4);
        j["model"] = test::sourceDir() + "/" + model.toStdString();
        j["tokenizer"] = test::sourceDir() + "/resources/demo/tok512.bin"; // only the data's size matters here
        j["trainable"] = trainable.toStdString();
        const TrainingSpec spec = TrainingSpec::fromJson(j);
        const TrainingPlan plan = planTraining(spec);
        // The model as runTraining builds it: every parameter, the pattern's frozen, the method's kinds swapped in.
        auto m = openModel(spec.model);
        train::CausalLm<float> lm(*m);
        const unicode::NamePattern re(spec.trainable);
        for (train::Parameter<float> &p : lm.parameters())
            lm.parameters().setTrainable(p.name, re.search(p.name));
        if (spec.method)
            spec.method->startTraining(*m, spec.methodParams, spec.seed)->prepare(lm);
        QCOMPARE(plan.parameters, lm.parameters().count(false));
        QCOMPARE(plan.trainableParameters, lm.parameters().count(true));
        QCOMPARE(plan.gradientBytes, uint64_t(lm.parameters().count(true)) * 4);
    }

    // The training preflight (issue 19 item 3): one step of the job's model and method timed here, the run's time
    // by phase, memory from the plan, disk for the export and checkpoints; nothing created. A run that cannot fit
    // is refused by --estimate (exit 1) and by the run itself before it creates anything.
    void trainingPreflight_data() {
        QTest::addColumn<QString>("method");
        QTest::newRow("dense") << "{}";
        QTest::newRow("pst") << R"({"method": "pst", "pst": {"final_sparsity": 0.5}})";
        QTest::newRow("losparse") << R"({"method": "losparse"})";
    }
    void trainingPreflight() {
        QFETCH(QString, method);
        const fs::path root = test::tempDir("train-preflight");
        nlohmann::json j = job(nlohmann::json::parse(method.toStdString()), 20);
        j["output"]["dir"] = (root / "run").string();
        j["eval_every"] = 10;
        TrainingSpec spec = TrainingSpec::fromJson(j);
        const TrainingPreflight pf = preflightTraining(spec);
        QCOMPARE(pf.probe.seqLen, kSeq);
        QVERIFY(pf.probe.forwardSeconds > 0 && pf.probe.backwardSeconds > 0 && pf.probe.fixedSeconds > 0);
        const RunEstimate &e = pf.estimate;
        QStringList phases;
        for (const RunEstimate::Phase &p : e.phases)
            phases << QString::fromStdString(p.name);
        // Evaluations at 0, 10 and 20; checkpoints at 5, 10 and 15 (none at the end).
        const QStringList want = {"setup (weights, method)", "training steps of 2 x 64 tokens (x20)",
                                  "evaluation on 4 windows (x3)", "checkpoint (x3)", "export"};
        QCOMPARE(phases, want);
        // Each phase's seconds are per time; the total counts every time.
        double total = 0;
        for (const RunEstimate::Phase &p : e.phases)
            total += p.seconds * double(p.times);
        QCOMPARE(e.phases[1].times, int64_t(20));
        QVERIFY(std::abs(total - e.seconds) <= 1e-9 * e.seconds);
        QVERIFY(e.phases[1].duration().find(" each, ") != std::string::npos);
        QVERIFY(e.phases[0].duration().find("each") == std::string::npos);
        QCOMPARE(e.toJson()["phases"][1]["times"].get<int64_t>(), int64_t(20));
        QCOMPARE(e.hostBytes, kProcessBytes + pf.plan.totalBytes() + pf.plan.weightBytes);
        QCOMPARE(e.exportBytes, uint64_t(pf.plan.parameters) * 4);
        QVERIFY(e.seconds > 0 && e.refusal.empty());
        QVERIFY(!fs::exists(root / "run"));
        std::atomic<bool> cancel{true};
        QVERIFY(test::errorOf([&] { preflightTraining(spec, &cancel); }).find("cancelled") != std::string::npos);

        test::writeText((root / "job.json").string(), spec.toJson().dump());
        const test::CliRun r = test::runCli({"train", QString::fromStdString((root / "job.json").string()), "--estimate"});
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY2(r.out.find("estimate: about") != std::string::npos && r.out.find("probe ") != std::string::npos,
                 r.out.c_str());
        if (memAvailable() == 0)
            QSKIP("MemAvailable is unknown here: the refusal cannot be shown");
        spec.batch = 1'000'000; // activations beyond any machine's memory
        test::writeText((root / "huge.json").string(), spec.toJson().dump());
        const test::CliRun huge = test::runCli({"train", QString::fromStdString((root / "huge.json").string()), "--estimate"});
        QCOMPARE(huge.exitCode, 1);
        QVERIFY2(huge.out.find("does not fit: needs about") != std::string::npos, huge.out.c_str());
        const std::string err = test::errorOf([&] { runTraining(spec); });
        QVERIFY2(err.find("this run does not fit") != std::string::npos, err.c_str());
        QVERIFY(!fs::exists(root / "run"));
    }

    void resumeAfterSigkill_data() {
        QTest::addColumn<QString>("method");
        QTest::newRow("losparse") << R"({"method": "losparse", "losparse": {"delta_t": 2, "initial_warmup": 0.1, "final_warmup": 0.3}})";
        QTest::newRow("losparse official mask") << R"({"method": "losparse", "losparse": {"delta_t": 3, "mask": "official"}})";
        QTest::newRow("pst") << R"({"method": "pst", "pst": {"final_sparsity": 0.5}})";
        QTest::newRow("sat") << R"({"method": "sat", "sat": {"omission": 0.5, "hold": 0.5, "rungs": 2}})";
        QTest::newRow("sat sampled") << R"({"method": "sat", "sat": {"omission": 0.5, "hold": 0.5, "rungs": 2, "selection": "sample"}})";
        QTest::newRow("recovery") << R"({"method": "recovery", "recovery": {"sparsity": 0.5}})";
    }
    void resumeAfterSigkill() {
        QFETCH(QString, method);
        const fs::path root = test::tempDir("ft-resume");
        nlohmann::json j = job(nlohmann::json::parse(method.toStdString()), 24);
        j["eval_every"] = 8;
        const QString spec = QString::fromStdString((root / "job.json").string());
        test::writeText(spec.toStdString(), j.dump(2));
        QElapsedTimer clock;
        clock.start();
        const test::CliRun r0 = test::runCli({"train", spec, "--output", QString::fromStdString((root / "ref").string())});
        const qint64 total = clock.elapsed();
        QVERIFY2(r0.exitCode == 0, r0.err.c_str());
        auto stripped = [](const fs::path &dir) {
            nlohmann::json r = nlohmann::json::parse(readTextFile((dir / "results.json").string()));
            for (auto &s : r["steps"])
                s.erase("tokens_per_s");
            return std::make_tuple(r["steps"], r["evals"], r["method"]);
        };
        const auto want = stripped(root / "ref");
        const std::string wantModel = readTextFile((root / "ref" / "model" / "model.safetensors").string());
        std::mt19937 rng(7);
        int resumed = 0;
        for (int k = 0; k < 4; ++k) {
            const fs::path out = root / ("k" + std::to_string(k));
            // Kill points spread over the run, after the folder exists.
            const int delay = int(total * (k + 1) / 5 + std::uniform_int_distribution<qint64>(0, total / 10)(rng));
            test::runCliKilledAfter({"train", spec, "--output", QString::fromStdString(out.string())}, delay);
            const test::CliRun r = fs::exists(out / "spec.json")
                                       ? test::runCli({"train", "--resume", QString::fromStdString(out.string())})
                                       : test::runCli({"train", spec, "--resume", QString::fromStdString(out.string())});
            const std::string where = "kill at " + std::to_string(delay) + " ms: ";
            QVERIFY2(r.exitCode == 0, (where + r.err).c_str());
            QVERIFY2(stripped(out) == want, (where + "results").c_str());
            QVERIFY2(readTextFile((out / "model" / "model.safetensors").string()) == wantModel, (where + "model").c_str());
            resumed += readTextFile((out / "run.log").string()).find("resumed at step") != std::string::npos;
        }
        qInfo("%d of 4 runs resumed from a checkpoint (uninterrupted: %lld ms)", resumed, static_cast<long long>(total));
    }
};

QTEST_GUILESS_MAIN(TestFineTune)
#include "tst_finetune.moc"
