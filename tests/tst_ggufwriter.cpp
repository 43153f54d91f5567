// GGUF export: the layout llama.cpp reads (names, q/k permutation, types, hyperparameters) checked against a
// file gguf-py wrote; every decoder family read back with the same logits as transformers (F32) or within the
// storage type's rounding (F16, Q8_0); pruned zeros survive Q8_0; tokenizers written so that they encode as the
// original does; refusals (sliced, OPT, no tokenizer) and the overwrite rules.

#include "base/mappedfile.h"
#include "engine/transformer.h"
#include "export/ggufwriter.h"
#include "export/tokenizerexport.h"
#include "io/ggufparser.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "numeric/dequantize.h"
#include "clirun.h"
#include "referencefile.h"
#include "testsupport.h"
#include "tokenizers/sentencepiecetokenizer.h"

#include <QProcess>
#include <QTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace lathe;
namespace fs = std::filesystem;

namespace {

// A SentencePiece-style GGUF vocabulary of `vocab` pieces for a fixture model that has no tokenizer.
void attachVocabulary(Model &m) {
    nlohmann::json tokens = nlohmann::json::array(), scores = nlohmann::json::array(), types = nlohmann::json::array();
    for (int64_t i = 0; i < m.config.vocabSize; ++i) {
        tokens.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "\xE2\x96\x81t" + std::to_string(i));
        scores.push_back(-float(i));
        types.push_back(i == 0 ? 2 : i < 3 ? 3 : 1);
    }
    m.metadata["tokenizer.ggml.model"] = "llama";
    m.metadata["tokenizer.ggml.tokens"] = tokens;
    m.metadata["tokenizer.ggml.scores"] = scores;
    m.metadata["tokenizer.ggml.token_type"] = types;
    m.metadata["tokenizer.ggml.bos_token_id"] = 1;
    m.tokenizer.kind = "gguf";
}

std::vector<float> tensorValues(const uint8_t *base, const GgufTensor &t) {
    uint64_t n = 1;
    for (uint64_t d : t.dims)
        n *= d;
    std::vector<float> v(n);
    dequantizeCpu(t.dtype, base + t.offset, n, v.data());
    return v;
}

} // namespace

class TestGgufWriter : public QObject {
    Q_OBJECT
private slots:
    // gguf-py wrote tiny-llama.gguf with llama.cpp's converter conventions; Lathe's F32 export of it must hold the
    // same values under the same names, shapes and hyperparameters (the q/k rows permuted back exactly).
    void layoutMatchesGgufPy() {
        const std::string src = test::fixturesDir() + "/tiny-llama.gguf";
        auto m = openModel(src);
        const std::string out = test::tempDir("gguf") + "/tiny.gguf";
        GgufWriteOptions o;
        o.dtype = DType::F32;
        const GgufWriteResult r = writeGgufFile(*m, out, o);
        QCOMPARE(r.architecture, std::string("llama"));
        auto a = MappedFile::open(src), b = MappedFile::open(out);
        const GgufFile ref = parseGguf(a->data(), a->size(), src), got = parseGguf(b->data(), b->size(), out);
        QCOMPARE(got.version, 3u);
        QCOMPARE(got.tensors.size(), ref.tensors.size());
        for (const GgufTensor &t : ref.tensors) {
            const auto it = std::find_if(got.tensors.begin(), got.tensors.end(), [&](auto &g) { return g.name == t.name; });
            QVERIFY2(it != got.tensors.end(), t.name.c_str());
            QCOMPARE(it->dims, t.dims);
            QCOMPARE(it->dtype, t.dims.size() == 1 ? DType::F32 : DType::F32);
            QVERIFY2(tensorValues(b->data(), *it) == tensorValues(a->data(), t), t.name.c_str());
        }
        for (const char *k : {"general.architecture", "llama.embedding_length", "llama.feed_forward_length",
                              "llama.block_count", "llama.attention.head_count", "llama.attention.head_count_kv",
                              "llama.context_length", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
                              "tokenizer.ggml.bos_token_id"})
            QVERIFY2(got.metadata.contains(k) && got.metadata[k] == ref.metadata[k], k);
        QCOMPARE(got.metadata["general.file_type"].get<int>(), 0);
        QVERIFY(isLatheGguf(out));
        QVERIFY(!isLatheGguf(src));
    }

    // Every decoder family llama.cpp runs: exported, read back, and the logits compared with transformers'.
    void familiesRoundTrip_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("arch");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<double>("tolerance");
        for (const auto &[n, a] : {std::pair{"llama", "llama"}, {"qwen2", "qwen2"}, {"gpt2", "gpt2"}, {"phi", "phi2"}}) {
            QTest::newRow((std::string(n) + "-f32").c_str()) << n << a << "f32" << 1e-4;
            QTest::newRow((std::string(n) + "-f16").c_str()) << n << a << "f16" << 2e-3;
            QTest::newRow((std::string(n) + "-q8_0").c_str()) << n << a << "q8_0" << 3e-2;
        }
    }
    void familiesRoundTrip() {
        QFETCH(QString, name);
        QFETCH(QString, arch);
        QFETCH(QString, dtype);
        QFETCH(double, tolerance);
        const std::string dir = test::fixturesDir() + "/tf-" + name.toStdString();
        auto m = openModel(dir);
        attachVocabulary(*m);
        const std::string out = test::tempDir("gguf") + "/m.gguf";
        GgufWriteOptions o;
        o.dtype = *dtypeFromName(dtype.toStdString());
        const GgufWriteResult r = writeGgufFile(*m, out, o);
        QCOMPARE(QString::fromStdString(r.architecture), arch);
        QCOMPARE(r.bytes, uint64_t(fs::file_size(out)));
        auto back = openModel(out);
        const ModelConfig &c = m->config, &d = back->config;
        QCOMPARE(d.family, c.family);
        QCOMPARE(d.hiddenSize, c.hiddenSize);
        QCOMPARE(d.numKvHeads, c.numKvHeads);
        QCOMPARE(d.headDim, c.headDim);
        QCOMPARE(d.tiedEmbeddings, c.tiedEmbeddings);
        QCOMPARE(float(d.normEps), float(c.normEps));
        QCOMPARE(d.partialRotaryFactor, c.partialRotaryFactor);
        for (const TensorInfo &t : m->tensors()) {
            const TensorInfo *u = back->find(t.name);
            QVERIFY2(u && u->shape == t.shape, t.name.c_str());
            if (dtype == "f32")
                QVERIFY2(back->loadFloat(*u) == m->loadFloat(t), t.name.c_str());
        }
        auto ref = test::readReference(dir + "/reference.safetensors");
        const auto &ids = ref.at("input_ids");
        TokenBatch batch;
        batch.batch = ids.dim(0);
        batch.seq = ids.dim(1);
        batch.tokens = ids.i32;
        Mat want(batch.batch * batch.seq, c.vocabSize);
        std::memcpy(want.data(), ref.at("logits").f32.data(), size_t(want.size()) * 4);
        Transformer t(*back);
        const double err = relativeMaxError(t.forward(batch), want);
        qInfo("%s %s: relative max error %.3g against transformers", qPrintable(name), qPrintable(dtype), err);
        QVERIFY2(err <= tolerance, qPrintable(QString::number(err)));
        fs::remove_all(fs::path(out).parent_path());
    }

    // Outside Lathe: gguf-py parses the file (names in llama.cpp's layout, the value types llama.cpp checks) and
    // transformers' GGUF loader (its own dequantization and q/k unpermutation) gives the logits Lathe gives for
    // the same file (tests/support/check_gguf_export.py).
    void readByGgufPyAndTransformers_data() {
        QTest::addColumn<QString>("source");
        QTest::addColumn<QString>("dtype");
        const QString fx = QString::fromStdString(test::fixturesDir());
        for (const char *n : {"llama", "qwen2", "gpt2", "phi"})
            for (const char *t : {"f32", "q8_0"})
                QTest::newRow((std::string(n) + "-" + t).c_str()) << fx + "/tf-" + n << t;
        QTest::newRow("demo-f16") << QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin") << "f16";
    }
    void readByGgufPyAndTransformers() {
        QFETCH(QString, source);
        QFETCH(QString, dtype);
        const QString python = QString::fromStdString(test::referencePython());
        if (python.isEmpty())
            QSKIP("no Python with transformers and gguf (packaging/make-reference-env.sh, or set LATHE_REFERENCE_ENV)");
        auto m = openModel(source.toStdString());
        if (m->tokenizer.kind.empty())
            attachVocabulary(*m);
        const std::string dir = test::tempDir("ggufpy"), out = dir + "/model.gguf";
        GgufWriteOptions o;
        o.dtype = *dtypeFromName(dtype.toStdString());
        writeGgufFile(*m, out, o);
        auto back = openModel(out);
        const TokenBatch batch = TokenBatch::random(m->config.vocabSize, 2, 7, 11);
        const Mat logits = Transformer(*back).forward(batch);
        nlohmann::json c = {{"logits", std::vector<float>(logits.data(), logits.data() + logits.size())},
                            {"tolerance", 1e-4}, {"input_ids", nlohmann::json::array()}};
        for (int64_t i = 0; i < batch.batch; ++i)
            c["input_ids"].push_back(
                std::vector<int32_t>(batch.tokens.begin() + i * batch.seq, batch.tokens.begin() + (i + 1) * batch.seq));
        test::writeText(dir + "/case.json", c.dump());
        QProcess proc;
        proc.start(python, {QString::fromStdString(test::sourceDir() + "/tests/support/check_gguf_export.py"),
                            QString::fromStdString(out), QString::fromStdString(dir + "/case.json")});
        QVERIFY(proc.waitForFinished(240000));
        const QByteArray said = proc.readAllStandardOutput().trimmed();
        qInfo("%s", said.constData());
        if (proc.exitCode() != 0)
            qWarning("%s", proc.readAllStandardError().right(3000).constData());
        QCOMPARE(proc.exitCode(), 0);
        fs::remove_all(dir);
    }

    // Q8_0 keeps a pruned model's zeros exactly (a block's zeros quantize to 0 whatever its scale).
    void q8KeepsZeros() {
        auto m = openModel(test::fixturesDir() + "/tf-llama");
        attachVocabulary(*m);
        const std::string name = "model.layers.0.mlp.up_proj.weight";
        std::vector<float> w = m->loadFloat(name);
        for (size_t i = 0; i < w.size(); i += 2)
            w[i] = 0.0f;
        m->setFloat(name, w, m->find(name)->shape);
        const std::string out = test::tempDir("gguf") + "/p.gguf";
        GgufWriteOptions o;
        o.dtype = DType::Q8_0;
        writeGgufFile(*m, out, o);
        auto back = openModel(out);
        QCOMPARE(back->find(name)->dtype, DType::Q8_0);
        const std::vector<float> v = back->loadFloat(name);
        for (size_t i = 0; i < v.size(); ++i)
            QVERIFY(i % 2 == 1 || v[i] == 0.0f);
        fs::remove_all(fs::path(out).parent_path());
    }

    // The demo (llama2.c: its tokenizer.bin becomes a "llama" vocabulary) gives the same ids and logits from
    // the GGUF, and rows that are not a multiple of 32 stay F16 in a Q8_0 export, with a note.
    void demoModel() {
        const std::string src = test::sourceDir() + "/resources/demo/stories260K.bin";
        auto m = openModel(src);
        const std::string out = test::tempDir("gguf") + "/demo.gguf";
        GgufWriteOptions o;
        o.dtype = DType::F32;
        writeGgufFile(*m, out, o);
        auto back = openModel(out);
        const std::string text = "Once upon a time, there was a little girl named Lily. She said: \"Wow!\"\n\nThe end.";
        const auto ids = loadTokenizer(*m)->encodeForModel(text);
        QCOMPARE(loadTokenizer(*back)->encodeForModel(text), ids);
        Transformer ta(*m), tb(*back);
        const TokenBatch batch = TokenBatch::single(ids);
        QVERIFY(ta.forward(batch) == tb.forward(batch));
        o.dtype = DType::Q8_0;
        o.overwrite = true;
        const GgufWriteResult r = writeGgufFile(*m, out, o);
        QCOMPARE(r.notes.size(), size_t(5)); // down_proj: 172 columns
        QCOMPARE(openModel(out)->find("model.layers.0.mlp.down_proj.weight")->dtype, DType::F16);
        QCOMPARE(openModel(out)->find("model.layers.0.mlp.up_proj.weight")->dtype, DType::Q8_0);
        fs::remove_all(fs::path(out).parent_path());
    }

    // Tokenizers written into the GGUF encode as the originals do (read back by Lathe's GGUF tokenizer, which
    // follows llama.cpp's: tests/tst_tokenizer).
    void tokenizers_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("pre"); // "refused": no llama.cpp pre-tokenizer splits as this one does
        const QString fx = QString::fromStdString(test::fixturesDir() + "/tokenizers");
        QTest::newRow("gpt2-style") << fx + "/bpe-gpt2style/tokenizer.json" << "hf-json" << "gpt-2";
        // Digits + the Llama-3 regex + NFC: a combination llama.cpp has no name for.
        QTest::newRow("digits-llama3-nfc") << fx + "/bpe-llama3style/tokenizer.json" << "hf-json" << "refused";
        QTest::newRow("llama2c") << fx + "/spm/tok.bin" << "llama2c" << "";
        QTest::newRow("sentencepiece") << fx + "/spm/spm.model" << "sentencepiece" << "";
        // SmolLM2's vocabulary as the tokenizer.json Lathe writes for it (49,152 tokens, pre "smollm").
        QTest::newRow("smollm2") << QString::fromStdString(test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf")
                                 << "hf-json" << "smollm";
    }
    void tokenizers() {
        QFETCH(QString, file);
        QFETCH(QString, kind);
        QFETCH(QString, pre);
        if (kind == "sentencepiece" && !SentencePieceTokenizer::available())
            QSKIP("built without sentencepiece");
        if (!fs::exists(file.toStdString()))
            QSKIP(qPrintable("not found: " + file + " (run packaging/fetch-models.sh)"));
        const std::string dir = test::tempDir("gguftok");
        std::string path = file.toStdString();
        if (kind == "sentencepiece") { // the loader looks for tokenizer.model
            fs::copy_file(path, dir + "/tokenizer.model");
            path = dir + "/tokenizer.model";
        } else if (path.ends_with(".gguf")) {
            const HfTokenizerFiles hf = hfTokenizerFiles(*openModel(path));
            QVERIFY(!hf.files.empty());
            test::writeText(dir + "/tokenizer.json", hf.files[0].second);
            path = dir + "/tokenizer.json";
        }
        Model m;
        m.sourcePath = path;
        m.tokenizer = {kind.toStdString(), {path}};
        m.config.vocabSize = 400; // llama2.c's tokenizer.bin is read for the model's vocabulary size
        auto tok = loadTokenizer(m);
        if (kind != "llama2c")
            m.config.vocabSize = tok->vocabSize() + 3; // padded, as llama.cpp's converter pads
        const GgufTokenizerMetadata meta = ggufTokenizerMetadata(m);
        fs::remove_all(dir);
        if (pre == "refused") {
            QVERIFY(meta.note.find("pre-tokenizer") != std::string::npos);
            return;
        }
        QVERIFY2(meta.note.empty(), meta.note.c_str());
        QCOMPARE(QString::fromStdString(meta.keys.value("tokenizer.ggml.pre", "")), pre);
        QCOMPARE(int64_t(meta.keys["tokenizer.ggml.tokens"].size()), m.config.vocabSize);
        if (kind != "llama2c")
            QCOMPARE(meta.keys["tokenizer.ggml.token_type"].back().get<int>(), 5);
        Model g;
        g.sourcePath = "exported.gguf";
        g.tokenizer.kind = "gguf";
        g.metadata = meta.keys;
        auto back = loadTokenizer(g);
        QCOMPARE(back->bos, tok->bos);
        QCOMPARE(back->eos, tok->eos);
        QCOMPARE(back->addBos, tok->addBos);
        for (const char *text : {"Hello world, it's 2024!", "  two  spaces\nand a newline\t tab",
                                 "caf\xC3\xA9 \xE2\x82\xAC 12345", "The quick brown fox jumps over the lazy dog."})
            QCOMPARE(back->encodeForModel(text), tok->encodeForModel(text));
        std::ifstream in(test::dataDir() + "/text/tinystories-excerpt.txt", std::ios::binary);
        const std::string story((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        QVERIFY(story.size() > 1000);
        QCOMPARE(back->encodeForModel(story), tok->encodeForModel(story));
    }

    // lathe-cli export: GGUF by the file name or --format, the type named, refusals with the reason and exit 1.
    void cli() {
        const std::string dir = test::tempDir("gguf-cli");
        const QString demo = QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin");
        const QString out = QString::fromStdString(dir + "/demo.gguf");
        test::CliRun r = test::runCli({"export", demo, out, "--dtype", "q8_0"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(QString::fromStdString(r.out).contains("GGUF (llama)"));
        QVERIFY(QString::fromStdString(r.out).contains("not a multiple of Q8_0's 32"));
        r = test::runCli({"convert", demo, QString::fromStdString(dir + "/plain"), "--format", "gguf"});
        QCOMPARE(r.exitCode, 0);
        QCOMPARE(openModel(dir + "/plain")->find("model.layers.0.mlp.up_proj.weight")->dtype, DType::F16);
        r = test::runCli({"export", demo, out, "--dtype", "bf16", "--overwrite"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY(QString::fromStdString(r.err).contains("q8_0"));
        r = test::runCli({"export", QString::fromStdString(test::fixturesDir() + "/tf-opt"),
                          QString::fromStdString(dir + "/opt.gguf")});
        QCOMPARE(r.exitCode, 1);
        QVERIFY(QString::fromStdString(r.err).contains("cannot be written as GGUF"));
        QVERIFY(!fs::exists(dir + "/opt.gguf"));
        fs::remove_all(dir);
    }

    void refusals() {
        // OPT: no llama.cpp architecture.
        auto opt = openModel(test::fixturesDir() + "/tf-opt");
        attachVocabulary(*opt);
        QVERIFY(ggufExportBlocker(*opt)->find("OPT") != std::string::npos);
        const std::string dir = test::tempDir("gguf");
        const auto error = [](auto &&f) -> std::string {
            try {
                f();
            } catch (const LatheError &e) {
                return e.what();
            }
            return {};
        };
        QVERIFY(error([&] { writeGgufFile(*opt, dir + "/opt.gguf"); }).find("OPT") != std::string::npos);
        QVERIFY(!fs::exists(dir + "/opt.gguf"));
        // No tokenizer: llama.cpp needs the vocabulary.
        auto bare = openModel(test::fixturesDir() + "/tf-llama");
        QVERIFY(ggufExportBlocker(*bare)->find("vocabulary") != std::string::npos);
        // Shortcut matrices (a sliced model).
        auto sliced = openModel(test::fixturesDir() + "/tf-llama");
        attachVocabulary(*sliced);
        QVERIFY(!ggufExportBlocker(*sliced));
        sliced->setFloat(TensorRole::AttnShortcut, 0, false, std::vector<float>(32 * 32, 0.0f), {32, 32});
        QVERIFY(ggufExportBlocker(*sliced).has_value());
        // Overwrite: only a GGUF Lathe wrote, only when asked, never the source.
        auto m = openModel(test::fixturesDir() + "/tiny-llama.gguf");
        const std::string out = dir + "/out.gguf";
        test::writeText(out, "precious");
        GgufWriteOptions o;
        QVERIFY(error([&] { writeGgufFile(*m, out, o); }).find("exists") != std::string::npos);
        o.overwrite = true;
        QVERIFY(error([&] { writeGgufFile(*m, out, o); }).find("not a GGUF file Lathe wrote") != std::string::npos);
        fs::remove(out);
        writeGgufFile(*m, out, o);
        writeGgufFile(*m, out, o); // its own earlier export may be replaced
        const std::string copy = dir + "/source.gguf";
        fs::copy_file(test::fixturesDir() + "/tiny-llama.gguf", copy);
        auto fromCopy = openModel(copy);
        QVERIFY(error([&] { writeGgufFile(*fromCopy, copy, o); }).find("itself") != std::string::npos);
        QCOMPARE(fs::file_size(copy), fs::file_size(test::fixturesDir() + "/tiny-llama.gguf"));
        o.dtype = DType::BF16;
        QVERIFY(error([&] { writeGgufFile(*m, dir + "/bf16.gguf", o); }).find("BF16") != std::string::npos);
        // Nothing but the outputs is left in the folder: no temporaries.
        size_t entries = 0;
        for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it)
            ++entries;
        QCOMPARE(entries, size_t(2));
        fs::remove_all(dir);
    }
};

QTEST_GUILESS_MAIN(TestGgufWriter)
#include "tst_ggufwriter.moc"
