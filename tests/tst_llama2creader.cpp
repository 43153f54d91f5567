// llama2.c reader on the real stories260K model: dimensions, HF names, and the per-head row permutation that
// turns llama2.c's interleaved RoPE into HF's rotate-half order.

#include "io/modelloader.h"
#include "testsupport.h"

#include <QTest>

#include <cstring>
#include <filesystem>

using namespace lathe;

class TestLlama2cReader : public QObject {
    Q_OBJECT
private:
    std::string demo() const { return test::sourceDir() + "/resources/demo/stories260K.bin"; }
private slots:
    void demoModelConfig() {
        auto m = openModel(demo());
        QCOMPARE(m->format, SourceFormat::Llama2c);
        const ModelConfig &c = m->config;
        QCOMPARE(c.hiddenSize, 64);
        QCOMPARE(c.intermediateSize, 172);
        QCOMPARE(c.numLayers, 5);
        QCOMPARE(c.numHeads, 8);
        QCOMPARE(c.numKvHeads, 4);
        QCOMPARE(c.vocabSize, 512);
        QCOMPARE(c.maxPositions, 512);
        QVERIFY(c.tiedEmbeddings);
        QCOMPARE(m->tensors().size(), size_t(1 + 5 * 9 + 1));
        QCOMPARE(m->parameterCount(), int64_t(260032));
        QVERIFY(m->find(TensorRole::LmHead) == nullptr);
        QCOMPARE(m->tokenizer.kind, std::string("llama2c"));
        QVERIFY(m->warnings.empty());
    }
    void sharedDataCopyIsTheSame() {
        const std::string shared = test::sharedDataDir() + "/models/stories260K/stories260K.bin";
        if (!std::filesystem::exists(shared))
            QSKIP("../shared/data/models/stories260K not found");
        auto a = openModel(demo());
        auto b = openModel(shared);
        QCOMPARE(a->loadFloat("model.layers.4.mlp.down_proj.weight"), b->loadFloat("model.layers.4.mlp.down_proj.weight"));
    }
    void ropeRowsAreUnpermuted() {
        auto m = openModel(demo());
        for (const char *name : {"model.layers.2.self_attn.q_proj.weight", "model.layers.2.self_attn.k_proj.weight"}) {
            const TensorInfo *t = m->find(name);
            QVERIFY(t);
            QCOMPARE(t->transform, TensorTransform::RopeUnpermute);
            const int heads = t->transformHeads;
            QCOMPARE(heads, std::string(name).find("q_proj") != std::string::npos ? 8 : 4);
            const auto *raw = reinterpret_cast<const float *>(t->bytes());
            const std::vector<float> v = m->loadFloat(*t);
            const int64_t cols = t->shape[1], hd = t->shape[0] / heads, half = hd / 2;
            for (int h = 0; h < heads; ++h)
                for (int64_t i = 0; i < half; ++i)
                    for (int64_t j = 0; j < 2; ++j)
                        QVERIFY(std::memcmp(&v[size_t((h * hd + j * half + i) * cols)],
                                            &raw[(h * hd + 2 * i + j) * cols], size_t(cols) * 4) == 0);
        }
        // Other tensors are read as stored: the embedding starts right after the 28-byte header.
        const TensorInfo *emb = m->find(TensorRole::TokenEmbedding);
        QCOMPARE(emb->offset, uint64_t(28));
        QCOMPARE(emb->transform, TensorTransform::None);
    }
};

QTEST_GUILESS_MAIN(TestLlama2cReader)
#include "tst_llama2creader.moc"
