// The training engine's linear kinds (core/train/linearkinds.h, issue 17 items 2 and 4):
// - every kind's backward against central finite differences in fp64 (e = 1e-6, within 1e-6 of the gradient's
//   largest magnitude), for L = sum(R * y) with a fixed random R. For the kinds with a straight-through mask the
//   reference is the function whose true gradient the estimator is: the mask frozen at its value plus the scores'
//   first-order change, W_eff = W ⊙ (mask0 + S - S0) (masked) and W~ ⊙ (mask0 + M - M0) (PST);
// - the selection (pruneSmallestMask): the exact count, ties by position, the same mask as a stable sort;
// - LoSparse's split reproduces the weight (L R + S = W), and a pruned row takes no gradient;
// - gathered linears and blocks: the compact output is the full output's selected part, and a block that runs only
//   some MLP channels and KV groups computes the loss of the dense model with the other channels' output weights
//   zeroed; finite differences of the whole model with selections, and with LoSparse and masked linears swapped in;
// - each kind against PyTorch autograd of the official code's formulas (tests/fixtures/make_kind_references.py);
// - recomputation gives the same loss and gradients as keeping every activation, bit for bit in fp32;
// - every kind gives the same bits on 1, 2 and 3 threads at sizes where its passes split (fp64).

#include "base/error.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "gradcheck.h"
#include "referencefile.h"
#include "testsupport.h"
#include "engine/transformer.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/linearkinds.h"
#include "numeric/blas.h"

#include <QtTest/QtTest>

#include <Eigen/SVD>

#include <cmath>
#include <functional>
#include <memory>
#include <limits>
#include <numeric>
#include <random>

using namespace lathe;
using namespace lathe::train;

namespace {

using MatX = Matrix<double>;

using test::fdError;
using test::randomMat;
using test::weighted;

double fdError(Parameter<double> *p, const std::function<double()> &loss) {
    return fdError(p->value.data(), p->value.size(), p->grad.data(), loss);
}

constexpr double kTol = 1e-6;

// sum(lin(x) ⊙ r): the scalar whose gradient a backward with dy = r computes; evaluated afresh at each call, so
// finite differences may move x or the kind's parameters between calls.
std::function<double()> weightedLoss(LinearKind<double> &lin, const MatX &x, const MatX &r,
                                     const LinearSelection &sel = {}) {
    return [&lin, &x, &r, sel] {
        MatX y;
        lin.forward(x, y, sel);
        return weighted(y, r);
    };
}

// A (out x in) weight and a bias in a fresh parameter set.
struct Layer {
    ParameterSet<double> params;
    Parameter<double> *w = nullptr, *b = nullptr;
    Layer(int64_t out, int64_t in, std::mt19937 &rng, bool bias) {
        Parameter<double> pw;
        pw.name = "model.layers.0.mlp.up_proj.weight";
        pw.value = randomMat(out, in, rng);
        w = &params.add(std::move(pw));
        if (bias) {
            Parameter<double> pb;
            pb.name = "model.layers.0.mlp.up_proj.bias";
            pb.isBias = true;
            pb.value = randomMat(out, 1, rng);
            b = &params.add(std::move(pb));
        }
    }
};

MatX maskOf(const std::vector<uint8_t> &mask, int64_t rows, int64_t cols) {
    MatX m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = mask[size_t(i)];
    return m;
}

TokenBatch randomBatch(const Model &m, int64_t batch, int64_t seq, uint32_t seed) {
    TokenBatch b;
    b.batch = batch;
    b.seq = seq;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> tok(0, int32_t(m.config.vocabSize) - 1);
    for (int64_t i = 0; i < batch * seq; ++i)
        b.tokens.push_back(tok(rng));
    return b;
}

// Finite differences of the whole model's loss for every trainable parameter `pick` accepts (test::modelFdError:
// 8 elements each); returns the worst relative error.
double worstFdError(CausalLm<double> &lm, const TokenBatch &batch, const std::function<bool(const std::string &)> &pick) {
    lm.parameters().zeroGrad();
    lm.forward(batch);
    lm.backward();
    std::mt19937 rng(5);
    double worst = 0;
    for (Parameter<double> &p : lm.parameters()) {
        if (!p.trainable() || !pick(p.name))
            continue;
        const double err = test::modelFdError(lm, batch, p, rng);
        if (err >= kTol)
            qWarning("%s: %g", p.name.c_str(), err);
        worst = std::max(worst, err);
    }
    return worst;
}

} // namespace

class TestLinearKinds : public QObject {
    Q_OBJECT

private slots:
    void pruneSmallestMaskCountsAndTies() {
        MatX s(3, 4);
        s << 5, 1, 1, 1, //
            1, 7, 1, 2,  //
            9, 1, 3, 1;
        // 12 values, sparsity 0.5: floor(6) pruned; seven 1s, so the first six 1s by position go.
        const std::vector<uint8_t> m = pruneSmallestMask(s, 0.5);
        const std::vector<uint8_t> want = {1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1};
        QCOMPARE(m, want);
        QCOMPARE(int(std::count(m.begin(), m.end(), 0)), 6);
        QVERIFY(pruneSmallestMask(s, 0.0) == std::vector<uint8_t>(12, 1));
        QVERIFY(pruneSmallestMask(s, 1.0) == std::vector<uint8_t>(12, 0));
        // PST's count: floor(n s) pruned (12 x 0.3 = 3.6 -> 3).
        const std::vector<uint8_t> m3 = pruneSmallestMask(s, 0.3);
        QCOMPARE(int(std::count(m3.begin(), m3.end(), 0)), 3);
        s(0, 0) = std::nan("");
        QVERIFY_THROWS_EXCEPTION(LatheError, pruneSmallestMask(s, 0.5));
    }

    // Against a stable sort, on matrices big enough to be split over the threads: values with many ties, both
    // signs, -0 beside +0, subnormals and infinities, in fp32 and fp64, at several sparsities.
    void pruneSmallestMaskMatchesSorting() {
        auto check = [](auto type, uint32_t seed) {
            using T = decltype(type);
            std::mt19937 rng(seed);
            const int64_t rows = 700, cols = 333;
            Matrix<T> s(rows, cols);
            std::uniform_int_distribution<int> pick(0, 9);
            std::normal_distribution<double> normal;
            const T special[] = {T(0), -T(0), std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::denorm_min(),
                                 std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(), T(1), T(-1)};
            for (int64_t i = 0; i < s.size(); ++i) {
                const int c = pick(rng);
                s.data()[i] = c < 4 ? special[pick(rng) % 8] : c < 6 ? T(pick(rng) - 5) : T(normal(rng));
            }
            for (double sparsity : {0.001, 0.3, 0.5, 0.9, 0.999}) {
                const int64_t n = s.size(), prune = int64_t(std::floor(double(n) * sparsity));
                std::vector<int64_t> order(static_cast<size_t>(n));
                std::iota(order.begin(), order.end(), 0);
                std::stable_sort(order.begin(), order.end(),
                                 [&](int64_t a, int64_t b) { return s.data()[a] < s.data()[b]; });
                std::vector<uint8_t> want(static_cast<size_t>(n), 1);
                for (int64_t i = 0; i < prune; ++i)
                    want[size_t(order[size_t(i)])] = 0;
                QVERIFY2(pruneSmallestMask(s, sparsity) == want, qPrintable(QString::number(sparsity)));
            }
        };
        check(float{}, 1);
        check(double{}, 2);
    }

    // The kinds at sizes where their passes split over the threads (rows and columns of W, PST's row and column
    // gradient passes, the selection's parts, gathered blocks): in fp64, forward and every gradient are the same
    // bits on 1, 2 and 3 threads.
    void kindsGiveTheSameBitsOnAnyThreads() {
        const int saved = blasThreads();
        auto run = [&](int threads, int which) {
            // Built on one thread: LoSparse's split starts from LAPACK's SVD, whose last bits depend on BLAS's
            // threads (the same for a run and its resume; not this test's subject).
            setBlasThreads(1);
            std::mt19937 rng(9);
            const int64_t out = 150, in = 130, rows = 40;
            Layer layer(out, in, rng, true);
            std::unique_ptr<LinearKind<double>> lin;
            LinearSelection sel;
            if (which == 0) {
                PstOptions o;
                o.rank = 4;
                o.maskRank = 3;
                auto pst = std::make_unique<PstLinear<double>>(layer.params, layer.w, layer.b, o, 7);
                for (Parameter<double> *p : {pst->u(), pst->v(), pst->a(), pst->b(), pst->r(), pst->c()})
                    p->value = randomMat(p->value.rows(), p->value.cols(), rng, 0.3);
                pst->setSparsity(0.6);
                lin = std::move(pst);
            } else if (which == 1) {
                lin = std::make_unique<MaskedLinear<double>>(layer.params, layer.w, layer.b, 0.7);
            } else if (which == 2) {
                lin = std::make_unique<LowRankSparseLinear<double>>(layer.params, layer.w, layer.b, 11);
            } else {
                lin = std::make_unique<DenseLinear<double>>(layer.w, layer.b);
                for (int32_t i = 0; i < out; i += 3)
                    sel.rows.push_back(i);
                for (int32_t j = 1; j < in; j += 2)
                    sel.cols.push_back(j);
            }
            setBlasThreads(threads);
            const MatX x = randomMat(rows, sel.cols.empty() ? in : int64_t(sel.cols.size()), rng);
            const MatX r = randomMat(rows, sel.rows.empty() ? out : int64_t(sel.rows.size()), rng);
            MatX y, dx = MatX::Zero(x.rows(), x.cols());
            lin->forward(x, y, sel);
            layer.params.zeroGrad();
            lin->backward(r, x, &dx, sel);
            std::vector<MatX> got = {y, dx};
            for (Parameter<double> &p : layer.params)
                got.push_back(p.trainable() ? p.grad : p.value);
            setBlasThreads(saved);
            return got;
        };
        for (int which = 0; which < 4; ++which) {
            const auto one = run(1, which);
            for (int threads : {2, 3})
                QVERIFY2(run(threads, which) == one, qPrintable(QString("kind %1, %2 threads").arg(which).arg(threads)));
        }
    }

    void denseAndGathered() {
        std::mt19937 rng(1);
        for (bool bias : {true, false}) {
            Layer layer(6, 8, rng, bias);
            DenseLinear<double> lin(layer.w, layer.b);
            const MatX full = randomMat(5, 8, rng);
            MatX yFull;
            lin.forward(full, yFull);
            LinearSelection rowsOnly{{1, 3, 4}, {}}, colsOnly{{}, {0, 2, 5, 7}}, both{{0, 5}, {1, 2, 6}};
            for (const LinearSelection &sel : {LinearSelection{}, rowsOnly, colsOnly, both}) {
                // The input of a column selection holds those columns only.
                MatX x(5, sel.cols.empty() ? 8 : int64_t(sel.cols.size()));
                for (int64_t j = 0; j < x.cols(); ++j)
                    x.col(j) = full.col(sel.cols.empty() ? j : sel.cols[size_t(j)]);
                const int64_t outCols = sel.rows.empty() ? 6 : int64_t(sel.rows.size());
                const MatX r = randomMat(5, outCols, rng);
                const auto loss = weightedLoss(lin, x, r, sel);
                if (sel.cols.empty()) { // same input: the compact output is the full output's selected columns
                    MatX y;
                    lin.forward(x, y, sel);
                    for (int64_t j = 0; j < outCols; ++j)
                        QVERIFY((y.col(j) - yFull.col(sel.rows.empty() ? j : sel.rows[size_t(j)])).norm() < 1e-12);
                }
                layer.params.zeroGrad();
                MatX dx = MatX::Zero(x.rows(), x.cols());
                lin.backward(r, x, &dx, sel);
                QVERIFY(fdError(x.data(), x.size(), dx.data(), loss) < kTol);
                QVERIFY(fdError(layer.w, loss) < kTol);
                if (bias)
                    QVERIFY(fdError(layer.b, loss) < kTol);
                // Rows and columns outside the selection get no gradient.
                for (int64_t i = 0; i < 6; ++i)
                    for (int64_t j = 0; j < 8; ++j) {
                        const bool inRows = sel.rows.empty() || std::count(sel.rows.begin(), sel.rows.end(), i);
                        const bool inCols = sel.cols.empty() || std::count(sel.cols.begin(), sel.cols.end(), j);
                        if (!inRows || !inCols)
                            QCOMPARE(layer.w->grad(i, j), 0.0);
                    }
            }
        }
    }

    void maskedFixedAndStraightThrough() {
        std::mt19937 rng(2);
        Layer layer(6, 8, rng, true);
        std::vector<uint8_t> fixed(48);
        for (size_t i = 0; i < fixed.size(); ++i)
            fixed[i] = uint8_t(i % 3 != 0);
        const MatX x0 = randomMat(5, 8, rng), r = randomMat(5, 6, rng);
        {
            MaskedLinear<double> lin(layer.w, layer.b, fixed);
            MatX x = x0;
            const auto loss = weightedLoss(lin, x, r);
            layer.params.zeroGrad();
            MatX dx = MatX::Zero(5, 8);
            lin.backward(r, x, &dx);
            QVERIFY(fdError(x.data(), x.size(), dx.data(), loss) < kTol);
            QVERIFY(fdError(layer.w, loss) < kTol); // pruned weights: zero both ways
            QCOMPARE(lin.activeWeights(), int64_t(32));
            MatX y;
            QVERIFY_THROWS_EXCEPTION(LatheError, lin.forward(x, y, LinearSelection{{0}, {}}));
        }
        // Scores: the mask keeps the largest half; the estimator is the gradient of W ⊙ (mask0 + S - S0).
        MaskedLinear<double> lin(layer.params, layer.w, layer.b, 0.5);
        Parameter<double> *s = lin.scores();
        QVERIFY(s && s->name == "model.layers.0.mlp.up_proj.mask_scores" && !s->decay && s->extra);
        QVERIFY((s->value - layer.w->value.cwiseAbs()).norm() == 0);
        MatX y;
        lin.forward(x0, y);
        const MatX mask0 = maskOf(lin.mask(), 6, 8), s0 = s->value;
        QCOMPARE(int(mask0.sum()), 24);
        MatX x = x0;
        auto surrogate = [&] {
            const MatX w = layer.w->value.cwiseProduct(mask0 + s->value - s0);
            return weighted((x * w.transpose()).rowwise() + layer.b->value.col(0).transpose(), r);
        };
        layer.params.zeroGrad();
        MatX dx = MatX::Zero(5, 8);
        lin.backward(r, x, &dx);
        QVERIFY(fdError(x.data(), x.size(), dx.data(), surrogate) < kTol);
        QVERIFY(fdError(layer.w, surrogate) < kTol);
        QVERIFY(fdError(s, surrogate) < kTol);
        QVERIFY(fdError(layer.b, surrogate) < kTol);
        // Moving the scores moves the mask at the next forward.
        s->value.setZero();
        s->value(0, 0) = 1;
        lin.setSparsity(47.0 / 48.0);
        lin.forward(x0, y);
        QCOMPARE(lin.activeWeights(), int64_t(1));
        QCOMPARE(lin.mask()[0], uint8_t(1));
    }

    void lowRankPlusSparse() {
        std::mt19937 rng(3);
        Layer layer(6, 8, rng, true);
        const MatX w0 = layer.w->value;
        LowRankSparseLinear<double> lin(layer.params, layer.w, layer.b, 2);
        QVERIFY(!layer.params.find("model.layers.0.mlp.up_proj.weight")); // replaced
        QVERIFY((lin.effectiveWeight() - w0).norm() < 1e-12 * w0.norm());
        QCOMPARE(lin.left()->value.rows(), Eigen::Index(6));
        QCOMPARE(lin.right()->value.cols(), Eigen::Index(8));
        QCOMPARE(lin.activeWeights(), int64_t(2 * 14 + 48));
        // The low-rank part is the best rank-2 approximation: its residual is the tail of the spectrum.
        Eigen::JacobiSVD<MatX> svd(w0);
        const auto sv = svd.singularValues();
        QVERIFY(std::abs(lin.sparse()->value.norm() - sv.tail(4).norm()) < 1e-10);
        lin.setRowMask({1, 0, 1, 1, 0, 1});
        QCOMPARE(lin.activeWeights(), int64_t(2 * 14 + 32));
        MatX x = randomMat(5, 8, rng);
        const MatX r = randomMat(5, 6, rng);
        const auto loss = weightedLoss(lin, x, r);
        layer.params.zeroGrad();
        MatX dx = MatX::Zero(5, 8);
        lin.backward(r, x, &dx);
        QVERIFY(fdError(x.data(), x.size(), dx.data(), loss) < kTol);
        QVERIFY(fdError(lin.left(), loss) < kTol);
        QVERIFY(fdError(lin.right(), loss) < kTol);
        QVERIFY(fdError(lin.sparse(), loss) < kTol);
        QVERIFY(fdError(layer.b, loss) < kTol);
        QVERIFY(lin.sparse()->grad.row(1).isZero() && lin.sparse()->grad.row(4).isZero());
        QVERIFY_THROWS_EXCEPTION(LatheError, LowRankSparseLinear<double>(layer.params, layer.b, nullptr, 9));
    }

    void pst() {
        std::mt19937 rng(4);
        Layer layer(6, 8, rng, true);
        PstOptions o;
        o.rank = 2;
        o.maskRank = 3;
        o.beta = 0.7;
        o.alpha1 = 1.3;
        o.alpha2 = 0.4;
        PstLinear<double> lin(layer.params, layer.w, layer.b, o, 42);
        QVERIFY(!layer.w->trainable() && !layer.b->trainable()); // frozen, as the official code does
        QCOMPARE(lin.u()->value.cols(), Eigen::Index(2));
        QCOMPARE(lin.a()->value.cols(), Eigen::Index(3));
        QVERIFY(lin.v()->value.isZero() && lin.b()->value.isZero() && lin.r()->value.isZero() && lin.c()->value.isZero());
        QVERIFY(lin.u()->value.norm() > 0 && lin.a()->value.norm() > 0);
        // The same seed draws the same U and A on every platform (counter-based normals).
        {
            std::mt19937 same(4);
            Layer again(6, 8, same, true);
            PstLinear<double> other(again.params, again.w, again.b, o, 42);
            QVERIFY(other.u()->value == lin.u()->value && other.a()->value == lin.a()->value);
        }
        // Move every trainable matrix off zero so that each term of the estimator is exercised.
        for (Parameter<double> *p : {lin.u(), lin.v(), lin.a(), lin.b(), lin.r(), lin.c()})
            p->value = randomMat(p->value.rows(), p->value.cols(), rng, 0.3);
        lin.setSparsity(0.4);
        MatX x = randomMat(5, 8, rng);
        const MatX r = randomMat(5, 6, rng);
        MatX y;
        lin.forward(x, y);
        QCOMPARE(lin.activeWeights(), int64_t(48 - 19)); // floor(48 x 0.4) pruned
        const MatX mask0 = maskOf(lin.mask(), 6, 8);
        const MatX m0 = lin.scores(lin.adapted());
        // The kept entries are the largest scores.
        double minKept = 1e300, maxPruned = -1e300;
        for (int64_t i = 0; i < 48; ++i) {
            if (mask0.data()[i])
                minKept = std::min(minKept, m0.data()[i]);
            else
                maxPruned = std::max(maxPruned, m0.data()[i]);
        }
        QVERIFY(minKept >= maxPruned);
        QVERIFY((y - ((x * lin.effectiveWeight().transpose()).rowwise() + layer.b->value.col(0).transpose())).norm() <
                1e-12);
        auto surrogate = [&] {
            const MatX wt = lin.adapted();
            const MatX w = wt.cwiseProduct(mask0 + lin.scores(wt) - m0);
            return weighted((x * w.transpose()).rowwise() + layer.b->value.col(0).transpose(), r);
        };
        layer.params.zeroGrad();
        MatX dx = MatX::Zero(5, 8);
        lin.backward(r, x, &dx);
        QVERIFY(fdError(x.data(), x.size(), dx.data(), surrogate) < kTol);
        for (Parameter<double> *p : {lin.u(), lin.v(), lin.a(), lin.b(), lin.r(), lin.c()})
            QVERIFY2(fdError(p, surrogate) < kTol, p->name.c_str());
        QCOMPARE(layer.w->grad.size(), Eigen::Index(0));
        // A caller may unfreeze the bias (a task head's, say): then it trains too.
        layer.params.setTrainable(layer.b->name, true);
        lin.forward(x, y);
        lin.backward(r, x, nullptr);
        QVERIFY(fdError(layer.b, surrogate) < kTol);
    }

    // Each kind against PyTorch autograd of the same formulas written as the official code writes them
    // (tests/fixtures/make_kind_references.py, torch 2.15.0): output and every gradient in fp32, within 1e-5 of
    // max(1, the reference's largest magnitude).
    void againstPyTorch() {
        const auto ref = test::readReference(test::sourceDir() + "/tests/fixtures/kinds-reference.safetensors");
        auto mat = [&](const std::string &name) {
            const test::RefTensor &t = ref.at(name);
            return Matrix<float>(Eigen::Map<const Matrix<float>>(t.f32.data(), t.dim(0), t.dim(1)));
        };
        auto close = [&](const Matrix<float> &got, const std::string &name) {
            const Matrix<float> want = mat(name);
            if (got.rows() != want.rows() || got.cols() != want.cols())
                return false;
            const double scale = std::max(1.0f, want.cwiseAbs().maxCoeff());
            const double err = (got - want).cwiseAbs().maxCoeff() / scale;
            if (err > 1e-5)
                qWarning("%s: %g", name.c_str(), err);
            return err <= 1e-5;
        };
        auto layer = [&](const std::string &kind, const std::string &w, const std::string &b) {
            auto set = std::make_unique<ParameterSet<float>>();
            Parameter<float> pw;
            pw.name = "model.layers.0.mlp.up_proj.weight";
            pw.value = ref.count(kind + ".in." + w) ? mat(kind + ".in." + w) : Matrix<float>::Zero(6, 8);
            set->add(std::move(pw));
            Parameter<float> pb;
            pb.name = "model.layers.0.mlp.up_proj.bias";
            pb.isBias = true;
            pb.value = mat(kind + ".in." + b);
            set->add(std::move(pb));
            return set;
        };
        {
            auto set = layer("pst", "W", "b");
            PstOptions o;
            o.rank = 2;
            o.maskRank = 3;
            o.beta = 0.7;
            o.alpha1 = 1.3;
            o.alpha2 = 0.4;
            PstLinear<float> lin(*set, set->find("model.layers.0.mlp.up_proj.weight"),
                                 set->find("model.layers.0.mlp.up_proj.bias"), o, 1);
            lin.u()->value = mat("pst.in.U");
            lin.v()->value = mat("pst.in.V");
            lin.a()->value = mat("pst.in.A");
            lin.b()->value = mat("pst.in.B");
            lin.r()->value = mat("pst.in.R");
            lin.c()->value = mat("pst.in.C");
            lin.setSparsity(0.4);
            const Matrix<float> x = mat("pst.in.x");
            Matrix<float> y, dx = Matrix<float>::Zero(x.rows(), x.cols());
            lin.forward(x, y);
            QVERIFY(close(y, "pst.y"));
            lin.backward(mat("pst.in.dy"), x, &dx);
            QVERIFY(close(dx, "pst.grad.x"));
            QVERIFY(close(lin.u()->grad, "pst.grad.U") && close(lin.v()->grad, "pst.grad.V"));
            QVERIFY(close(lin.a()->grad, "pst.grad.A") && close(lin.b()->grad, "pst.grad.B"));
            QVERIFY(close(lin.r()->grad, "pst.grad.R") && close(lin.c()->grad, "pst.grad.C"));
        }
        {
            auto set = layer("losparse", "S", "b");
            LowRankSparseLinear<float> lin(*set, set->find("model.layers.0.mlp.up_proj.weight"),
                                           set->find("model.layers.0.mlp.up_proj.bias"), 2);
            lin.left()->value = mat("losparse.in.L");
            lin.right()->value = mat("losparse.in.Rr");
            lin.sparse()->value = mat("losparse.in.S");
            lin.setRowMask({1, 0, 1, 1, 0, 1});
            const Matrix<float> x = mat("losparse.in.x");
            Matrix<float> y, dx = Matrix<float>::Zero(x.rows(), x.cols());
            lin.forward(x, y);
            QVERIFY(close(y, "losparse.y"));
            lin.backward(mat("losparse.in.dy"), x, &dx);
            QVERIFY(close(dx, "losparse.grad.x"));
            QVERIFY(close(lin.left()->grad, "losparse.grad.L") && close(lin.right()->grad, "losparse.grad.Rr"));
            QVERIFY(close(lin.sparse()->grad, "losparse.grad.S"));
            QVERIFY(close(set->find("model.layers.0.mlp.up_proj.bias")->grad, "losparse.grad.b"));
        }
        {
            auto set = layer("masked", "W", "b");
            Parameter<float> *w = set->find("model.layers.0.mlp.up_proj.weight");
            MaskedLinear<float> lin(*set, w, set->find("model.layers.0.mlp.up_proj.bias"), 0.5);
            lin.scores()->value = mat("masked.in.scores");
            const Matrix<float> x = mat("masked.in.x");
            Matrix<float> y, dx = Matrix<float>::Zero(x.rows(), x.cols());
            lin.forward(x, y);
            QVERIFY(close(y, "masked.y"));
            lin.backward(mat("masked.in.dy"), x, &dx);
            QVERIFY(close(dx, "masked.grad.x") && close(w->grad, "masked.grad.W"));
            QVERIFY(close(lin.scores()->grad, "masked.grad.scores"));
            QVERIFY(close(set->find("model.layers.0.mlp.up_proj.bias")->grad, "masked.grad.b"));
        }
    }

    // A block that runs some MLP channels and KV groups computes what the dense model computes with the other
    // channels' outputs zeroed (the down projection's columns, the output projection's columns of the dropped
    // heads); its gradients pass finite differences.
    void gatheredBlocks_data() {
        QTest::addColumn<QString>("model");
        QTest::newRow("hf-llama (GQA)") << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-llama");
        QTest::newRow("hf-gpt2 (fused q|k|v)") << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-gpt2");
        QTest::newRow("hf-phi (parallel)") << QString::fromStdString(test::sourceDir() + "/tests/fixtures/hf-phi");
    }
    void gatheredBlocks() {
        QFETCH(QString, model);
        auto m = openModel(model.toStdString());
        const ModelConfig &c = m->config;
        CausalLm<double> gathered(*m), zeroed(*m);
        const TokenBatch batch = randomBatch(*m, 2, 7, 9);
        BlockSelection sel;
        for (int32_t j = 0; j < int32_t(c.intermediateSize); j += 3)
            sel.mlpChannels.push_back(j);
        sel.kvGroups = {int32_t(c.numKvHeads) - 1};
        gathered.setSelection(0, sel);
        const int perGroup = int(c.numHeads / c.numKvHeads), d = int(c.headDim);
        for (CausalLm<double>::LinearSlot s : zeroed.linears()) {
            if (s.layer != 0)
                continue;
            MatX &w = static_cast<DenseLinear<double> *>(s.kind)->weight()->value;
            if (s.role == TensorRole::MlpDown)
                for (int64_t j = 0; j < w.cols(); ++j)
                    if (j % 3)
                        w.col(j).setZero();
            if (s.role == TensorRole::AttnO)
                for (int64_t j = 0; j < w.cols(); ++j)
                    if (j / d / perGroup != int(c.numKvHeads) - 1)
                        w.col(j).setZero();
        }
        const double a = gathered.forward(batch), b = zeroed.forward(batch);
        QVERIFY2(std::abs(a - b) < 1e-12 * std::abs(b), qPrintable(QString::number(a - b)));
        QVERIFY(worstFdError(gathered, batch, [](const std::string &n) { return n.find("layers.0.") != std::string::npos; }) <
                kTol);
        // The skipped channels get no gradient: the up projection's unselected rows.
        for (CausalLm<double>::LinearSlot s : gathered.linears())
            if (s.layer == 0 && s.role == TensorRole::MlpUp) {
                const MatX &g = static_cast<DenseLinear<double> *>(s.kind)->weight()->grad;
                QVERIFY(g.row(1).isZero() && g.row(3).norm() > 0);
            }
        // AdamW leaves the skipped channels alone, moments included (Parameter::activeRows and activeCols): the up
        // projection's unselected rows and their biases, the down projection's unselected columns, the dropped
        // groups' q/k/v rows (of the fused projection too) and output-projection columns; the rest moves.
        // A dense step first, so that every entry has moments that a second step would move.
        CausalLm<double> stepped(*m);
        AdamW<double> adam;
        const auto step = [&] {
            stepped.parameters().zeroGrad();
            stepped.forward(batch);
            stepped.backward();
            adam.step(stepped.parameters(), 1e-3);
        };
        stepped.clearSelections();
        step();
        stepped.setSelection(0, sel);
        std::vector<MatX> before, beforeM, beforeV;
        for (size_t i = 0; i < stepped.parameters().size(); ++i) {
            before.push_back(stepped.parameters()[i].value);
            beforeM.push_back(adam.firstMoments()[i]);
            beforeV.push_back(adam.secondMoments()[i]);
        }
        step();
        const int64_t groupWidth = int64_t(c.numHeads / c.numKvHeads) * c.headDim;
        const int64_t kvWidth = c.numKvHeads * c.headDim;
        int checked = 0;
        for (size_t i = 0; i < stepped.parameters().size(); ++i) {
            const Parameter<double> &p = stepped.parameters()[i];
            if (p.layer != 0 || !p.trainable())
                continue;
            const MatX &was = before[i], &now = p.value;
            // Whether entry (r, col) belongs to a skipped channel: by the output row (rows) or input column (cols).
            std::function<bool(int64_t, int64_t)> skipped;
            const auto channel = [](int64_t j) { return j % 3 != 0; };
            const auto qGroup = [&](int64_t j) { return j / groupWidth != c.numKvHeads - 1; };
            const auto kvGroup = [&](int64_t j) { return j / c.headDim != c.numKvHeads - 1; };
            const int64_t qWidth = c.numHeads * c.headDim;
            const auto entry = [&](int64_t r, int64_t col) { return p.value.rows() == 1 ? col : r; };
            switch (p.role) {
            case TensorRole::MlpUp:
            case TensorRole::MlpGate: skipped = [&](int64_t r, int64_t col) { return channel(entry(r, col)); }; break;
            case TensorRole::MlpDown:
                if (p.isBias)
                    continue;
                skipped = [&](int64_t, int64_t col) { return channel(col); };
                break;
            case TensorRole::AttnQ: skipped = [&](int64_t r, int64_t col) { return qGroup(entry(r, col)); }; break;
            case TensorRole::AttnK:
            case TensorRole::AttnV: skipped = [&](int64_t r, int64_t col) { return kvGroup(entry(r, col)); }; break;
            case TensorRole::AttnQkv:
                skipped = [&](int64_t r, int64_t col) {
                    const int64_t j = entry(r, col);
                    return j < qWidth ? qGroup(j) : kvGroup((j - qWidth) % kvWidth);
                };
                break;
            case TensorRole::AttnO:
                if (p.isBias)
                    continue;
                skipped = [&](int64_t, int64_t col) { return qGroup(col); };
                break;
            default: continue;
            }
            int64_t still = 0, moved = 0;
            for (int64_t r = 0; r < now.rows(); ++r)
                for (int64_t col = 0; col < now.cols(); ++col) {
                    if (skipped(r, col))
                        QVERIFY2(now(r, col) == was(r, col) && adam.firstMoments()[i](r, col) == beforeM[i](r, col) &&
                                     adam.secondMoments()[i](r, col) == beforeV[i](r, col),
                                 p.name.c_str());
                    (skipped(r, col) ? still : moved) += 1;
                }
            QVERIFY2(still > 0 && moved > 0 && (now - was).norm() > 0, p.name.c_str());
            ++checked;
        }
        QVERIFY(checked >= 4);
        QVERIFY_THROWS_EXCEPTION(LatheError, gathered.setSelection(0, BlockSelection{{3, 1}, {}}));
        QVERIFY_THROWS_EXCEPTION(LatheError, gathered.setSelection(0, BlockSelection{{}, {int32_t(c.numKvHeads)}}));
        gathered.clearSelections();
        QVERIFY(std::abs(gathered.forward(batch) - CausalLm<double>(*m).forward(batch)) == 0);
    }

    // Kinds swapped into a whole model: finite differences through every block, and the export writes each
    // linear's effective weight under its Hugging Face name.
    void kindsInTheModel() {
        auto m = openModel(test::sourceDir() + "/tests/fixtures/hf-llama");
        CausalLm<double> lm(*m);
        const TokenBatch batch = randomBatch(*m, 2, 7, 10);
        const double dense = lm.forward(batch);
        lm.replaceLinear("model.layers.0.self_attn.q_proj.weight", [](auto &ps, auto *w, auto *b) {
            return std::make_unique<LowRankSparseLinear<double>>(ps, w, b, 3);
        });
        lm.replaceLinear("model.layers.1.mlp.down_proj.weight", [](auto &ps, auto *w, auto *b) {
            return std::make_unique<LowRankSparseLinear<double>>(ps, w, b, 2);
        });
        QVERIFY(std::abs(lm.forward(batch) - dense) < 1e-10); // L R + S = W
        std::vector<uint8_t> mask;
        lm.replaceLinear("model.layers.1.mlp.up_proj.weight", [&](auto &, auto *w, auto *b) {
            mask.resize(size_t(w->value.size()));
            for (size_t i = 0; i < mask.size(); ++i)
                mask[i] = uint8_t(i % 2);
            return std::make_unique<MaskedLinear<double>>(w, b, mask);
        });
        QVERIFY_THROWS_EXCEPTION(LatheError, lm.replaceLinear("model.layers.1.mlp.up_proj.weight", [](auto &, auto *w, auto *b) {
            return std::make_unique<DenseLinear<double>>(w, b);
        }));
        QVERIFY_THROWS_EXCEPTION(LatheError, lm.replaceLinear("model.norm.weight", [](auto &, auto *w, auto *b) {
            return std::make_unique<DenseLinear<double>>(w, b);
        }));
        QVERIFY(lm.parameters().find("model.layers.0.self_attn.q_proj.lowrank_left"));
        QVERIFY(!lm.parameters().find("model.layers.0.self_attn.q_proj.weight"));
        QVERIFY(worstFdError(lm, batch, [](const std::string &) { return true; }) < kTol);
        // The export: the tensor names of the checkpoint, once each, with the effective weights.
        std::vector<std::string> names;
        MatX q;
        lm.forEachExportTensor([&](const std::string &name, const MatX &value) {
            names.push_back(name);
            if (name == "model.layers.0.self_attn.q_proj.weight")
                q = value;
        });
        std::vector<std::string> want;
        for (const TensorInfo &t : m->tensors())
            want.push_back(t.name);
        std::sort(names.begin(), names.end());
        std::sort(want.begin(), want.end());
        QCOMPARE(names, want);
        for (const CausalLm<double>::LinearSlot &s : lm.linears())
            if (s.kind->weightName() == "model.layers.0.self_attn.q_proj.weight")
                QVERIFY((q - s.kind->effectiveWeight()).norm() == 0);
    }

    // Recomputation: the same loss and gradients as keeping everything, bit for bit, and the memory formula.
    void recomputeIsExact() {
        auto m = openModel(test::sourceDir() + "/tests/fixtures/tf-qwen2");
        CausalLm<float> keep(*m), again(*m);
        again.setRecompute(true);
        const TokenBatch batch = randomBatch(*m, 2, 9, 12);
        QCOMPARE(keep.forward(batch), again.forward(batch));
        keep.backward();
        again.backward();
        for (size_t i = 0; i < keep.parameters().size(); ++i)
            QVERIFY2(keep.parameters()[i].grad == again.parameters()[i].grad, keep.parameters()[i].name.c_str());
        // With a selection and a second step (the saved inputs are reused correctly after a backward).
        BlockSelection sel;
        sel.mlpChannels = {0, 2, 5};
        keep.setSelection(1, sel);
        again.setSelection(1, sel);
        QCOMPARE(keep.forward(batch), again.forward(batch));
        keep.backward();
        again.backward();
        for (size_t i = 0; i < keep.parameters().size(); ++i)
            QVERIFY(keep.parameters()[i].grad == again.parameters()[i].grad);
        // SmolLM2-135M's shape at 1 x 512: 848,297,984 bytes kept without, far less with recomputation.
        ModelConfig c;
        c.hiddenSize = 576;
        c.intermediateSize = 1536;
        c.numLayers = 30;
        c.numHeads = 9;
        c.numKvHeads = 3;
        c.headDim = 64;
        c.vocabSize = 49152;
        QCOMPARE(CausalLm<float>::activationBytes(c, 1, 512), uint64_t(848297984));
        const uint64_t with = CausalLm<float>::activationBytes(c, 1, 512, 4096, true);
        QCOMPARE(with, uint64_t((512 * 576 * 30 + (848297984 / 4 - 512 * (2 * 576 + 4096)) / 30 + 512 * (2 * 576 + 4096)) * 4));
        QVERIFY(with < 848297984 / 8);
    }
};

QTEST_GUILESS_MAIN(TestLinearKinds)
#include "tst_linearkinds.moc"
