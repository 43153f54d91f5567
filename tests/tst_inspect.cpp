// `lathe-cli inspect` and the summary behind it: counts add up, JSON and text agree, errors are clear.

#include "analysis/modelsummary.h"
#include "clirun.h"
#include "io/modelloader.h"
#include "testsupport.h"

#include <QProcess>
#include <QTest>

#include <nlohmann/json.hpp>

#include <cstdlib>

using namespace lathe;

namespace {

using test::CliRun;
using test::runCli;

QString demo() { return QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin"); }

} // namespace

class TestInspect : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY2(std::getenv("LATHE_CLI"), "LATHE_CLI must point to lathe-cli (set by ctest)"); }
    void summaryCountsAddUp() {
        auto m = openModel(demo().toStdString());
        const auto s = summarizeModel(*m);
        const auto &p = s["parameters"];
        QCOMPARE(p["total"].get<int64_t>(), int64_t(260032));
        int64_t byRole = 0, byLayer = 0;
        for (auto &v : p["by_role"])
            byRole += v.get<int64_t>();
        for (auto &v : p["by_layer"])
            byLayer += v.get<int64_t>();
        QCOMPARE(byRole, int64_t(260032));
        // Everything outside the blocks: embedding (512 x 64) and the final norm (64).
        QCOMPARE(byLayer, int64_t(260032 - 512 * 64 - 64));
        QCOMPARE(p["by_layer"].size(), size_t(5));
        QCOMPARE(s["memory"]["fp32_bytes"].get<uint64_t>(), uint64_t(260032) * 4);
        QCOMPARE(s["memory"]["bf16_bytes"].get<uint64_t>(), uint64_t(260032) * 2);
        QCOMPARE(s["file_bytes"].get<uint64_t>(), uint64_t(1056540));
        QCOMPARE(s["dtypes"]["F32"]["tensors"].get<int>(), 47);
    }
    void cliJson() {
        const CliRun r = runCli({"inspect", demo(), "--json"});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["architecture"].get<std::string>(), std::string("LlamaForCausalLM"));
        QCOMPARE(j["config"]["num_kv_heads"].get<int>(), 4);
        QCOMPARE(j["parameters"]["total"].get<int64_t>(), int64_t(260032));
    }
    void cliText() {
        const CliRun r = runCli({"inspect", demo(), "--scan", "--device", "cpu"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(r.out.find("260.0K (260032)") != std::string::npos);
        QVERIFY(r.out.find("block 4") != std::string::npos);
        QVERIFY(r.out.find("all values finite") != std::string::npos);
    }
    void cliReportsNaN() {
        const QString bad = QString::fromStdString(test::sourceDir() + "/tests/data/bad/hf-nan-weights");
        const CliRun r = runCli({"inspect", bad, "--scan", "--json"});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["scan"]["non_finite"].size(), size_t(1));
        QCOMPARE(j["scan"]["non_finite"][0]["tensor"].get<std::string>(), std::string("model.layers.0.self_attn.q_proj.weight"));
        QVERIFY(r.err.find("model.layers.0.self_attn.q_proj.weight") != std::string::npos); // the warning on stderr
    }
    // The benchmark and GPU commands: bad arguments and a missing GPU give a message and exit 1, nothing else.
    void cliBenchAndGpuErrors() {
        CliRun r = runCli({"bench", "forward", "--shape", "no-such-model"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("unknown --shape") != std::string::npos && r.err.find("llama2-7b") != std::string::npos,
                 r.err.c_str());
        r = runCli({"bench", "slicegpt", "--shape", "tiny", "--samples", "4", "--seq-len", "32", "--sparsity", "1.5",
                    "--device", "cpu"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("--sparsity must be a number from 0 to 0.99") != std::string::npos, r.err.c_str());
        r = runCli({"bench", "slicegpt", "--shape", "tiny", "--samples", "4", "--seq-len", "32", "--device", "cpu",
                    "--json"});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QVERIFY(j["params_after"].get<int64_t>() < j["params_before"].get<int64_t>());
        r = runCli({"bench", "train", "--model", demo(), "--seq-len", "16", "--repeat", "1", "--device", "cpu",
                    "--json"});
        QCOMPARE(r.exitCode, 0);
        const auto t = nlohmann::json::parse(r.out.substr(r.out.rfind("{\"")));
        QVERIFY2(t["tokens_per_s"].get<double>() > 0 && t["gflop_per_step"].get<double>() > 0, r.out.c_str());
        if (runCli({"devices"}).out.find("backend  cuda") != std::string::npos)
            return; // a usable GPU: the refusals below do not apply
        r = runCli({"check-gpu"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("CUDA") != std::string::npos, r.err.c_str());
        const QString text = QString::fromStdString(test::sourceDir() + "/README.md");
        r = runCli({"eval", "--model", demo(), "--text", text, "--seq-len", "64", "--device", "cuda"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("CUDA") != std::string::npos && r.err.find("hint:") != std::string::npos, r.err.c_str());
        r = runCli({"bench", "train", "--model", demo(), "--seq-len", "16", "--device", "cuda"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.find("CUDA") != std::string::npos && r.err.find("hint:") != std::string::npos, r.err.c_str());
    }

    void cliErrors() {
        const QString bad = QString::fromStdString(test::sourceDir() + "/tests/data/bad/gguf-bad-version.gguf");
        CliRun r = runCli({"inspect", bad});
        QCOMPARE(r.exitCode, 1);
        QVERIFY(r.err.find("gguf-bad-version.gguf: unsupported GGUF version 99") != std::string::npos);
        QVERIFY(r.err.find("hint:") != std::string::npos);
        r = runCli({"inspect"});
        QCOMPARE(r.exitCode, 2);
        r = runCli({"frobnicate"});
        QCOMPARE(r.exitCode, 2);
        r = runCli({"inspect", demo(), "--device", "tpu", "--scan"});
        QCOMPARE(r.exitCode, 1);
    }
    void cliConvert() {
        const QString out = QString::fromStdString(test::tempDir("cli") + "/demo-hf");
        CliRun r = runCli({"convert", demo(), out, "--dtype", "bf16"});
        QCOMPARE(r.exitCode, 0);
        r = runCli({"inspect", out, "--json"});
        QCOMPARE(r.exitCode, 0);
        const auto j = nlohmann::json::parse(r.out);
        QCOMPARE(j["format"].get<std::string>(), std::string("hf-safetensors"));
        QCOMPARE(j["dtypes"]["BF16"]["parameters"].get<int64_t>(), int64_t(260032));
    }
};

QTEST_GUILESS_MAIN(TestInspect)
#include "tst_inspect.moc"
