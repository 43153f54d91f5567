// The training engine's ops (core/train/ops.h, issue 17 item 1):
// - every backward against central finite differences of its forward in fp64: for a fixed random weighting R of
//   the op's output, L = sum(R * y) has dL/dy = R; the analytic gradient of every input element and parameter
//   must match (L(x + e) - L(x - e)) / 2e with e = 1e-6 within 1e-6 of that gradient's largest magnitude;
// - backward accumulates (called twice, gradients double);
// - causal attention past one tile of queries against the untiled formulas;
// - the fp32 forwards agree with the inference engine's (engine/blockops.h) within 1e-5 relative, so training
//   computes the same function that evaluation measures;
// - the chunked cross-entropy equals the loss computed from whole logits for every chunk size;
// - parallelFor's worker pool runs every part once, nests, rethrows and serves concurrent callers.
// The whole model, the trainer and the CLI commands on them are in tst_trainmodel.cpp.

#include "base/error.h"
#include "engine/blockops.h"
#include "model/layerweights.h"
#include "testsupport.h"
#include "engine/transformer.h"
#include "gradcheck.h"
#include "train/ops.h"
#include "base/parallel.h"
#include "base/random.h"
#include "numeric/blas.h"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <atomic>
#include <thread>

using namespace lathe;
using namespace lathe::train;

namespace {

using MatX = Matrix<double>;
using VecX = Vector<double>;

using test::fdError;
using test::randomMat;
using test::weighted;

VecX randomVec(int64_t n, std::mt19937 &rng, double scale = 1.0, double offset = 0.0) {
    MatX m = randomMat(n, 1, rng, scale);
    return (m.col(0).array() + offset).matrix();
}


RopeAngles<double> ropeAngles(int64_t positions, int rotaryDim, double theta) {
    RopeAngles<double> a;
    a.rotaryDim = rotaryDim;
    a.cos.resize(positions, rotaryDim / 2);
    a.sin.resize(positions, rotaryDim / 2);
    for (int64_t p = 0; p < positions; ++p)
        for (int i = 0; i < rotaryDim / 2; ++i) {
            const double angle = double(p) * std::pow(theta, -2.0 * i / rotaryDim);
            a.cos(p, i) = std::cos(angle);
            a.sin(p, i) = std::sin(angle);
        }
    return a;
}

constexpr double kTol = 1e-6;

} // namespace


class TestTrainOps : public QObject {
    Q_OBJECT
private slots:
    void embedding() {
        std::mt19937 rng(1);
        MatX table = randomMat(11, 6, rng);
        const std::vector<int32_t> ids = {3, 0, 3, 10, 7};
        const MatX r = randomMat(5, 6, rng);
        MatX dtable = MatX::Zero(11, 6);
        embeddingBackward(r, ids, dtable);
        auto loss = [&] {
            MatX y;
            embeddingForward(table, ids, y);
            return weighted(y, r);
        };
        QVERIFY(fdError(table.data(), table.size(), dtable.data(), loss) < kTol);
        QVERIFY(dtable.row(1).isZero()); // an id not in the batch gets no gradient
        std::vector<int32_t> bad = {11};
        MatX y;
        QVERIFY_THROWS_EXCEPTION(LatheError, embeddingForward(table, bad, y));
    }

    void norms() {
        std::mt19937 rng(2);
        MatX x = randomMat(4, 9, rng);
        VecX w = randomVec(9, rng, 0.5, 1.0), b = randomVec(9, rng, 0.1);
        const MatX r = randomMat(4, 9, rng);
        for (bool layer : {false, true}) {
            NormState<double> st;
            MatX y, dx = MatX::Zero(4, 9);
            VecX dw = VecX::Zero(9), db = VecX::Zero(9);
            auto forward = [&] {
                if (layer)
                    layerNormForward(x, w, b, 1e-5, y, st);
                else
                    rmsNormForward(x, w, 1e-5, y, st);
                return weighted(y, r);
            };
            forward();
            if (layer)
                layerNormBackward(r, x, w, st, dx, &dw, &db);
            else
                rmsNormBackward(r, x, w, st, dx, &dw);
            QVERIFY2(fdError(x.data(), x.size(), dx.data(), forward) < kTol, layer ? "layernorm dx" : "rmsnorm dx");
            QVERIFY(fdError(w.data(), w.size(), dw.data(), forward) < kTol);
            if (layer)
                QVERIFY(fdError(b.data(), b.size(), db.data(), forward) < kTol);
        }
    }

    void linear() {
        std::mt19937 rng(3);
        MatX x = randomMat(5, 7, rng), w = randomMat(4, 7, rng);
        VecX b = randomVec(4, rng);
        const MatX r = randomMat(5, 4, rng);
        for (bool bias : {true, false}) {
            const VecX noBias;
            auto loss = [&] {
                MatX y;
                linearForward(x, w, bias ? b : noBias, y);
                return weighted(y, r);
            };
            MatX dx = MatX::Zero(5, 7), dw = MatX::Zero(4, 7);
            VecX db = VecX::Zero(4);
            linearBackward<double>(r, x, w, &dx, &dw, bias ? &db : nullptr);
            QVERIFY(fdError(x.data(), x.size(), dx.data(), loss) < kTol);
            QVERIFY(fdError(w.data(), w.size(), dw.data(), loss) < kTol);
            if (bias)
                QVERIFY(fdError(b.data(), b.size(), db.data(), loss) < kTol);
            // Accumulation: a second backward doubles every gradient; a frozen weight (null) is skipped.
            const MatX once = dx;
            linearBackward<double>(r, x, w, &dx, nullptr, nullptr);
            QVERIFY((dx - 2 * once).norm() < 1e-12 * once.norm());
        }
    }

    void rope() {
        std::mt19937 rng(4);
        const int64_t seq = 5;
        const int heads = 2, headDim = 8;
        for (int rotary : {8, 4}) { // full and partial rotary (Phi-2 rotates part of each head)
            const RopeAngles<double> a = ropeAngles(seq, rotary, 10000.0);
            MatX x = randomMat(2 * seq, heads * headDim, rng);
            const MatX r = randomMat(2 * seq, heads * headDim, rng);
            MatX dx = r;
            ropeBackward(dx, seq, heads, headDim, a);
            auto loss = [&] {
                MatX y = x;
                ropeForward(y, seq, heads, headDim, a);
                return weighted(y, r);
            };
            QVERIFY(fdError(x.data(), x.size(), dx.data(), loss) < kTol);
        }
    }

    void attention_data() {
        QTest::addColumn<bool>("causal");
        QTest::newRow("causal") << true;
        QTest::newRow("bidirectional") << false; // BERT
    }

    void attention() {
        QFETCH(bool, causal);
        std::mt19937 rng(5);
        AttentionDims d;
        d.causal = causal;
        d.batch = 2;
        d.seq = 5;
        d.heads = 4;
        d.kvHeads = 2; // grouped-query: two heads share each K/V head
        d.headDim = 3;
        d.scale = 1.0 / std::sqrt(3.0);
        const int64_t rows = d.batch * d.seq;
        MatX q = randomMat(rows, 12, rng), k = randomMat(rows, 6, rng), v = randomMat(rows, 6, rng);
        const MatX r = randomMat(rows, 12, rng);
        AttentionState<double> st;
        auto loss = [&] {
            MatX ctx;
            attentionForward(q, k, v, d, ctx, st);
            return weighted(ctx, r);
        };
        loss();
        MatX dq = MatX::Zero(rows, 12), dk = MatX::Zero(rows, 6), dv = MatX::Zero(rows, 6);
        attentionBackward(r, q, k, v, d, st, dq, dk, dv);
        QVERIFY(fdError(q.data(), q.size(), dq.data(), loss) < kTol);
        QVERIFY(fdError(k.data(), k.size(), dk.data(), loss) < kTol);
        QVERIFY(fdError(v.data(), v.size(), dv.data(), loss) < kTol);
        // Causal: probabilities above the diagonal are zero; bidirectional: none is. Every row sums to one.
        for (int64_t i = 0; i < d.seq; ++i) {
            double sum = 0;
            for (int64_t j = 0; j < d.seq; ++j) {
                const double p = st.probs[size_t(i * d.seq + j)];
                QVERIFY(causal ? (j <= i || p == 0) : p > 0);
                sum += p;
            }
            QVERIFY(std::abs(sum - 1) < 1e-12);
        }
    }

    // Past one tile of queries (causal attention skips the blocks above the diagonal, a tile at a time, with a
    // ragged last tile): forward and gradients equal the untiled formulas computed here with whole S x S matrices.
    void attentionTiles_data() {
        QTest::addColumn<bool>("causal");
        QTest::addColumn<int>("seq");
        QTest::newRow("causal, 2 tiles + 44") << true << 300;
        QTest::newRow("causal, one tile + 1") << true << 129;
        QTest::newRow("bidirectional") << false << 300;
    }

    void attentionTiles() {
        QFETCH(bool, causal);
        QFETCH(int, seq);
        std::mt19937 rng(11);
        AttentionDims d;
        d.causal = causal;
        d.batch = 2;
        d.seq = seq;
        d.heads = 4;
        d.kvHeads = 2;
        d.headDim = 3;
        d.scale = 1.0 / std::sqrt(3.0);
        const int64_t rows = d.batch * d.seq, S = d.seq;
        const MatX q = randomMat(rows, 12, rng), k = randomMat(rows, 6, rng), v = randomMat(rows, 6, rng);
        const MatX dctx = randomMat(rows, 12, rng);
        AttentionState<double> st;
        MatX ctx;
        attentionForward(q, k, v, d, ctx, st);
        MatX dq = MatX::Zero(rows, 12), dk = MatX::Zero(rows, 6), dv = MatX::Zero(rows, 6);
        attentionBackward(dctx, q, k, v, d, st, dq, dk, dv);

        MatX wantCtx(rows, 12), wantDq = MatX::Zero(rows, 12), wantDk = MatX::Zero(rows, 6),
             wantDv = MatX::Zero(rows, 6);
        for (int64_t b = 0; b < d.batch; ++b)
            for (int h = 0; h < d.heads; ++h) {
                const int g = h / 2;
                const MatX Q = q.block(b * S, h * 3, S, 3), K = k.block(b * S, g * 3, S, 3),
                           V = v.block(b * S, g * 3, S, 3), dO = dctx.block(b * S, h * 3, S, 3);
                MatX P = d.scale * Q * K.transpose();
                for (int64_t i = 0; i < S; ++i) {
                    const int64_t keys = causal ? i + 1 : S;
                    const double mx = P.row(i).head(keys).maxCoeff();
                    for (int64_t j = 0; j < S; ++j)
                        P(i, j) = j < keys ? std::exp(P(i, j) - mx) : 0.0;
                    P.row(i) /= P.row(i).sum();
                }
                wantCtx.block(b * S, h * 3, S, 3) = P * V;
                const MatX dP = dO * V.transpose();
                MatX dS = MatX::Zero(S, S);
                for (int64_t i = 0; i < S; ++i) {
                    const double rowDot = dP.row(i).dot(P.row(i));
                    for (int64_t j = 0; j < S; ++j)
                        dS(i, j) = P(i, j) * (dP(i, j) - rowDot) * d.scale;
                }
                wantDq.block(b * S, h * 3, S, 3) += dS * K;
                wantDk.block(b * S, g * 3, S, 3) += dS.transpose() * Q;
                wantDv.block(b * S, g * 3, S, 3) += P.transpose() * dO;
            }
        const auto error = [](const MatX &got, const MatX &want) {
            return (got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff();
        };
        QVERIFY(error(ctx, wantCtx) < 1e-12);
        QVERIFY(error(dq, wantDq) < 1e-12);
        QVERIFY(error(dk, wantDk) < 1e-12);
        QVERIFY(error(dv, wantDv) < 1e-12);

        // The fused GPU kernels' saved state: the probabilities recomputed from each row's log-sum-exp are the
        // forward's (fp64: to rounding), rows of the batch and heads in the saved layout.
        const std::vector<double> lse = attentionLogSumExp(q, k, d);
        QCOMPARE(int64_t(lse.size()), d.batch * d.heads * S);
        const AttentionState<double> again = attentionFromLogSumExp(q, k, d, lse.data());
        QCOMPARE(again.probs.size(), st.probs.size());
        double worst = 0;
        for (size_t i = 0; i < st.probs.size(); ++i)
            worst = std::max(worst, std::abs(again.probs[i] - st.probs[i]));
        QVERIFY2(worst < 1e-13, QByteArray::number(worst));

        // The heads are split over the threads: the same bits on 1 and 3 threads.
        const int saved = blasThreads();
        for (int threads : {1, 3}) {
            setBlasThreads(threads);
            MatX ctxT, dqT = MatX::Zero(rows, 12), dkT = MatX::Zero(rows, 6), dvT = MatX::Zero(rows, 6);
            AttentionState<double> stT;
            attentionForward(q, k, v, d, ctxT, stT);
            attentionBackward(dctx, q, k, v, d, stT, dqT, dkT, dvT);
            QVERIFY(ctxT == ctx && dqT == dq && dkT == dk && dvT == dv);
        }
        setBlasThreads(saved);
    }

    void activations() {
        std::mt19937 rng(6);
        MatX g = randomMat(3, 5, rng, 2.0), u = randomMat(3, 5, rng);
        const MatX r = randomMat(3, 5, rng);
        MatX dg = MatX::Zero(3, 5), du = MatX::Zero(3, 5);
        swigluBackward(r, g, u, dg, du);
        auto swiglu = [&] {
            MatX m;
            swigluForward(g, u, m);
            return weighted(m, r);
        };
        QVERIFY(fdError(g.data(), g.size(), dg.data(), swiglu) < kTol);
        QVERIFY(fdError(u.data(), u.size(), du.data(), swiglu) < kTol);
        for (Gelu kind : {Gelu::Tanh, Gelu::Erf}) {
            MatX x = randomMat(3, 5, rng, 2.0), dx = MatX::Zero(3, 5);
            geluBackward(kind, r, x, dx);
            auto gelu = [&] {
                MatX y;
                geluForward(kind, x, y);
                return weighted(y, r);
            };
            QVERIFY(fdError(x.data(), x.size(), dx.data(), gelu) < kTol);
        }
    }

    void crossEntropy() {
        std::mt19937 rng(7);
        const int64_t rows = 6, width = 5, vocab = 13;
        MatX h = randomMat(rows, width, rng), w = randomMat(vocab, width, rng);
        const std::vector<int32_t> targets = {0, 12, 5, -1, 7, 7}; // -1: a position without a target
        for (bool bias : {false, true}) {
            VecX b = bias ? randomVec(vocab, rng) : VecX();
            // The loss from whole logits, in fp64.
            MatX logits = h * w.transpose();
            if (bias)
                logits.rowwise() += b.transpose();
            double want = 0;
            for (int64_t r = 0; r < rows; ++r)
                if (targets[size_t(r)] >= 0) {
                    const double m = logits.row(r).maxCoeff();
                    want += m + std::log((logits.row(r).array() - m).exp().sum()) - logits(r, targets[size_t(r)]);
                }
            want /= 5;
            for (int64_t chunk : {int64_t(1), int64_t(4), int64_t(13), int64_t(100)}) {
                CrossEntropyState<double> st;
                const double got = crossEntropyForward(h, w, b, targets, chunk, st);
                QVERIFY2(std::abs(got - want) < 1e-12 * std::abs(want), qPrintable(QString::number(chunk)));
                QCOMPARE(st.count, int64_t(5));
                MatX dh = MatX::Zero(rows, width), dw = MatX::Zero(vocab, width);
                VecX db = VecX::Zero(vocab);
                crossEntropyBackward(h, w, b, targets, chunk, st, 1.0, dh, &dw, bias ? &db : nullptr);
                auto loss = [&] {
                    CrossEntropyState<double> s;
                    return crossEntropyForward(h, w, b, targets, chunk, s);
                };
                QVERIFY(fdError(h.data(), h.size(), dh.data(), loss) < kTol);
                QVERIFY(fdError(w.data(), w.size(), dw.data(), loss) < kTol);
                if (bias)
                    QVERIFY(fdError(b.data(), b.size(), db.data(), loss) < kTol);
                QVERIFY(dh.row(3).isZero()); // the row without a target
            }
        }
    }

    // parallelFor: every index once, whatever the grain and thread count; a nested call runs inline on the thread
    // of its part; a part's exception reaches the caller and the pool still works after it; callers on several
    // threads at once (one holds the pool, the others start their own threads) all get their full ranges.
    void parallelForPool() {
        for (int64_t n : {1, 2, 7, 1000, 100003})
            for (int threads : {0, 1, 2, 5})
                for (int64_t grain : {1, 64}) {
                    std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
                    parallelFor(n, grain, [&](int64_t b, int64_t e) {
                        for (int64_t i = b; i < e; ++i)
                            seen[size_t(i)].fetch_add(1);
                    }, threads);
                    for (auto &v : seen)
                        QCOMPARE(v.load(), 1);
                }
        std::atomic<int> nestedOnOtherThread{0};
        parallelFor(64, 1, [&](int64_t, int64_t) {
            const auto outer = std::this_thread::get_id();
            parallelFor(64, 1, [&](int64_t, int64_t) {
                if (std::this_thread::get_id() != outer)
                    ++nestedOnOtherThread;
            });
        }, 2);
        QCOMPARE(nestedOnOtherThread.load(), 0);
        for (int threads : {2, 5}) // the pool; own threads
            QVERIFY_THROWS_EXCEPTION(LatheError, parallelFor(100, 1, [&](int64_t b, int64_t) {
                if (b > 0)
                    throw LatheError("test", "a part failed");
            }, threads));
        std::atomic<int64_t> after{0};
        parallelFor(100, 1, [&](int64_t b, int64_t e) { after += e - b; }, 2);
        QCOMPARE(after.load(), int64_t(100));
        std::vector<std::thread> callers;
        std::atomic<int> wrong{0};
        for (int c = 0; c < 4; ++c)
            callers.emplace_back([&, c] {
                for (int rep = 0; rep < 200; ++rep) {
                    const int64_t n = 1000 + c * 37 + rep;
                    std::atomic<int64_t> sum{0};
                    parallelFor(n, 16, [&](int64_t b, int64_t e) {
                        int64_t local = 0;
                        for (int64_t i = b; i < e; ++i)
                            local += i;
                        sum += local;
                    }, 2);
                    if (sum.load() != n * (n - 1) / 2)
                        ++wrong;
                }
            });
        for (auto &t : callers)
            t.join();
        QCOMPARE(wrong.load(), 0);
    }

    // weightedSample (SAT's sampled selection): each draw proportional to the weights left, without replacement,
    // a pure function of the stream, sorted, zero weights last.
    void weightedSampling() {
        const int draws = 40000;
        std::vector<int> first(5, 0);
        int withHeavy = 0;
        for (int i = 0; i < draws; ++i) {
            const auto one = weightedSample({1, 2, 3, 4, 0}, 1, splitmix(uint64_t(i)));
            QCOMPARE(one.size(), size_t(1));
            ++first[size_t(one[0])];
            const auto two = weightedSample({1, 1, 8}, 2, splitmix(uint64_t(i) + 1000003));
            QVERIFY(two.size() == 2 && two[0] < two[1]);
            withHeavy += two[1] == 2;
        }
        for (int j = 0; j < 4; ++j)
            QVERIFY2(std::abs(double(first[size_t(j)]) / draws - (j + 1) / 10.0) < 0.01, std::to_string(j).c_str());
        QCOMPARE(first[4], 0);
        // Index 2 is left out only when 0 and 1 come first: 1 - 2 (1/10)(1/9).
        QVERIFY2(std::abs(double(withHeavy) / draws - (1 - 2.0 / 90)) < 0.004, std::to_string(withHeavy).c_str());
        QCOMPARE(weightedSample({3, 1, 2, 5}, 2, 7), weightedSample({3, 1, 2, 5}, 2, 7));
        QCOMPARE(weightedSample({0, 5, 0}, 2, 7), (std::vector<int32_t>{0, 1}));
        QCOMPARE(weightedSample({1, 2}, 5, 7), (std::vector<int32_t>{0, 1}));
    }

    // The fp32 training forwards compute what the inference engine computes.
    void forwardsMatchTheEngine() {
        std::mt19937 rng(8);
        auto f = [](const MatX &m) { return Mat(m.cast<float>()); };
        const MatX x = randomMat(6, 8, rng);
        const VecX w = randomVec(8, rng, 0.5, 1.0), b = randomVec(8, rng, 0.1);
        NormWeights nw;
        nw.weight = w.cast<float>();
        nw.bias = b.cast<float>();
        Mat want;
        Matrix<float> got;
        NormState<float> st;
        cpu::layerNormForward(f(x), nw, 1e-5f, want);
        layerNormForward<float>(f(x), w.cast<float>(), b.cast<float>(), 1e-5f, got, st);
        QVERIFY(relativeMaxError(got, want) < 1e-5);
        cpu::rmsNormForward(f(x), nw, 1e-5f, want);
        rmsNormForward<float>(f(x), w.cast<float>(), 1e-5f, got, st);
        QVERIFY(relativeMaxError(got, want) < 1e-5);

        const MatX wl = randomMat(5, 8, rng);
        LinearWeights lw;
        lw.w = f(wl);
        lw.b = b.head(5).cast<float>();
        cpu::linearForward(f(x), lw, want);
        linearForward<float>(f(x), lw.w, lw.b, got);
        QVERIFY(relativeMaxError(got, want) < 1e-5);

        Mat ge = f(x);
        cpu::activationForward(cpu::Activation::GeluTanh, ge);
        geluForward<float>(Gelu::Tanh, f(x), got);
        QVERIFY(relativeMaxError(got, ge) < 1e-5);
        ge = f(x);
        cpu::activationForward(cpu::Activation::GeluErf, ge);
        geluForward<float>(Gelu::Erf, f(x), got);
        QVERIFY(relativeMaxError(got, ge) < 1e-5);

        // RoPE with the engine's table, and attention with grouped heads.
        const int64_t seq = 6;
        const cpu::RopeTable table = cpu::makeRopeTable(seq, 4, 10000.0, nlohmann::json(), "test");
        RopeAngles<float> angles;
        angles.rotaryDim = table.rotaryDim;
        angles.cos = table.cos;
        angles.sin = table.sin;
        Mat qe = f(randomMat(seq, 8, rng));
        Matrix<float> qt = qe;
        cpu::ropeForward(qe, seq, 2, 4, table);
        ropeForward<float>(qt, seq, 2, 4, angles);
        QVERIFY(relativeMaxError(qt, qe) < 1e-6);

        cpu::AttentionShape s;
        s.batch = 1;
        s.seq = seq;
        s.heads = 2;
        s.kvHeads = 1;
        s.headDim = 4;
        s.scale = 0.5f;
        AttentionDims d{1, seq, 2, 1, 4, 0.5};
        const Mat k = f(randomMat(seq, 4, rng)), v = f(randomMat(seq, 4, rng));
        AttentionState<float> ast;
        cpu::attentionForward(qe, k, v, s, want);
        attentionForward<float>(qe, k, v, d, got, ast);
        QVERIFY(relativeMaxError(got, want) < 1e-5);
    }
};

QTEST_GUILESS_MAIN(TestTrainOps)
#include "tst_trainops.moc"
