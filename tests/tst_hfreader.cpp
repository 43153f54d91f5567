// Hugging Face folders written by the `safetensors` Python package (make_fixtures.py): every family's names map to
// roles, GPT-2's Conv1D weights read as (out x in), shards match the single-file model, config keys are kept.

#include "base/bytestorage.h"
#include "export/hfwriter.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "testsupport.h"

#include <QTest>

#include <cstring>
#include <filesystem>
#include <sys/resource.h>

#include <nlohmann/json.hpp>

using namespace lathe;

namespace {
std::string fx(const char *name) { return test::fixturesDir() + "/" + name; }
} // namespace

class TestHfReader : public QObject {
    Q_OBJECT
private slots:
    void families_data() {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<int>("family");
        QTest::addColumn<int>("tensors");
        QTest::addColumn<qlonglong>("params");
        QTest::newRow("llama") << "hf-llama" << int(ArchFamily::Llama) << 21 << qlonglong(128 * 64 * 2 + 64 + 2 * (2 * 64 + 64 * 64 * 2 + 32 * 64 * 2 + 3 * 96 * 64));
        QTest::newRow("opt") << "hf-opt" << int(ArchFamily::Opt) << 36 << qlonglong(-1);
        QTest::newRow("gpt2") << "hf-gpt2" << int(ArchFamily::Gpt2) << 30 << qlonglong(-1);
        QTest::newRow("phi") << "hf-phi" << int(ArchFamily::Phi) << 33 << qlonglong(-1);
        QTest::newRow("bert") << "hf-bert" << int(ArchFamily::Bert) << 39 << qlonglong(-1);
    }
    void families() {
        QFETCH(QString, folder);
        QFETCH(int, family);
        QFETCH(int, tensors);
        QFETCH(qlonglong, params);
        auto m = openModel(fx(folder.toStdString().c_str()));
        QCOMPARE(int(m->config.family), family);
        QCOMPARE(int(m->tensors().size()), tensors);
        QCOMPARE(m->format, SourceFormat::HfFolder);
        if (params >= 0)
            QCOMPARE(qlonglong(m->parameterCount()), params);
        // Every tensor is classified: known role or an explicit buffer, never Unknown.
        for (const auto &t : m->tensors())
            QVERIFY2(t.role != TensorRole::Unknown, t.name.c_str());
        QVERIFY(m->warnings.empty());
        QVERIFY(m->find(TensorRole::TokenEmbedding) != nullptr);
        QCOMPARE(m->config.numLayers, 2);
    }
    // A tensor outside the family's layout is kept and named in a warning (once, with its name in the file).
    void unknownTensorIsWarnedAbout() {
        auto m = openModel(fx("hf-llama"));
        TensorInfo extra;
        extra.name = extra.sourceName = "model.extra_scale";
        extra.storage = std::make_shared<OwnedBytes>(std::vector<uint8_t>());
        m->addTensor(std::move(extra));
        m->setFloat("model.extra_scale", {1.0f, 2.0f}, {2});
        const std::string dir = test::tempDir("hf-unknown") + "/model";
        writeHfFolder(*m, dir);
        auto back = openModel(dir);
        QVERIFY(back->find("model.extra_scale"));
        int named = 0;
        for (const std::string &w : back->warnings)
            named += w.find("'model.extra_scale' is not part of the llama layout") != std::string::npos;
        QCOMPARE(named, 1);
    }
    void llamaDetails() {
        auto m = openModel(fx("hf-llama"));
        const ModelConfig &c = m->config;
        QCOMPARE(c.hiddenSize, 64);
        QCOMPARE(c.numKvHeads, 2);
        QCOMPARE(c.headDim, 16);
        QVERIFY(!c.tiedEmbeddings);
        QCOMPARE(c.hf["custom_key_kept"].get<int>(), 7);
        const TensorInfo *up = m->find("model.layers.0.mlp.up_proj.weight");
        QVERIFY(up);
        QCOMPARE(up->dtype, DType::F16);
        QCOMPARE(up->role, TensorRole::MlpUp);
        QCOMPARE(up->layer, 0);
        const TensorInfo *q = m->find(TensorRole::AttnQ, 1);
        QVERIFY(q);
        QCOMPARE(q->name, std::string("model.layers.1.self_attn.q_proj.weight"));
        QCOMPARE(q->shape, (std::vector<int64_t>{64, 64}));
        QCOMPARE(m->tokenizer.kind, std::string());
    }
    void shardedEqualsSingleFile() {
        auto one = openModel(fx("hf-llama"));
        auto sharded = openModel(fx("hf-sharded"));
        QCOMPARE(sharded->sourceFiles.size(), size_t(2));
        QCOMPARE(sharded->tensors().size(), one->tensors().size());
        for (const auto &t : one->tensors()) {
            const TensorInfo *s = sharded->find(t.name);
            QVERIFY2(s, t.name.c_str());
            QCOMPARE(s->shape, t.shape);
            QVERIFY(one->loadFloat(t) == sharded->loadFloat(*s));
        }
    }
    void gpt2Conv1DIsTransposed() {
        auto m = openModel(fx("hf-gpt2"));
        const TensorInfo *qkv = m->find("h.0.attn.c_attn.weight");
        QVERIFY(qkv);
        QCOMPARE(qkv->role, TensorRole::AttnQkv);
        QCOMPARE(qkv->shape, (std::vector<int64_t>{96, 32})); // (out x in); stored (32 x 96)
        QCOMPARE(qkv->transform, TensorTransform::Transpose);
        const std::vector<float> v = m->loadFloat(*qkv);
        const auto *raw = reinterpret_cast<const float *>(qkv->bytes());
        for (int r = 0; r < 96; ++r)
            for (int c = 0; c < 32; ++c)
                QCOMPARE(v[size_t(r * 32 + c)], raw[c * 96 + r]);
        QVERIFY(m->config.tiedEmbeddings);
        const TensorInfo *mask = m->find("h.0.attn.bias");
        QVERIFY(mask && mask->role == TensorRole::Buffer);
        QCOMPARE(m->find("h.1.mlp.c_proj.weight")->shape, (std::vector<int64_t>{32, 64}));
    }
    void phiHalfAndBias() {
        auto m = openModel(fx("hf-phi"));
        const TensorInfo *head = m->find(TensorRole::LmHead, -1, true);
        QVERIFY(head);
        QCOMPARE(head->shape, (std::vector<int64_t>{100}));
        QCOMPARE(m->find(TensorRole::AttnO, 1)->name, std::string("model.layers.1.self_attn.dense.weight"));
        QCOMPARE(m->find(TensorRole::AttnQ, 0)->dtype, DType::F16);
        QCOMPARE(m->config.partialRotaryFactor, 0.5);
    }
    void bertRoles() {
        auto m = openModel(fx("hf-bert"));
        QCOMPARE(m->find(TensorRole::TokenTypeEmbedding)->shape, (std::vector<int64_t>{2, 32}));
        QCOMPARE(m->find(TensorRole::AttnNorm, 1, true)->name, std::string("encoder.layer.1.attention.output.LayerNorm.bias"));
        QVERIFY(m->find(TensorRole::Pooler) != nullptr);
    }
    void multiGigabyteCheckpointOpensWithoutReading() {
        // An 8.2 GB checkpoint as a sparse file (no disk blocks): a vocabulary of 16M x 64 for embedding and head.
        // Opening and summarising it must touch only the header: resident memory stays flat.
        const std::string dir = test::tempDir("sparse");
        const int64_t vocab = 16'000'000, d = 64;
        std::string cfg = test::tinyLlamaConfig(d);
        const std::string key = "\"vocab_size\": 32";
        cfg.replace(cfg.find(key), key.size(), "\"vocab_size\": 16000000");
        test::writeText(dir + "/config.json", cfg);
        nlohmann::json h = nlohmann::json::object();
        uint64_t off = 0;
        auto add = [&](const std::string &name, std::vector<int64_t> shape) {
            uint64_t n = 4;
            for (auto x : shape)
                n *= uint64_t(x);
            h[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
            off += n;
        };
        add("model.embed_tokens.weight", {vocab, d});
        add("lm_head.weight", {vocab, d});
        add("model.norm.weight", {d});
        for (int l = 0; l < 2; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", {d});
            add(p + "post_attention_layernorm.weight", {d});
            add(p + "self_attn.q_proj.weight", {d, d});
            add(p + "self_attn.k_proj.weight", {32, d});
            add(p + "self_attn.v_proj.weight", {32, d});
            add(p + "self_attn.o_proj.weight", {d, d});
            add(p + "mlp.gate_proj.weight", {24, d});
            add(p + "mlp.up_proj.weight", {24, d});
            add(p + "mlp.down_proj.weight", {d, 24});
        }
        const std::string hs = h.dump();
        test::Bytes b;
        b.put<uint64_t>(hs.size());
        b.v.insert(b.v.end(), hs.begin(), hs.end());
        const std::string file = dir + "/model.safetensors";
        test::writeFile(file, b.v);
        std::filesystem::resize_file(file, b.v.size() + off);
        QVERIFY(off > (uint64_t(7) << 30)); // 8.2 GB

        rusage before{}, after{};
        getrusage(RUSAGE_SELF, &before);
        auto m = openModel(dir);
        QCOMPARE(m->config.vocabSize, vocab);
        QCOMPARE(m->parameterCount(), int64_t(2 * vocab * d + d + 2 * (2 * d + 2 * d * d + 2 * 32 * d + 3 * 24 * d)));
        QVERIFY(m->sourceBytes > (uint64_t(7) << 30));
        getrusage(RUSAGE_SELF, &after);
        QVERIFY2(after.ru_maxrss - before.ru_maxrss < 64 * 1024, "opening grew resident memory by more than 64 MiB");
        std::filesystem::remove_all(dir);
    }
    void openingReadsNoWeights() {
        // The header parse looks only at the header bytes: a file whose data region is garbage still lists.
        auto img = test::safetensorsImage(test::tinyLlamaTensors());
        const auto h = parseSafetensorsHeader(img.data(), img.size(), "mem");
        QCOMPARE(h.entries.size(), test::tinyLlamaTensors().size());
        QCOMPARE(h.entries.front().begin, h.dataStart);
    }
};

QTEST_GUILESS_MAIN(TestHfReader)
#include "tst_hfreader.moc"
