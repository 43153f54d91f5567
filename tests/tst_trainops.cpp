// The training engine's ops (core/train/ops.h, issue 17 item 1):
// - every backward against central finite differences of its forward in fp64: for a fixed random weighting R of
//   the op's output, L = sum(R * y) has dL/dy = R; the analytic gradient of every input element and parameter
//   must match (L(x + e) - L(x - e)) / 2e with e = 1e-6 within 1e-6 of that gradient's largest magnitude;
// - backward accumulates (called twice, gradients double);
// - the fp32 forwards agree with the inference engine's (engine/blockops.h) within 1e-5 relative, so training
//   computes the same function that evaluation measures;
// - the chunked cross-entropy equals the loss computed from whole logits for every chunk size.

#include "base/error.h"
#include "engine/blockops.h"
#include "model/layerweights.h"
#include "testsupport.h"
#include "train/ops.h"

#include <QtTest/QtTest>

#include <cmath>
#include <functional>
#include <random>

using namespace lathe;
using namespace lathe::train;

namespace {

using MatX = Matrix<double>;
using VecX = Vector<double>;

MatX randomMat(int64_t rows, int64_t cols, std::mt19937 &rng, double scale = 1.0) {
    std::normal_distribution<double> n(0.0, scale);
    MatX m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = n(rng);
    return m;
}

VecX randomVec(int64_t n, std::mt19937 &rng, double scale = 1.0, double offset = 0.0) {
    MatX m = randomMat(n, 1, rng, scale);
    return (m.col(0).array() + offset).matrix();
}

// Max |analytic - numeric| / max(1e-12, max |numeric|) over every element of `x`, whose analytic gradient is `grad`,
// for the scalar loss `loss` (which reads x).
double fdError(double *x, int64_t n, const double *grad, const std::function<double()> &loss) {
    const double eps = 1e-6;
    double err = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; ++i) {
        const double keep = x[i];
        x[i] = keep + eps;
        const double up = loss();
        x[i] = keep - eps;
        const double down = loss();
        x[i] = keep;
        const double numeric = (up - down) / (2 * eps);
        err = std::max(err, std::abs(numeric - grad[i]));
        scale = std::max(scale, std::abs(numeric));
    }
    return err / scale;
}

double weighted(const MatX &y, const MatX &r) { return (y.array() * r.array()).sum(); }

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

    void attention() {
        std::mt19937 rng(5);
        AttentionDims d;
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
        // Causal: probabilities above the diagonal are zero and every row sums to one.
        for (int64_t i = 0; i < d.seq; ++i) {
            double sum = 0;
            for (int64_t j = 0; j < d.seq; ++j) {
                const double p = st.probs[size_t(i * d.seq + j)];
                QVERIFY(j <= i || p == 0);
                sum += p;
            }
            QVERIFY(std::abs(sum - 1) < 1e-12);
        }
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
        // The loss from whole logits, in fp64.
        const MatX logits = h * w.transpose();
        double want = 0;
        for (int64_t r = 0; r < rows; ++r)
            if (targets[size_t(r)] >= 0) {
                const double m = logits.row(r).maxCoeff();
                want += m + std::log((logits.row(r).array() - m).exp().sum()) - logits(r, targets[size_t(r)]);
            }
        want /= 5;
        for (int64_t chunk : {int64_t(1), int64_t(4), int64_t(13), int64_t(100)}) {
            CrossEntropyState<double> st;
            const double got = crossEntropyForward(h, w, targets, chunk, st);
            QVERIFY2(std::abs(got - want) < 1e-12 * std::abs(want), qPrintable(QString::number(chunk)));
            QCOMPARE(st.count, int64_t(5));
            MatX dh = MatX::Zero(rows, width), dw = MatX::Zero(vocab, width);
            crossEntropyBackward(h, w, targets, chunk, st, 1.0, dh, &dw);
            auto loss = [&] {
                CrossEntropyState<double> s;
                return crossEntropyForward(h, w, targets, chunk, s);
            };
            QVERIFY(fdError(h.data(), h.size(), dh.data(), loss) < kTol);
            QVERIFY(fdError(w.data(), w.size(), dw.data(), loss) < kTol);
            QVERIFY(dh.row(3).isZero()); // the row without a target
        }
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
