// Tokenizers against the ids Hugging Face `tokenizers` / `transformers` and `sentencepiece` give for the same
// texts (tests/fixtures/make_tokenizer_references.py -> tokenizer-references.json).

#include "base/error.h"
#include "export/tokenizerexport.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "testsupport.h"
#include "tokenizers/scorebpe.h"
#include "tokenizers/tokenizer.h"

#include <nlohmann/json.hpp>
#include <QtTest/QtTest>

#include <QProcess>

#include <fstream>

using namespace lathe;
using nlohmann::json;

namespace {

json references() {
    std::ifstream in(test::fixturesDir() + "/tokenizer-references.json");
    return json::parse(in);
}

std::string idsString(const std::vector<int32_t> &ids) {
    std::string s;
    for (int32_t i : ids)
        s += std::to_string(i) + " ";
    return s;
}

// Every reference text: same ids; with specials where recorded; byte-level BPE and SentencePiece decode back.
void checkAgainst(const Tokenizer &tok, const std::string &name, bool lossless) {
    static const json refs = references();
    const json &texts = refs["texts"];
    const json &r = refs["tokenizers"][name];
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::string text = texts[i].get<std::string>();
        const auto want = r["ids"][i].get<std::vector<int32_t>>();
        const auto got = tok.encode(text);
        if (got != want)
            qWarning("%s text %zu:\n  got  %s\n  want %s", name.c_str(), i, idsString(got).c_str(),
                     idsString(want).c_str());
        QCOMPARE(got, want);
        if (r.contains("ids_with_special"))
            QCOMPARE(tok.encodeForModel(text), r["ids_with_special"][i].get<std::vector<int32_t>>());
        if (lossless)
            QCOMPARE(tok.decode(got), text);
    }
}

} // namespace


// Writes `model`'s tokenizer as Hugging Face files, reads tokenizer.json back with Lathe (same ids as the original
// with and without specials, same decode, on every reference text; and the ids committed for `reference` when
// given), then, when the reference environment is installed, has transformers' AutoTokenizer encode and decode them.
void checkExportedTokenizer(const Model &model, const char *tag, const char *reference) {
    const HfTokenizerFiles files = hfTokenizerFiles(model);
    QVERIFY2(files.files.size() == 2, files.note.c_str());
    const std::string dir = test::tempDir(tag);
    for (const auto &[name, text] : files.files)
        test::writeText(dir + "/" + name, text);
    auto original = loadTokenizer(model);
    auto exported = loadTokenizerFile(dir + "/tokenizer.json");
    if (reference)
        checkAgainst(*exported, reference, true);
    const json texts = references()["texts"];
    json c = {{"texts", texts}, {"ids", json::array()}, {"ids_with_special", json::array()}};
    for (const auto &t : texts) {
        const std::string text = t.get<std::string>();
        QCOMPARE(exported->encodeForModel(text), original->encodeForModel(text));
        QCOMPARE(exported->decode(exported->encode(text)), original->decode(original->encode(text)));
        c["ids"].push_back(original->encode(text));
        c["ids_with_special"].push_back(original->encodeForModel(text));
    }
    const QString python = QString::fromStdString(test::referencePython());
    if (python.isEmpty())
        QSKIP("no Python with transformers (packaging/make-reference-env.sh, or set LATHE_REFERENCE_ENV)");
    test::writeText(dir + "/case.json", c.dump());
    QProcess proc;
    proc.start(python, {QString::fromStdString(test::sourceDir() + "/tests/support/check_tokenizer_folder.py"),
                        QString::fromStdString(dir), QString::fromStdString(dir + "/case.json")});
    QVERIFY(proc.waitForFinished(120000));
    qInfo("transformers says %s", proc.readAllStandardOutput().trimmed().constData());
    if (proc.exitCode() != 0)
        qWarning("%s", proc.readAllStandardError().right(3000).constData());
    QCOMPARE(proc.exitCode(), 0);
}

class TestTokenizer : public QObject {
    Q_OBJECT

private slots:
    void byteLevelTokenizerJson() {
        for (const char *n : {"bpe-gpt2style", "bpe-llama3style"}) {
            auto tok = loadTokenizerFile(test::fixturesDir() + "/tokenizers/" + n + "/tokenizer.json");
            QVERIFY(tok->kind().find("tokenizer.json") != std::string::npos);
            checkAgainst(*tok, n, std::string(n) == "bpe-gpt2style"); // NFC makes the llama3 one lossy
        }
    }

    void wordPiece() {
        auto fromJson = loadTokenizerFile(test::fixturesDir() + "/tokenizers/wordpiece/tokenizer.json");
        checkAgainst(*fromJson, "wordpiece", false);
        auto fromTxt = loadTokenizerFile(test::fixturesDir() + "/tokenizers/wordpiece/vocab.txt");
        checkAgainst(*fromTxt, "wordpiece", false);
        QCOMPARE(fromTxt->decode(fromTxt->encodeForModel("Lily's cat, Tom!")), std::string("lily ' s cat , tom !"));
    }

    void sentencePieceLibrary() {
        auto tok = loadTokenizerFile(test::fixturesDir() + "/tokenizers/spm/spm.model");
        QVERIFY(tok->kind().find("SentencePiece") != std::string::npos);
        checkAgainst(*tok, "spm", false);
    }

    // The score BPE cuts a long text into stretches only where the vocabulary makes that exact: with a piece that
    // holds the space symbol past its start ("a▁b"), merges across spaces must still happen; without one, a long
    // text is cut before each space and around each newline and gives the ids of the uncut text.
    void scoreBpeCutsOnlyWhereExact() {
        ScoreBpeTokenizer::Spec spec;
        spec.kind = "test";
        spec.addDummyPrefix = false;
        const std::string sp = "\xE2\x96\x81"; // U+2581
        spec.pieces = {"<unk>", sp, "a", "b", "a" + sp, "a" + sp + "b", sp + "b"};
        spec.scores = {0, 0, 0, 0, -1, -2, -3};
        ScoreBpeTokenizer crossing(spec);
        QCOMPARE(crossing.encode("a b"), std::vector<int32_t>({5}));
        QCOMPARE(crossing.encode("a b a b"), std::vector<int32_t>({5, 1, 5}));
        spec.pieces = {"<unk>", sp, "a", "b", "aa", sp + "b", sp + "ba"};
        ScoreBpeTokenizer cutting(spec);
        std::string text;
        for (int i = 0; i < 2000; ++i)
            text += i % 3 ? "aa b " : "ba\nb";
        // The same vocabulary plus pieces the text never forms, which forbid both cuts: encodes the text whole.
        spec.pieces.push_back("z" + sp + "z");
        spec.pieces.push_back("z\nz");
        spec.scores.resize(spec.pieces.size(), -9.0f);
        ScoreBpeTokenizer whole(spec);
        const std::vector<int32_t> ids = cutting.encode(text);
        QVERIFY(ids.size() > 3000);
        QCOMPARE(ids, whole.encode(text));
    }

    // llama2.c's format holds the same vocabulary as spm.model: the score-driven BPE must give sentencepiece's ids.
    void llama2cFormatMatchesSentencePiece() {
        auto tok = loadTokenizerFile(test::fixturesDir() + "/tokenizers/spm/tok.bin");
        checkAgainst(*tok, "spm", false);
        QCOMPARE(tok->decode(tok->encode("Once upon a time, Lily  sang.")), std::string("Once upon a time, Lily  sang."));
    }

    void gpt2VocabMerges() {
        const std::string dir = test::dataDir() + "/tokenizers/gpt2";
        auto tok = loadTokenizerFile(dir + "/vocab.json");
        QCOMPARE(tok->vocabSize(), int64_t(50257));
        checkAgainst(*tok, "gpt2", true);
    }

    void smollm2Gguf() {
        const std::string path = test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
        if (!QFile::exists(QString::fromStdString(path)))
            QSKIP("SmolLM2 GGUF not in the model cache; run packaging/fetch-models.sh");
        auto model = openModel(path);
        auto tok = loadTokenizer(*model);
        QCOMPARE(tok->vocabSize(), int64_t(49152));
        checkAgainst(*tok, "smollm2-gguf", true);
    }

    // A GGUF's embedded vocabulary exported as tokenizer.json: Lathe reads it back to the same ids, and
    // transformers' AutoTokenizer (when the reference environment is installed) encodes and decodes as Lathe does.
    void smollm2GgufExportsTokenizerJson() {
        const std::string path = test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
        if (!QFile::exists(QString::fromStdString(path)))
            QSKIP("SmolLM2 GGUF not in the model cache; run packaging/fetch-models.sh");
        checkExportedTokenizer(*openModel(path), "gguf-tokenizer", "smollm2-gguf");
    }

    // The demo model's llama2.c tokenizer (SentencePiece-style, score-driven) exported as the tokenizer.json
    // transformers writes for Llama tokenizers: same round trip and the same check with transformers.
    void demoTokenizerExportsTokenizerJson() {
        checkExportedTokenizer(*openModel(test::sourceDir() + "/resources/demo/stories260K.bin"), "llama2c-tokenizer",
                               nullptr);
    }

    // The demo model's tok512.bin: encode/decode round trip and a known sentence start.
    void demoTokenizer() {
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        auto tok = loadTokenizer(*model);
        QCOMPARE(tok->vocabSize(), int64_t(512));
        const std::string text = "Once upon a time, there was a little girl named Lily.";
        const auto ids = tok->encodeForModel(text);
        QCOMPARE(ids.front(), 1);
        QVERIFY(ids.size() < text.size() / 2); // merges happened
        QCOMPARE(tok->decode(ids), text);
    }

    void badFiles() {
        const std::string dir = test::tempDir("badtok");
        test::writeText(dir + "/tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}");
        QVERIFY_THROWS_EXCEPTION(LatheError, loadTokenizerFile(dir + "/tokenizer.json"));
        test::writeText(dir + "/broken.json", "{not json");
        QVERIFY_THROWS_EXCEPTION(LatheError, loadTokenizerFile(dir + "/broken.json"));
        test::writeText(dir + "/t.bin", "\x10\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00");
        QVERIFY_THROWS_EXCEPTION(LatheError, loadTokenizerFile(dir + "/t.bin"));
        QVERIFY_THROWS_EXCEPTION(LatheError, loadTokenizerFile(dir + "/missing.json"));
        test::writeText(dir + "/x.model", "not a model");
        QVERIFY_THROWS_EXCEPTION(LatheError, loadTokenizerFile(dir + "/x.model"));

        // SentencePiece-style tokenizer.json variants Lathe does not implement are refused with the reason, not
        // tokenized differently from transformers.
        auto refused = [&](const std::string &json, const std::string &reason) {
            test::writeText(dir + "/sp.json", json);
            try {
                loadTokenizerFile(dir + "/sp.json");
                QFAIL(("accepted: " + json).c_str());
            } catch (const LatheError &e) {
                QVERIFY2(std::string(e.what()).find(reason) != std::string::npos, e.what());
            }
        };
        const std::string model =
            R"("model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 1}, "merges": []})";
        const std::string metaspace = R"("pre_tokenizer": {"type": "Metaspace", "replacement": "▁"})";
        refused("{" + model + R"(, "normalizer": {"type": "NFKC"}, )" + metaspace + "}", "normalizer 'NFKC'");
        refused("{" + model + "}", "without the ' ' -> U+2581 step");
        refused("{" + model + R"(, "pre_tokenizer": {"type": "Whitespace"}})", "pre-tokenizer 'Whitespace'");
        refused(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "byte fallback");
        // The accepted form of the same vocabulary loads.
        test::writeText(dir + "/sp.json", "{" + model + ", " + metaspace + "}");
        QVERIFY(loadTokenizerFile(dir + "/sp.json") != nullptr);
    }
};

QTEST_GUILESS_MAIN(TestTokenizer)
#include "tst_tokenizer.moc"
