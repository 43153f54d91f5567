// Perplexity by the standard protocol against transformers' number, greedy generation of the demo model against
// transformers' greedy output, and the bad inputs of evaluation (short text, long windows, wrong tokenizer, NaN
// weights) through the library and lathe-cli.

#include "base/error.h"
#include "clirun.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "testsupport.h"
#include "tokenizers/tokenizer.h"

#include <nlohmann/json.hpp>
#include <QtTest/QtTest>

#include <fstream>
#include <sstream>

using namespace lathe;

namespace {

std::string readAll(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string demoPath() { return test::sourceDir() + "/resources/demo/stories260K.bin"; }

// Runs lathe-cli; returns exit code and stderr+stdout.
int runCli(const QStringList &args, QString *output) {
    const test::CliRun r = test::runCli(args);
    *output = QString::fromStdString(r.err + r.out);
    return r.exitCode;
}

} // namespace

class TestEvaluation : public QObject {
    Q_OBJECT

private slots:
    void datasetRows() {
        // rows "a", "", "b" -> "a\n" + "\n\n" + "" + "\n\n" + "b\n"
        QCOMPARE(joinDatasetRows("a\n\nb\n"), std::string("a\n\n\n\n\nb\n"));
        QCOMPARE(joinDatasetRows(""), std::string());
        QCOMPARE(joinDatasetRows("x"), std::string("x\n"));
    }

    // stories260K on the TinyStories excerpt, windows of 256: transformers' perplexity on the same token ids.
    void demoPerplexityMatchesTransformers() {
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        const auto ref = nlohmann::json::parse(readAll(test::fixturesDir() + "/perplexity-references.json"))
                             ["stories260k-tinystories-256"];
        auto model = openModel(demoPath());
        auto tok = loadTokenizer(*model);
        const auto ids = tok->encodeForModel(joinDatasetRows(readAll(text)));
        QCOMPARE(int64_t(ids.size()), ref["text_tokens"].get<int64_t>());
        Transformer t(*model);
        PerplexityParams p;
        p.seqLen = 256;
        const PerplexityResult r = evaluatePerplexity(t, ids, p);
        QCOMPARE(r.windows, ref["windows"].get<int64_t>());
        QCOMPARE(r.predictedTokens, r.windows * 255);
        const double want = ref["perplexity"].get<double>();
        qInfo("stories260K PPL %.6f (transformers %.6f), %.0f tokens/s", r.perplexity, want, r.tokensPerSecond);
        QVERIFY(std::fabs(r.perplexity - want) / want < 1e-5);
        // --max-tokens keeps whole windows only
        p.maxTokens = 1000;
        QCOMPARE(evaluatePerplexity(t, ids, p).windows, int64_t(3));
    }

    // Greedy decoding from BOS + "Once upon a time" gives transformers' greedy continuation, token for token.
    void demoGreedyGeneration() {
        const auto ref = nlohmann::json::parse(readAll(test::fixturesDir() + "/perplexity-references.json"));
        auto model = openModel(demoPath());
        auto tok = loadTokenizer(*model);
        Transformer t(*model);
        const auto prompt = tok->encodeForModel("Once upon a time");
        const auto out = generateGreedy(t, prompt, 40, tok->eos);
        const std::string text = tok->decode(out);
        qInfo("%s", text.c_str());
        QCOMPARE(out, ref["stories260k-greedy"]["ids"].get<std::vector<int32_t>>());
        QVERIFY(text.rfind("Once upon a time", 0) == 0);
    }

    void badInputs() {
        auto model = openModel(demoPath());
        Transformer t(*model);
        PerplexityParams p;
        p.seqLen = 64;
        try {
            evaluatePerplexity(t, std::vector<int32_t>(40, 5), p);
            QFAIL("short text accepted");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("fewer than one window") != std::string::npos);
        }
        p.seqLen = 4096;
        try {
            evaluatePerplexity(t, std::vector<int32_t>(5000, 5), p);
            QFAIL("window above the model's maximum accepted");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("above the model's maximum") != std::string::npos);
        }
        auto nan = openModel(test::sourceDir() + "/tests/data/bad/hf-nan-weights");
        Transformer tn(*nan);
        p.seqLen = 8;
        try {
            evaluatePerplexity(tn, std::vector<int32_t>(32, 3), p);
            QFAIL("NaN weights gave a perplexity");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("non-finite") != std::string::npos);
            QVERIFY(e.hint().find("--scan") != std::string::npos);
        }
    }

    void cliEval() {
        const std::string dir = test::tempDir("evalcli");
        test::writeText(dir + "/short.txt", "Once upon a time.\n");
        QString out;
        QCOMPARE(runCli({"eval", "--model", QString::fromStdString(demoPath()), "--text",
                         QString::fromStdString(dir + "/short.txt"), "--seq-len", "64"},
                        &out),
                 1);
        QVERIFY2(out.contains("fewer than one window"), qPrintable(out));
        QCOMPARE(runCli({"eval", "--model", QString::fromStdString(demoPath()), "--text",
                         QString::fromStdString(dir + "/short.txt"), "--seq-len", "100000"},
                        &out),
                 1);
        QVERIFY2(out.contains("above the model's maximum"), qPrintable(out));
        // A tokenizer with more tokens than the model has (GPT-2's 50,257 for a 512-token model).
        QCOMPARE(runCli({"eval", "--model", QString::fromStdString(demoPath()), "--text",
                         QString::fromStdString(dir + "/short.txt"), "--tokenizer",
                         QString::fromStdString(test::fixturesDir() + "/tokenizers/bpe-gpt2style/tokenizer.json")},
                        &out),
                 1);
        QVERIFY2(out.contains("more than the model's vocabulary"), qPrintable(out));
        QCOMPARE(runCli({"eval", "--model", QString::fromStdString(demoPath()), "--text",
                         QString::fromStdString(dir + "/short.txt"), "--device", "cuda"},
                        &out),
                 1);
        QVERIFY2(out.contains("--device cpu"), qPrintable(out));
        // A text long enough for two windows: JSON with the protocol's numbers.
        std::string longText;
        for (int i = 0; i < 40; ++i)
            longText += "Once upon a time, there was a little girl named Lily. She liked to play.\n";
        test::writeText(dir + "/long.txt", longText);
        QCOMPARE(runCli({"eval", "--model", QString::fromStdString(demoPath()), "--text",
                         QString::fromStdString(dir + "/long.txt"), "--seq-len", "128", "--json"},
                        &out),
                 0);
        const auto j = nlohmann::json::parse(out.split('\n', Qt::SkipEmptyParts).last().toStdString());
        QVERIFY(j["windows"].get<int>() >= 2);
        QVERIFY(j["perplexity"].get<double>() > 1.0 && j["perplexity"].get<double>() < 50.0);
    }

    void cliGenerate() {
        QString out;
        QCOMPARE(runCli({"generate", "--model", QString::fromStdString(demoPath()), "--prompt", "Once upon a time",
                         "--max-new", "20"},
                        &out),
                 0);
        QVERIFY2(out.contains("Once upon a time,"), qPrintable(out));
    }
};

QTEST_GUILESS_MAIN(TestEvaluation)
#include "tst_evaluation.moc"
