// The CPU transformer engine against Hugging Face transformers: tiny random models of every family (built and run
// by transformers, tests/fixtures/make_hf_references.py), the demo model and SmolLM2-135M; and the layer-by-layer
// hooks API.

#include "engine/transformer.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "model/syntheticmodel.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"
#include "referencefile.h"
#include "testsupport.h"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

using namespace lathe;

namespace {

TokenBatch batchFrom(const test::RefTensor &ids) {
    TokenBatch b;
    b.batch = ids.dim(0);
    b.seq = ids.dim(1);
    b.tokens = ids.i32;
    return b;
}

} // namespace

class TestEngine : public QObject {
    Q_OBJECT

private slots:
    // The benchmarks' random models: the shape's parameter count, finite logits, weights fixed by the seed.
    void syntheticModels() {
        const auto shape = syntheticShape("llama2-7b");
        QVERIFY(shape && shape->hidden == 4096 && shape->layers == 32);
        QVERIFY(!syntheticShape("llama2-70b-typo"));
        const auto tiny = *syntheticShape("tiny");
        auto a = makeSyntheticModel(tiny, 1), b = makeSyntheticModel(tiny, 1), c = makeSyntheticModel(tiny, 2);
        const int64_t d = tiny.hidden, kv = tiny.kvHeads * (d / tiny.heads);
        const int64_t perBlock = 2 * d * d + 2 * kv * d + 3 * d * tiny.intermediate + 2 * d;
        QCOMPARE(a->parameterCount(), tiny.layers * perBlock + 2 * tiny.vocab * d + d);
        QCOMPARE(a->find("model.layers.1.mlp.down_proj.weight")->dtype, DType::BF16);
        const TokenBatch batch = TokenBatch::single({1, 5, 9, 200, 3});
        Transformer ta(*a), tb(*b), tc(*c);
        const Mat la = ta.forward(batch);
        QVERIFY(la.allFinite());
        QVERIFY(la == tb.forward(batch));
        QVERIFY(la != tc.forward(batch));
        // Llama-2-7B at 2048 tokens: 2 x 6.476e9 linear parameters x 2048 (2.6527e13) + causal attention
        // 2 x 4096 x 2048 x 2049 x 32 (1.100e12) + head 2 x 2048 x 4096 x 32000 (5.369e11) = 2.8163e13.
        const double f = forwardFlops(syntheticConfig(*shape), 2048);
        QVERIFY2(std::abs(f / 2.8163e13 - 1) < 1e-3, qPrintable(QString::number(f)));
    }

    void initTestCase() {
        const BlasInfo info = blasInfo();
        qInfo("BLAS: %s, core %s, %d threads", info.library.c_str(), info.coreType.c_str(), info.threads);
    }

    void tinyDecoders_data() {
        QTest::addColumn<QString>("name");
        for (const char *n : {"llama", "qwen2", "opt", "gpt2", "phi"})
            QTest::newRow(n) << QString(n);
    }

    // Logits of a batch of two sequences against transformers' fp32 eager output.
    void tinyDecoders() {
        QFETCH(QString, name);
        const std::string dir = test::fixturesDir() + "/tf-" + name.toStdString();
        auto model = openModel(dir);
        auto ref = test::readReference(dir + "/reference.safetensors");
        const TokenBatch batch = batchFrom(ref.at("input_ids"));
        Transformer t(*model);
        const Mat logits = t.forward(batch);
        const auto &want = ref.at("logits");
        QCOMPARE(int64_t(logits.size()), int64_t(want.f32.size()));
        const double err = relativeMaxError(logits.data(), want.f32.data(), want.f32.size());
        qInfo("%s: relative max error %.3g", qPrintable(name), err);
        QVERIFY2(err <= 1e-4, qPrintable(QString("error %1").arg(err)));
    }

    void tinyBert() {
        const std::string dir = test::fixturesDir() + "/tf-bert";
        auto model = openModel(dir);
        auto ref = test::readReference(dir + "/reference.safetensors");
        TokenBatch batch = batchFrom(ref.at("input_ids"));
        batch.tokenTypes = ref.at("token_type_ids").i32;
        for (int32_t m : ref.at("attention_mask").i32)
            batch.mask.push_back(uint8_t(m));
        Transformer t(*model);
        const Mat hidden = t.forward(batch);
        const auto &want = ref.at("last_hidden_state");
        // Padded rows of HF's output are computed too (they attend to the real tokens); compare all.
        const double err = relativeMaxError(hidden.data(), want.f32.data(), want.f32.size());
        qInfo("bert hidden: relative max error %.3g", err);
        QVERIFY(err <= 1e-4);
        const Mat pooled = t.pooled(hidden, batch);
        const double perr = relativeMaxError(pooled.data(), ref.at("pooler_output").f32.data(), pooled.size());
        qInfo("bert pooler: relative max error %.3g", perr);
        QVERIFY(perr <= 1e-4);
    }

    // Driving the blocks by hand with hooks gives the same logits as forward(), and the signals are the ones the
    // hooks API promises: each linear's recorded input reproduces its recorded output, blocks chain.
    void hooksLayerByLayer() {
        auto model = openModel(test::fixturesDir() + "/tf-llama");
        auto ref = test::readReference(test::fixturesDir() + "/tf-llama/reference.safetensors");
        const TokenBatch batch = batchFrom(ref.at("input_ids"));
        Transformer t(*model);
        std::map<std::pair<int, BlockSignal>, Mat> seen;
        std::vector<BlockSignal> order;
        BlockHooks hooks;
        hooks.observe = [&](int layer, BlockSignal s, const Mat &x) {
            seen[{layer, s}] = x;
            if (layer == 0)
                order.push_back(s);
        };
        Mat h = t.embed(batch);
        for (int l = 0; l < t.numLayers(); ++l)
            t.runBlock(l, h, batch, &hooks);
        const Mat logits = t.logits(t.finalHidden(h));
        QVERIFY(logits == t.forward(batch));
        QCOMPARE(order.size(), size_t(BlockSignal::Count));
        for (int l = 0; l < t.numLayers(); ++l) {
            const BlockWeights &w = t.block(l);
            Mat y;
            cpu::linearForward(seen[{l, BlockSignal::AttnContext}], w.o, y);
            QVERIFY(y.isApprox(seen[{l, BlockSignal::AttnOutput}], 1e-6f));
            cpu::linearForward(seen[{l, BlockSignal::MlpHidden}], w.down, y);
            QVERIFY(y.isApprox(seen[{l, BlockSignal::MlpOutput}], 1e-6f));
            const Mat resid = seen[{l, BlockSignal::BlockInput}] + seen[{l, BlockSignal::AttnOutput}];
            QVERIFY(resid.isApprox(seen[{l, BlockSignal::MlpResidual}], 1e-6f));
            if (l + 1 < t.numLayers())
                QVERIFY((seen[{l, BlockSignal::BlockOutput}] == seen[{l + 1, BlockSignal::BlockInput}]));
            QCOMPARE(int64_t(seen[{l, BlockSignal::AttnInput}].rows()), batch.batch * batch.seq);
        }
        // A mask selects signals.
        seen.clear();
        hooks.mask = BlockHooks::bit(BlockSignal::MlpHidden);
        t.runBlock(0, h, batch, &hooks);
        QCOMPARE(seen.size(), size_t(1));
        QCOMPARE(int64_t(seen.begin()->second.cols()), model->config.intermediateSize);

        // A block split at the MLP residual (SliceGPT's two halves) is the whole block: the same arithmetic in the
        // same order, so bit-identical, and the halves emit the whole block's signals between them.
        Mat whole = t.embed(batch), halves = whole;
        std::vector<BlockSignal> split;
        hooks.mask = ~0u;
        hooks.observe = [&](int layer, BlockSignal s, const Mat &) {
            if (layer == 0)
                split.push_back(s);
        };
        for (int l = 0; l < t.numLayers(); ++l) {
            t.runBlock(l, whole, batch);
            t.runBlock(l, halves, batch, &hooks, BlockPart::Attention);
            QCOMPARE(int64_t(halves.cols()), model->config.hiddenSize);
            t.runBlock(l, halves, batch, &hooks, BlockPart::Mlp);
            QVERIFY(halves == whole);
        }
        order.resize(size_t(BlockSignal::Count)); // drop the masked pass's one signal
        QVERIFY(split == order);
    }

    // Releasing blocks after use (the low-memory mode) changes nothing.
    void streamingBlocksMatch() {
        auto model = openModel(test::fixturesDir() + "/tf-gpt2");
        auto ref = test::readReference(test::fixturesDir() + "/tf-gpt2/reference.safetensors");
        const TokenBatch batch = batchFrom(ref.at("input_ids"));
        Transformer resident(*model);
        TransformerOptions o;
        o.keepBlocksResident = false;
        Transformer streaming(*model, o);
        QVERIFY(resident.forward(batch) == streaming.forward(batch));
    }

    // Both builds of the element-wise kernels against libm: SiLU, GELU-tanh and softmax within 1e-6 of max(1, |y|),
    // NaN in -> NaN out (NaN weights must show, not vanish).
    void kernelsAgainstLibm() {
        std::vector<float> x;
        for (float v = -30.0f; v <= 30.0f; v += 0.01f)
            x.push_back(v);
        for (const cpu::CpuKernels *k : {&cpu::baselineCpuKernels(), &cpu::cpuKernels()}) {
            std::vector<float> s = x, ones(x.size(), 1.0f), g = x;
            k->siluMul(s.data(), ones.data(), int64_t(s.size()));
            k->geluTanh(g.data(), int64_t(g.size()));
            double maxRel = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                const double v = x[i];
                const double silu = v / (1 + std::exp(-v));
                const double gelu = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
                maxRel = std::max(maxRel, std::fabs(s[i] - silu) / std::max(1.0, std::fabs(silu)));
                maxRel = std::max(maxRel, std::fabs(g[i] - gelu) / std::max(1.0, std::fabs(gelu)));
            }
            qInfo("%s kernels: max relative error %.3g", k->name, maxRel);
            QVERIFY(maxRel < 1e-6);
            std::vector<float> row = {1.0f, 2.0f, std::nanf(""), 0.5f};
            k->softmaxRows(row.data(), 1, 4, 3, true, nullptr);
            QVERIFY(std::isnan(row[0]));
            std::vector<float> sm = {1.0f, 2.0f, 3.0f, 100.0f};
            k->softmaxRows(sm.data(), 1, 4, 2, true, nullptr); // causal row sees keys 0..2
            const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
            QVERIFY(std::fabs(sm[2] - std::exp(3.0) / z) < 1e-6);
            QCOMPARE(sm[3], 0.0f);

            // The perplexity's normalizer on logit rows of a real vocabulary's width, against fp64 libm.
            std::mt19937 rng(7);
            std::normal_distribution<float> logit(0.0f, 4.0f);
            std::vector<float> wide(49157); // not a multiple of 8 or 256: the tails count too
            double lseErr = 0;
            for (int trial = 0; trial < 4; ++trial) {
                for (float &v : wide)
                    v = logit(rng) + 30.0f * float(trial);
                wide[size_t(trial * 1000 + 3)] += 25.0f; // one dominant logit, as after training
                const double mx = *std::max_element(wide.begin(), wide.end());
                double sum = 0;
                for (float v : wide)
                    sum += std::exp(double(v) - mx);
                const double want = std::log(sum) + mx;
                lseErr = std::max(lseErr, std::fabs(k->logSumExp(wide.data(), int64_t(wide.size())) - want));
            }
            qInfo("%s logSumExp: max absolute error %.3g", k->name, lseErr);
            QVERIFY(lseErr < 1e-5);
            const std::vector<float> three = {1.0f, 2.0f, 3.0f};
            QVERIFY(std::fabs(k->logSumExp(three.data(), 3) - std::log(z)) < 1e-6);
            wide[100] = std::nanf("");
            QVERIFY(!std::isfinite(k->logSumExp(wide.data(), int64_t(wide.size()))));
            wide[100] = std::numeric_limits<float>::infinity();
            QVERIFY(!std::isfinite(k->logSumExp(wide.data(), int64_t(wide.size()))));
        }
    }

    // Both builds of the training step's kernels (AdamW, SwiGLU and its backward, the cross-entropy's scaled exp,
    // the softmax backward) against the same formulas in fp64, on lengths that leave vector tails.
    void trainingKernelsAgainstFp64() {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        const int64_t n = 1003;
        const size_t N = size_t(n);
        auto randoms = [&](float scale) {
            std::vector<float> v(N);
            for (float &x : v)
                x = scale * normal(rng);
            return v;
        };
        const std::vector<float> w0 = randoms(1), m0 = randoms(1e-2f), g = randoms(1e-2f), gate = randoms(6),
                                 up = randoms(1), dmid = randoms(1), logits = randoms(5);
        std::vector<float> v0 = randoms(1e-2f), p = randoms(1);
        for (float &x : v0)
            x *= x; // second moments are squares
        for (float &x : p)
            x = std::fabs(x) / float(n);
        const cpu::AdamWConstants c{0.9f, 0.95f, 1.0f - 1e-4f * 0.1f, 1e-4f / 0.19f, 0.3f, 1e-8f};
        // |got - want| / max(1, |want|) over one array
        auto error = [](const std::vector<float> &got, const std::vector<double> &want) {
            double e = 0;
            for (size_t i = 0; i < got.size(); ++i)
                e = std::max(e, std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
            return e;
        };
        for (const cpu::CpuKernels *k : {&cpu::baselineCpuKernels(), &cpu::cpuKernels()}) {
            std::vector<float> w = w0, m = m0, v = v0;
            k->adamw(w.data(), m.data(), v.data(), g.data(), n, c);
            std::vector<double> wantW(N), wantM(N), wantV(N);
            for (size_t i = 0; i < N; ++i) {
                wantM[i] = 0.9 * m0[i] + 0.1 * double(g[i]);
                wantV[i] = 0.95 * v0[i] + 0.05 * double(g[i]) * g[i];
                wantW[i] = w0[i] * double(c.shrink) - double(c.stepSize) * wantM[i] / (std::sqrt(wantV[i]) / 0.3 + 1e-8);
            }
            QVERIFY(error(m, wantM) < 1e-7 && error(v, wantV) < 1e-7);
            QVERIFY(error(w, wantW) < 1e-6);
            // Masked (SAT's omitted channels): the kept entries as above, the others keep their bits.
            std::vector<float> keep(N), mw = w0, mm = m0, mv = v0;
            for (size_t i = 0; i < N; ++i)
                keep[i] = float(i % 3 != 1);
            k->adamwMasked(mw.data(), mm.data(), mv.data(), g.data(), keep.data(), n, c);
            std::vector<double> maskedW(N), maskedM(N), maskedV(N);
            for (size_t i = 0; i < N; ++i) {
                maskedW[i] = keep[i] != 0 ? wantW[i] : w0[i];
                maskedM[i] = keep[i] != 0 ? wantM[i] : m0[i];
                maskedV[i] = keep[i] != 0 ? wantV[i] : v0[i];
                if (keep[i] == 0)
                    QVERIFY(mw[i] == w0[i] && mm[i] == m0[i] && mv[i] == v0[i]);
            }
            QVERIFY(error(mm, maskedM) < 1e-7 && error(mv, maskedV) < 1e-7);
            QVERIFY(error(mw, maskedW) < 1e-6);

            std::vector<float> mid(N), dgate(N, 0.5f), dup(N, -0.5f);
            k->swiglu(gate.data(), up.data(), mid.data(), n);
            k->swigluBackward(dmid.data(), gate.data(), up.data(), dgate.data(), dup.data(), n);
            std::vector<double> wantMid(N), wantDgate(N), wantDup(N);
            for (size_t i = 0; i < N; ++i) {
                const double x = gate[i], s = 1 / (1 + std::exp(-x));
                wantMid[i] = x * s * up[i];
                wantDgate[i] = 0.5 + double(dmid[i]) * up[i] * s * (1 + x * (1 - s));
                wantDup[i] = -0.5 + double(dmid[i]) * x * s;
            }
            QVERIFY(error(mid, wantMid) < 1e-6);
            // silu'(g) = s (1 + g (1 - s)) loses 1 - s to fp32 rounding when s is near 1 (large g), with libm's exp too.
            QVERIFY(error(dgate, wantDgate) < 4e-6 && error(dup, wantDup) < 1e-6);

            std::vector<float> e = logits;
            k->scaledExp(e.data(), n, 3.0f, 0.25f);
            std::vector<double> wantE(N);
            for (size_t i = 0; i < N; ++i)
                wantE[i] = std::exp(double(logits[i]) - 3.0) * 0.25;
            QVERIFY(error(e, wantE) < 1e-6);

            std::vector<float> dp = dmid;
            k->softmaxBackward(p.data(), dp.data(), n, 0.125f);
            double dot = 0;
            for (size_t i = 0; i < N; ++i)
                dot += double(dmid[i]) * p[i];
            std::vector<double> wantDp(N);
            for (size_t i = 0; i < N; ++i)
                wantDp[i] = p[i] * (dmid[i] - dot) * 0.125;
            QVERIFY(error(dp, wantDp) < 1e-7);
        }
    }

    void cancellation() {
        auto model = openModel(test::fixturesDir() + "/tf-opt");
        Transformer t(*model);
        int calls = 0;
        auto cb = [&](const Progress &) { return ++calls < 2; };
        QVERIFY_THROWS_EXCEPTION(CancelledError, t.forward(TokenBatch::single({1, 2, 3}), nullptr, cb));
    }

    void badInput() {
        auto model = openModel(test::fixturesDir() + "/tf-llama");
        Transformer t(*model);
        try {
            t.forward(TokenBatch::single({1, 2, 96}));
            QFAIL("out-of-vocabulary id accepted");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("outside the vocabulary") != std::string::npos);
        }
        auto opt = openModel(test::fixturesDir() + "/tf-opt");
        Transformer to(*opt);
        try {
            to.forward(TokenBatch::single(std::vector<int32_t>(65, 4)));
            QFAIL("too-long sequence accepted");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("above the model's maximum") != std::string::npos);
        }
        // Stacked q|k|v needs one input width: a damaged block is an error, not an Eigen assertion.
        BlockWeights w = t.block(0);
        w.k.w = Mat::Zero(w.k.w.rows(), w.k.w.cols() - 1);
        try {
            t.setBlock(0, w);
            QFAIL("q/k/v of different widths accepted");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("different input widths") != std::string::npos);
        }
    }

    // stories260K: transformers' logits on the HF folder Lathe converts it to.
    void demoModelLogits() {
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");
        auto ref = test::readReference(test::fixturesDir() + "/real-stories260k.safetensors");
        Transformer t(*model);
        const Mat logits = t.forward(batchFrom(ref.at("input_ids")));
        const double err = relativeMaxError(logits.data(), ref.at("logits").f32.data(), ref.at("logits").f32.size());
        qInfo("stories260K: relative max error %.3g", err);
        QVERIFY(err <= 1e-4);
    }

    // SmolLM2-135M (Q4_1 GGUF): transformers dequantizes the same file with gguf-py.
    void smollm2Logits() {
        const std::string path = test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
        if (!QFile::exists(QString::fromStdString(path)))
            QSKIP("SmolLM2 GGUF not in the model cache; run packaging/fetch-models.sh");
        auto model = openModel(path);
        auto ref = test::readReference(test::fixturesDir() + "/real-smollm2.safetensors");
        Transformer t(*model);
        const Mat logits = t.forward(batchFrom(ref.at("input_ids")));
        const auto &last = ref.at("last_logits").f32;
        const double err = relativeMaxError(logits.row(logits.rows() - 1).data(), last.data(), last.size());
        const auto &cols = ref.at("columns").i32;
        const auto &colLogits = ref.at("column_logits").f32;
        std::vector<float> got;
        for (int64_t r = 0; r < logits.rows(); ++r)
            for (int32_t c : cols)
                got.push_back(logits(r, c));
        const double errCols = relativeMaxError(got.data(), colLogits.data(), colLogits.size());
        qInfo("SmolLM2: relative max error %.3g (last position), %.3g (sampled columns)", err, errCols);
        QVERIFY(err <= 1e-4);
        QVERIFY(errCols <= 1e-4);
    }
};

QTEST_GUILESS_MAIN(TestEngine)
#include "tst_engine.moc"
