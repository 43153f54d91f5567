// load -> write HF folder -> load gives identical tensors and config, for every reader; the writer is atomic
// (cancel leaves nothing), shards above the size limit, converts dtypes and refuses to overwrite by accident.

#include "base/halfconv.h"
#include "export/hfwriter.h"
#include "io/modelloader.h"
#include "testsupport.h"

#include <QFloat16>
#include <QTest>

#include <cstring>
#include <filesystem>
#include <fstream>

using namespace lathe;
namespace fs = std::filesystem;

namespace {

nlohmann::json comparableConfig(const Model &m) {
    nlohmann::json j = m.config.toHfJson();
    j.erase("torch_dtype");
    return j;
}

void compareModels(const Model &a, const Model &b) {
    QCOMPARE(comparableConfig(b).dump(), comparableConfig(a).dump());
    size_t n = 0;
    for (const auto &t : a.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        ++n;
        const TensorInfo *u = b.find(t.name);
        QVERIFY2(u, t.name.c_str());
        QCOMPARE(u->shape, t.shape);
        QCOMPARE(u->role, t.role);
        QCOMPARE(u->layer, t.layer);
        const auto va = a.loadFloat(t), vb = b.loadFloat(*u);
        QVERIFY2(va.size() == vb.size() && std::memcmp(va.data(), vb.data(), va.size() * 4) == 0, t.name.c_str());
        if (!isQuantized(t.dtype))
            QCOMPARE(u->dtype, t.dtype);
    }
    QCOMPARE(b.tensors().size(), n);
}

size_t countEntries(const fs::path &dir) {
    size_t n = 0;
    for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it)
        ++n;
    return n;
}

} // namespace

class TestRoundTrip : public QObject {
    Q_OBJECT
private slots:
    void roundTrip_data() {
        QTest::addColumn<QString>("source");
        QTest::addColumn<qulonglong>("shardBytes");
        QTest::addColumn<int>("expectShards");
        const QString fx = QString::fromStdString(test::fixturesDir());
        QTest::newRow("hf-llama") << fx + "/hf-llama" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("hf-llama-sharded") << fx + "/hf-llama" << qulonglong(100'000) << 4;
        QTest::newRow("hf-sharded") << fx + "/hf-sharded" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("hf-opt") << fx + "/hf-opt" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("hf-gpt2") << fx + "/hf-gpt2" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("hf-phi") << fx + "/hf-phi" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("hf-bert") << fx + "/hf-bert" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("gguf") << fx + "/tiny-llama.gguf" << qulonglong(5'000'000'000ull) << 1;
        QTest::newRow("llama2c") << QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin")
                                 << qulonglong(400'000) << 3;
        QTest::newRow("smollm2-gguf") << QString::fromStdString(test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf")
                                      << qulonglong(200'000'000) << 3;
    }
    void roundTrip() {
        QFETCH(QString, source);
        QFETCH(qulonglong, shardBytes);
        QFETCH(int, expectShards);
        if (!fs::exists(source.toStdString()))
            QSKIP(qPrintable("not found: " + source + " (run packaging/fetch-models.sh)"));
        auto a = openModel(source.toStdString());
        const std::string out = test::tempDir("rt") + "/model";
        HfWriteOptions opts;
        opts.maxShardBytes = shardBytes;
        const HfWriteResult r = writeHfFolder(*a, out, opts);
        int shards = 0;
        for (const auto &f : r.files)
            shards += f.ends_with(".safetensors");
        QCOMPARE(shards, expectShards);
        QCOMPARE(fs::exists(out + "/model.safetensors.index.json"), expectShards > 1);
        auto b = openModel(out);
        compareModels(*a, *b);
        if (a->tokenizer.kind == "llama2c")
            QVERIFY(fs::exists(out + "/tok512.bin"));
        fs::remove_all(fs::path(out).parent_path());
    }
    void convertToBf16() {
        auto a = openModel(test::fixturesDir() + "/hf-llama");
        const std::string out = test::tempDir("bf16") + "/model";
        HfWriteOptions opts;
        opts.dtype = DType::BF16;
        writeHfFolder(*a, out, opts);
        auto b = openModel(out);
        QCOMPARE(b->config.hf["torch_dtype"].get<std::string>(), std::string("bfloat16"));
        for (const auto &t : a->tensors()) {
            const TensorInfo *u = b->find(t.name);
            QCOMPARE(u->dtype, DType::BF16);
            const auto va = a->loadFloat(t), vb = b->loadFloat(*u);
            const auto bits = a->loadBf16(t), bitsBack = b->loadBf16(*u);
            QVERIFY(bits == bitsBack); // on-demand bf16 of the source equals the bf16 written
            for (size_t i = 0; i < va.size(); ++i)
                QCOMPARE(vb[i], bf16ToFloat(floatToBf16(va[i])));
        }
        fs::remove_all(fs::path(out).parent_path());
    }
    void cancelLeavesNothing() {
        auto a = openModel(test::fixturesDir() + "/hf-llama");
        const std::string parent = test::tempDir("cancel");
        const std::string out = parent + "/model";
        int calls = 0;
        bool threw = false;
        try {
            writeHfFolder(*a, out, {}, [&](const Progress &) { return ++calls < 5; });
        } catch (const CancelledError &) {
            threw = true;
        }
        QVERIFY(threw);
        QVERIFY(!fs::exists(out));
        QCOMPARE(countEntries(parent), size_t(0)); // no temporary folder left behind
        fs::remove_all(parent);
    }
    void overwriteRules() {
        auto a = openModel(test::fixturesDir() + "/hf-opt");
        const std::string parent = test::tempDir("overwrite");
        const std::string out = parent + "/model";
        writeHfFolder(*a, out);
        QVERIFY_THROWS_EXCEPTION(LatheError, writeHfFolder(*a, out));
        HfWriteOptions opts;
        opts.overwrite = true;
        writeHfFolder(*a, out, opts);
        QCOMPARE(countEntries(parent), size_t(1));
        // Writing over the model's own source is refused even with overwrite.
        auto b = openModel(out);
        QVERIFY_THROWS_EXCEPTION(LatheError, writeHfFolder(*b, out, opts));
        QVERIFY(fs::exists(out + "/model.safetensors"));
        // Only F32/F16/BF16 are written.
        opts.dtype = DType::Q4_0;
        QVERIFY_THROWS_EXCEPTION(LatheError, writeHfFolder(*a, parent + "/q", opts));
        fs::remove_all(parent);
    }
    void headerIsAlignedAndReadableMetadata() {
        auto a = openModel(test::fixturesDir() + "/hf-gpt2");
        const std::string out = test::tempDir("hdr") + "/model";
        writeHfFolder(*a, out);
        std::ifstream in(out + "/model.safetensors", std::ios::binary);
        uint64_t n = 0;
        in.read(reinterpret_cast<char *>(&n), 8);
        QCOMPARE(n % 8, uint64_t(0));
        std::string header(n, '\0');
        in.read(header.data(), std::streamsize(n));
        const auto j = nlohmann::json::parse(header);
        QCOMPARE(j["__metadata__"]["format"].get<std::string>(), std::string("pt"));
        // GPT-2 is written back in its Conv1D layout under its original names.
        QCOMPARE(j["h.0.attn.c_attn.weight"]["shape"], nlohmann::json({32, 96}));
        QVERIFY(!j.contains("h.0.attn.bias")); // buffers are not written
        fs::remove_all(fs::path(out).parent_path());
    }
};

QTEST_GUILESS_MAIN(TestRoundTrip)
#include "tst_roundtrip.moc"
