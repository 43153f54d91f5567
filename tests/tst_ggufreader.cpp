// GGUF reader: the tiny Llama written by gguf-py (Q8_0/Q4_0/F16/F32, llama.cpp's q/k permutation) must read back
// exactly as the HF-layout reference, and the real SmolLM2-135M GGUF must match gguf-py's dequantization.

#include "base/mappedfile.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "testsupport.h"

#include <QTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace lathe;

class TestGgufReader : public QObject {
    Q_OBJECT
private slots:
    void tinyLlamaMatchesReference() {
        auto m = openModel(test::fixturesDir() + "/tiny-llama.gguf");
        QCOMPARE(m->format, SourceFormat::Gguf);
        const ModelConfig &c = m->config;
        QCOMPARE(c.family, ArchFamily::Llama);
        QCOMPARE(c.hiddenSize, 64);
        QCOMPARE(c.intermediateSize, 96);
        QCOMPARE(c.numLayers, 2);
        QCOMPARE(c.numHeads, 4);
        QCOMPARE(c.numKvHeads, 2);
        QCOMPARE(c.vocabSize, 128);
        QCOMPARE(c.maxPositions, 256);
        QVERIFY(!c.tiedEmbeddings);
        QCOMPARE(c.hf["bos_token_id"].get<int>(), 1);
        QCOMPARE(m->tokenizer.kind, std::string("gguf"));
        QCOMPARE(m->metadata["tokenizer.ggml.tokens"].size(), size_t(128));

        const std::string refPath = test::fixturesDir() + "/tiny-llama.ref.safetensors";
        auto ref = MappedFile::open(refPath);
        const auto header = parseSafetensorsHeader(ref->data(), ref->size(), refPath);
        QCOMPARE(header.entries.size(), m->tensors().size());
        for (const auto &e : header.entries) {
            const TensorInfo *t = m->find(e.name);
            QVERIFY2(t, e.name.c_str());
            QCOMPARE(t->shape, e.shape);
            const std::vector<float> got = m->loadFloat(*t);
            QCOMPARE(got.size() * 4, size_t(e.end - e.begin));
            QVERIFY2(std::memcmp(got.data(), ref->data() + e.begin, got.size() * 4) == 0, e.name.c_str());
        }
        QCOMPARE(m->find("model.layers.0.self_attn.q_proj.weight")->transform, TensorTransform::RopeUnpermute);
    }
    void smollm2MatchesGgufPy() {
        const std::string path = test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
        if (!std::filesystem::exists(path))
            QSKIP("SmolLM2-135M GGUF not found; run packaging/fetch-models.sh to fetch it");
        auto m = openModel(path);
        QCOMPARE(m->config.hiddenSize, 576);
        QCOMPARE(m->config.numLayers, 30);
        QCOMPARE(m->config.numKvHeads, 3);
        QCOMPARE(m->config.vocabSize, 49152);
        QCOMPARE(m->config.ropeTheta, 100000.0);
        QVERIFY(m->config.tiedEmbeddings);
        QCOMPARE(m->parameterCount(), int64_t(134515008));
        std::ifstream in(test::fixturesDir() + "/smollm2-reference.json");
        const auto ref = nlohmann::json::parse(in);
        for (const auto &r : ref["tensors"]) {
            const std::string name = r["name"];
            const TensorInfo *t = m->find(name);
            QVERIFY2(t, name.c_str());
            QCOMPARE(t->sourceName, r["gguf_name"].get<std::string>());
            QCOMPARE(std::string(dtypeName(t->dtype)), r["type"].get<std::string>());
            QCOMPARE(t->shape, r["shape"].get<std::vector<int64_t>>());
            const std::vector<float> v = m->loadFloat(*t);
            double sum = 0, abs = 0;
            for (float x : v) {
                sum += x;
                abs += std::fabs(x);
            }
            QVERIFY2(std::fabs(abs - r["abs_sum"].get<double>()) <= 1e-9 * r["abs_sum"].get<double>(), name.c_str());
            QVERIFY2(std::fabs(sum - r["sum"].get<double>()) <= 1e-9 * r["abs_sum"].get<double>(), name.c_str());
            for (const auto &s : r["samples"])
                QCOMPARE(v[s[0].get<size_t>()], s[1].get<float>());
        }
    }
};

QTEST_GUILESS_MAIN(TestGgufReader)
#include "tst_ggufreader.moc"
