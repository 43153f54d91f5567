// The analysis engine: LAPACK wrappers against matrices with known spectra, randomized SVD and its error bound,
// spectrum statistics (effective/stable rank, power-law alpha on synthetic Pareto data), pruning masks and their
// statistics, Wanda scores and calibration norms, the content hash, and the HDF5 analysis archive.

#include "analysis/analysisarchive.h"
#include "analysis/importance.h"
#include "analysis/matrixscores.h"
#include "analysis/modelanalysis.h"
#include "analysis/modelspectra.h"
#include "analysis/sensitivity.h"
#include "analysis/sparsitymask.h"
#include "engine/calibration.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "model/contenthash.h"
#include "model/model.h"
#include "model/syntheticmodel.h"
#include "numeric/linalg.h"
#include "numeric/randomizedsvd.h"
#include "numeric/spectrum.h"
#include "testsupport.h"

#include <QtTest/QtTest>

#include <cmath>
#include <filesystem>
#include <random>

using namespace lathe;

namespace {

std::string demoPath() { return test::sourceDir() + "/resources/demo/stories260K.bin"; }

Mat randomOrthonormal(int64_t rows, int64_t cols, std::mt19937_64 &rng) {
    std::normal_distribution<float> nd;
    Mat m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = nd(rng);
    orthonormalizeColumns(m);
    return m;
}

// A = U diag(s) V^T with random orthonormal U, V: a matrix whose singular values are known exactly.
Mat withSpectrum(int64_t rows, int64_t cols, const std::vector<double> &s, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const int64_t k = int64_t(s.size());
    const Mat u = randomOrthonormal(rows, k, rng), v = randomOrthonormal(cols, k, rng);
    Eigen::VectorXf sv(k);
    for (int64_t i = 0; i < k; ++i)
        sv[i] = float(s[size_t(i)]);
    return u * sv.asDiagonal() * v.transpose();
}

std::vector<double> decaying(int64_t n, double rate) {
    std::vector<double> s(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        s[size_t(i)] = 10.0 * std::exp(-rate * double(i));
    return s;
}

double maxAbsDiff(const std::vector<double> &a, const std::vector<double> &b) {
    double m = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

} // namespace

class TestAnalysis : public QObject {
    Q_OBJECT

private slots:
    // OWL's allocation: mean = target, spread 2 lambda, the most important block pruned least; flat scores give
    // the target everywhere; clamped at 0.
    void layerBudget() {
        const std::vector<double> b = proposeLayerSparsity({0.01, 0.03, 0.02, 0.05}, 0.5, 0.08);
        QCOMPARE(b.size(), size_t(4));
        double mean = 0;
        for (double x : b)
            mean += x / 4;
        QVERIFY(std::abs(mean - 0.5) < 1e-12);
        QVERIFY(std::abs((*std::max_element(b.begin(), b.end()) - *std::min_element(b.begin(), b.end())) - 0.16) < 1e-12);
        QVERIFY(b[3] < b[1] && b[1] < b[2] && b[2] < b[0]);
        QVERIFY(proposeLayerSparsity({2, 2, 2}, 0.3, 0.1) == std::vector<double>(3, 0.3));
        const std::vector<double> low = proposeLayerSparsity({0, 1}, 0.05, 0.1);
        QCOMPARE(low[1], 0.0);
        bool threw = false;
        try {
            proposeLayerSparsity({1, 2}, 1.0, 0.1);
        } catch (const LatheError &) {
            threw = true;
        }
        QVERIFY(threw);
    }

    // The workbench's per-matrix scores (moved from ui/ to core): magnitude at 50% per row prunes half of every row
    // and every row and column is counted once in the histograms; Wanda without calibration norms falls back to
    // magnitude and says why; an N:M pattern gives exact N/M rows; a bad tensor name is an error, not a crash.
    void matrixScores() {
        std::shared_ptr<const Model> model = makeSyntheticModel(*syntheticShape("tiny"));
        const TensorInfo *t = nullptr;
        for (const TensorInfo &x : model->tensors())
            if (x.role == TensorRole::MlpDown && x.layer == 0)
                t = &x;
        QVERIFY(t);
        MatrixScoresRequest req;
        req.model = model;
        req.tensor = t->name;
        req.pattern.ratio = 0.5;
        req.pattern.perRow = true;
        MatrixScores s = computeMatrixScores(req);
        QVERIFY2(s.error.empty(), s.error.c_str());
        QCOMPARE(s.rows, t->shape[0]);
        QCOMPARE(s.stats.sparsity, 0.5);
        double rows = 0, cols = 0, scores = 0;
        for (double c : s.rowHist.counts)
            rows += c;
        for (double c : s.colHist.counts)
            cols += c;
        QCOMPARE(rows, double(s.rows));
        QCOMPARE(cols, double(s.cols));
        QCOMPARE(s.scoreHist.total() + double(s.zeroScores), double(s.rows * s.cols));
        QCOMPARE(s.used, ImportanceKind::Magnitude);
        QVERIFY(std::isfinite(s.threshold));
        req.kind = ImportanceKind::Wanda; // no norms collected
        s = computeMatrixScores(req);
        QCOMPARE(s.used, ImportanceKind::Magnitude);
        QVERIFY(s.note.find("calibration") != std::string::npos);
        req.pattern = SparsityPattern{};
        req.pattern.n = 2;
        req.pattern.m = 4;
        s = computeMatrixScores(req);
        QVERIFY(s.stats.nmValid);
        req.tensor = "no.such.weight";
        QVERIFY(!computeMatrixScores(req).error.empty());
    }

    void singularValuesKnown_data() {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::newRow("square") << 96 << 96;
        QTest::newRow("tall") << 300 << 40;
        QTest::newRow("wide") << 40 << 300;
    }

    // sgesdd and the fp64 Gram route both recover a prescribed spectrum to fp32 accuracy (relative to s_1).
    void singularValuesKnown() {
        QFETCH(int, rows);
        QFETCH(int, cols);
        const std::vector<double> s = decaying(std::min(rows, cols), 0.08);
        const Mat a = withSpectrum(rows, cols, s, 7);
        const std::vector<double> g = singularValues(a.data(), rows, cols);
        const std::vector<double> h = singularValuesViaGram(a.data(), rows, cols);
        QCOMPARE(int(g.size()), std::min(rows, cols));
        QCOMPARE(int(h.size()), std::min(rows, cols));
        QVERIFY2(maxAbsDiff(g, s) < 1e-5 * s[0], qPrintable(QString::number(maxAbsDiff(g, s))));
        QVERIFY2(maxAbsDiff(h, s) < 1e-5 * s[0], qPrintable(QString::number(maxAbsDiff(h, s))));
        QVERIFY(std::is_sorted(g.rbegin(), g.rend()));
    }

    void gramCancels() {
        const Mat a = Mat::Random(5000, 16);
        std::atomic<bool> cancelled{true};
        QVERIFY(singularValuesViaGram(a.data(), a.rows(), a.cols(), &cancelled).empty());
    }

    void thinSvdReconstructs() {
        const Mat a = Mat::Random(37, 23);
        const ThinSvd svd = thinSvd(a);
        QCOMPARE(svd.u.rows(), 37);
        QCOMPARE(svd.vt.cols(), 23);
        Eigen::VectorXf s = Eigen::Map<const Eigen::VectorXf>(svd.s.data(), Eigen::Index(svd.s.size()));
        const Mat back = svd.u * s.asDiagonal() * svd.vt;
        QVERIFY((back - a).cwiseAbs().maxCoeff() < 1e-5f);
        QVERIFY((svd.u.transpose() * svd.u - Mat::Identity(23, 23)).cwiseAbs().maxCoeff() < 1e-5f);
    }

    void symmetricEigenDescending() {
        // diag(1, 2, 3) rotated: eigenvalues 3, 2, 1 with A v = lambda v.
        std::mt19937_64 rng(3);
        const Mat q = randomOrthonormal(3, 3, rng);
        const Eigen::Matrix3d a = (q.cast<double>() * Eigen::Vector3d(1, 2, 3).asDiagonal() *
                                   q.cast<double>().transpose());
        Eigen::Matrix<double, 3, 3, Eigen::RowMajor> ar = a;
        std::vector<double> w, v;
        symmetricEigen(ar.data(), 3, w, &v);
        QVERIFY(std::abs(w[0] - 3) < 1e-6 && std::abs(w[1] - 2) < 1e-6 && std::abs(w[2] - 1) < 1e-6);
        for (int j = 0; j < 3; ++j) {
            Eigen::Vector3d col(v[size_t(j)], v[size_t(3 + j)], v[size_t(6 + j)]);
            QVERIFY((a * col - w[size_t(j)] * col).norm() < 1e-6);
        }
    }

    // The top-k values are within the stated bound of the truth (and the bound is not vacuous).
    void randomizedSvdWithinBound() {
        const std::vector<double> s = decaying(200, 0.2);
        const Mat a = withSpectrum(400, 200, s, 11);
        RandomizedSvdParams p;
        p.rank = 20;
        p.wantVectors = true;
        const RandomizedSvdResult r = randomizedSvd(a, p);
        QCOMPARE(int(r.values.size()), 20);
        QVERIFY(r.errorBound > 0);
        QVERIFY2(r.relativeError < 0.1, qPrintable(QString::number(r.relativeError)));
        // ||A - QQ^T A|| is at least s_{l+1} (l = 30 probes) and at most the bound.
        QVERIFY2(r.errorEstimate >= 0.9 * s[30] && r.errorEstimate <= r.errorBound,
                 qPrintable(QString("%1 %2 %3").arg(r.errorEstimate).arg(s[30]).arg(r.errorBound)));
        for (int i = 0; i < 20; ++i)
            QVERIFY(std::abs(r.values[size_t(i)] - s[size_t(i)]) <= r.errorEstimate * 1.01 + 1e-5 * s[0]);
        QCOMPARE(r.u.cols(), 20);
        QCOMPARE(r.vt.rows(), 20);
    }

    void spectrumStatistics() {
        const std::vector<double> flat(50, 2.0);
        const SpectrumStats f = spectrumStats(flat);
        QVERIFY(std::abs(f.effectiveRank - 50) < 1e-9);
        QVERIFY(std::abs(f.stableRank - 50) < 1e-9);
        const std::vector<double> one = {5.0, 0.0, 0.0};
        QVERIFY(std::abs(spectrumStats(one).effectiveRank - 1) < 1e-12);
        QVERIFY(std::abs(spectrumStats(one).stableRank - 1) < 1e-12);
        const std::vector<double> s = {3, 2, 1};
        QVERIFY(std::abs(energyKept(s, 1) - 9.0 / 14.0) < 1e-12);
        QVERIFY(std::abs(energyKept(s, 10) - 1.0) < 1e-12);
        QCOMPARE(rankForEnergy(s, 0.9), 2);
        QCOMPARE(cumulativeEnergy(s).back(), 1.0);
        // LoSparse: r = ceil(rho d1 d2 / (d1 + d2)).
        QCOMPARE(losparseRank(576, 576, 0.05), 15);
        QCOMPARE(losparseRank(1536, 576, 0.05), 21);
        QCOMPARE(losparseRank(10, 10, 0.0), 0);
    }

    // Eigenvalues drawn from a Pareto law of exponent 3 above xmin = 1, plus a bulk of small values below it: the
    // fit recovers alpha and xmin.
    void powerLawAlpha() {
        std::mt19937_64 rng(5);
        std::uniform_real_distribution<double> u(0.0, 1.0);
        std::vector<double> ev;
        for (int i = 0; i < 3000; ++i)
            ev.push_back(std::pow(1.0 - u(rng), -1.0 / (3.0 - 1.0)));
        for (int i = 0; i < 300; ++i)
            ev.push_back(0.1 + 0.8 * u(rng));
        std::vector<double> sv;
        for (double e : ev)
            sv.push_back(std::sqrt(e));
        std::sort(sv.rbegin(), sv.rend());
        const SpectrumStats st = spectrumStats(sv);
        QVERIFY2(std::abs(st.alpha - 3.0) < 0.2, qPrintable(QString::number(st.alpha)));
        QVERIFY2(st.alphaXmin > 0.8 && st.alphaXmin < 2.0, qPrintable(QString::number(st.alphaXmin)));
        QVERIFY(st.alphaKs < 0.05);
        QVERIFY(std::isnan(spectrumStats({3.0, 2.0, 1.0}).alpha)); // too few values to fit
    }

    void pruneMaskUnstructured() {
        std::vector<float> scores(100);
        for (int i = 0; i < 100; ++i)
            scores[size_t(i)] = float((i * 37) % 100);
        SparsityPattern p;
        p.ratio = 0.3;
        const auto mask = pruneMask(scores.data(), 10, 10, p);
        int pruned = 0;
        for (int i = 0; i < 100; ++i) {
            pruned += mask[size_t(i)] == 0;
            QCOMPARE(mask[size_t(i)] == 0, scores[size_t(i)] < 30.f); // exactly the 30 lowest
        }
        QCOMPARE(pruned, 30);
        // Ties: all equal scores, 25% pruned, by position.
        std::vector<float> same(8, 1.f);
        p.ratio = 0.25;
        const auto m2 = pruneMask(same.data(), 2, 4, p);
        QCOMPARE(std::count(m2.begin(), m2.end(), 0), 2);
        // NaN counts as lowest.
        std::vector<float> withNan = {1, NAN, 3, 4};
        p.ratio = 0.25;
        QCOMPARE(pruneMask(withNan.data(), 1, 4, p)[1], uint8_t(0));
    }

    void pruneMaskPerRowAndNm() {
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> d(0, 1);
        std::vector<float> s(16 * 32);
        for (float &v : s)
            v = d(rng);
        SparsityPattern row;
        row.ratio = 0.5;
        row.perRow = true;
        const auto m = pruneMask(s.data(), 16, 32, row);
        const SparsityStats st = maskStats(m.data(), 16, 32);
        for (float f : st.rowZeroFraction)
            QCOMPARE(f, 0.5f);
        QCOMPARE(st.sparsity, 0.5);
        SparsityPattern nm;
        nm.n = 2;
        nm.m = 4;
        const auto mnm = pruneMask(s.data(), 16, 32, nm);
        const SparsityStats snm = maskStats(mnm.data(), 16, 32, 2, 4);
        QVERIFY(snm.nmValid);
        QCOMPARE(snm.sparsity, 0.5);
        // In each group the two pruned are the two lowest.
        for (int g = 0; g < 16 * 32; g += 4) {
            std::vector<float> grp(s.begin() + g, s.begin() + g + 4), kept;
            for (int i = 0; i < 4; ++i)
                if (mnm[size_t(g + i)])
                    kept.push_back(s[size_t(g + i)]);
            std::sort(grp.begin(), grp.end());
            QVERIFY(*std::min_element(kept.begin(), kept.end()) >= grp[1]);
        }
        // The unstructured mask at 50% is generally not 2:4.
        SparsityPattern un;
        un.ratio = 0.5;
        const auto mu = pruneMask(s.data(), 16, 32, un);
        QVERIFY(!maskStats(mu.data(), 16, 32, 2, 4).nmValid);
        const SparsityStats cols = maskStats(mu.data(), 16, 32);
        QCOMPARE(int(cols.colZeroFraction.size()), 32);
    }

    void badPatterns() {
        std::vector<float> s(12, 1.f);
        SparsityPattern p;
        p.ratio = 1.0;
        QVERIFY_THROWS_EXCEPTION(LatheError, pruneMask(s.data(), 2, 6, p));
        p.ratio = -0.1;
        QVERIFY_THROWS_EXCEPTION(LatheError, validatePattern(p, 6));
        p.ratio = NAN;
        QVERIFY_THROWS_EXCEPTION(LatheError, validatePattern(p, 6));
        SparsityPattern nm;
        nm.n = 2;
        nm.m = 4;
        try {
            validatePattern(nm, 6);
            QFAIL("4 does not divide 6");
        } catch (const LatheError &e) {
            QVERIFY(std::string(e.what()).find("2:4") != std::string::npos);
            QVERIFY(!e.hint().empty());
        }
        nm.n = 4;
        QVERIFY_THROWS_EXCEPTION(LatheError, validatePattern(nm, 8));
    }

    void zeroStatsOfWeights() {
        const std::vector<float> w = {0, 1, 0, 2, 3, 0};
        const SparsityStats st = zeroStats(w.data(), 2, 3);
        QCOMPARE(st.zeros, 3);
        QCOMPARE(st.rowZeroFraction[0], 2.f / 3.f);
        QCOMPARE(st.colZeroFraction[0], 0.5f);
        QCOMPARE(st.colZeroFraction[2], 1.f);
    }

    void scores() {
        const std::vector<float> w = {-1, 2, 3, -4};
        const auto m = magnitudeScores(w.data(), 2, 2);
        QCOMPARE(m[3], 4.f);
        const auto wa = wandaScores(w.data(), 2, 2, {10.f, 0.5f});
        QCOMPARE(wa[0], 10.f);
        QCOMPARE(wa[1], 1.f);
        QCOMPARE(wa[2], 30.f);
        ImportanceStore store;
        QVERIFY(!store.has(ImportanceKind::Taylor));
        store.set(ImportanceKind::Taylor, "x", {1.f});
        QVERIFY(store.has(ImportanceKind::Taylor) && store.find(ImportanceKind::Taylor, "x"));
        QVERIFY(!store.find(ImportanceKind::Pst, "x"));
        store.clear(ImportanceKind::Taylor);
        QVERIFY(!store.has(ImportanceKind::Taylor));
        ImportanceKind k;
        QVERIFY(parseImportance("wanda", k) && k == ImportanceKind::Wanda);
        QVERIFY(!parseImportance("nope", k));
        QVERIFY(importanceNeedsGradients(ImportanceKind::Pst) && !importanceNeedsGradients(ImportanceKind::Wanda));
    }

    void calibrationSet() {
        std::vector<int32_t> tokens(1000);
        std::iota(tokens.begin(), tokens.end(), 0);
        CalibrationParams p;
        p.samples = 4;
        p.seqLen = 100;
        const CalibrationSet a = makeCalibrationSet(tokens, p), b = makeCalibrationSet(tokens, p);
        QCOMPARE(int(a.sequences.size()), 4);
        QVERIFY(a.sequences == b.sequences); // seeded
        for (const auto &s : a.sequences)
            QCOMPARE(s.front() % 100, 0); // window-aligned, non-overlapping
        // The recorded windows name the sequences, ascending and distinct (the run record lists them).
        QCOMPARE(a.windows.size(), a.sequences.size());
        for (size_t i = 0; i < a.windows.size(); ++i) {
            QCOMPARE(int64_t(a.sequences[i].front()), a.windows[i] * 100);
            QVERIFY(i == 0 || a.windows[i] > a.windows[i - 1]);
        }
        QVERIFY(a.note.empty());
        p.samples = 20;
        const CalibrationSet c = makeCalibrationSet(tokens, p);
        QCOMPARE(int(c.sequences.size()), 10);
        QVERIFY(!c.note.empty());
        p.seqLen = 2000;
        QVERIFY_THROWS_EXCEPTION(LatheError, makeCalibrationSet(tokens, p));
        QCOMPARE(a.signalBytes(64), uint64_t(4 * 100 * 64 * 4));
    }

    // Wanda's ||X_j|| for layer 0's q/k/v is the norm of RMSNorm(embedding) * g over the calibration tokens,
    // computed here independently of the hooks.
    void inputNormsMatchDirectComputation() {
        auto model = openModel(demoPath());
        Transformer engine(*model);
        std::vector<int32_t> tokens;
        for (int i = 0; i < 256; ++i)
            tokens.push_back((i * 7 + 3) % int(model->config.vocabSize));
        CalibrationParams p;
        p.samples = 2;
        p.seqLen = 64;
        const CalibrationSet set = makeCalibrationSet(tokens, p);
        const InputNorms norms = collectInputNorms(engine, *model, set);
        QCOMPARE(norms.tokens, 128);
        const std::string q0 = model->find(TensorRole::AttnQ, 0)->name;
        QVERIFY(norms.norms.count(q0));
        QVERIFY(norms.norms.count(model->find(TensorRole::MlpDown, 4)->name));
        const std::vector<float> g = model->loadFloat(*model->find(TensorRole::AttnNorm, 0));
        const int64_t d = model->config.hiddenSize;
        std::vector<double> acc(size_t(d), 0.0);
        for (const auto &seq : set.sequences) {
            const Mat e = engine.embed(TokenBatch::single(seq));
            for (int64_t r = 0; r < e.rows(); ++r) {
                const double rms = std::sqrt(double(e.row(r).squaredNorm()) / double(d) + model->config.normEps);
                for (int64_t c = 0; c < d; ++c) {
                    const double x = double(e(r, c)) / rms * g[size_t(c)];
                    acc[size_t(c)] += x * x;
                }
            }
        }
        for (int64_t c = 0; c < d; ++c)
            QVERIFY(std::abs(norms.norms.at(q0)[size_t(c)] - std::sqrt(acc[size_t(c)])) <
                    1e-4 * std::sqrt(acc[size_t(c)]) + 1e-6);
    }

    void contentHash() {
        auto a = openModel(demoPath());
        auto b = openModel(demoPath());
        const std::string h = modelContentHash(*a);
        QCOMPARE(int(h.size()), 16);
        QCOMPARE(h, modelContentHash(*b));
        const TensorInfo &t = *a->find(TensorRole::MlpDown, 2);
        std::vector<float> w = a->loadFloat(t);
        w[5] += 1e-3f;
        a->setFloat(t.name, w, t.shape);
        QVERIFY(modelContentHash(*a) != h);
        QVERIFY(hashBytes("abc", 3) != hashBytes("abd", 3));
        QCOMPARE(hashBytes("", 0), hashBytes("", 0));
    }

    void spectraOfModel() {
        auto model = openModel(demoPath());
        const auto targets = weightTargets(*model);
        // 5 blocks x 7 linears + the tied embedding.
        QCOMPARE(int(targets.size()), 36);
        SpectraParams p;
        p.threads = 2;
        const auto spectra = computeSpectra(*model, targets, p);
        for (size_t i = 0; i < targets.size(); ++i) {
            QCOMPARE(spectra[i].key, targets[i].key);
            QCOMPARE(int64_t(spectra[i].values.size()), std::min(spectra[i].rows, spectra[i].cols));
            const Mat m = loadTarget(*model, targets[i]);
            QVERIFY(std::abs(spectra[i].stats.frobeniusSq - double(m.squaredNorm())) < 1e-3 * m.squaredNorm());
        }
        // Stacked q/k/v and per-head targets.
        const auto stacked = stackedQkvTargets(*model);
        QCOMPARE(int(stacked.size()), 5);
        const Mat s0 = loadTarget(*model, stacked[0]);
        QCOMPARE(s0.rows(), model->config.hiddenSize + 2 * model->config.numKvHeads * model->config.headDim);
        const auto heads = headTargets(*model, model->find(TensorRole::AttnO, 1)->name);
        QCOMPARE(int(heads.size()), int(model->config.numHeads));
        QCOMPARE(loadTarget(*model, heads[1]).cols(), model->config.headDim);
        // Randomized top-k.
        p.topK = 8;
        const MatrixSpectrum top = computeSpectrum(loadTarget(*model, targets[1]), "x", p);
        QVERIFY(top.truncated && top.values.size() == 8);
        QCOMPARE(top.method, std::string("randomized"));
        for (int i = 0; i < 8; ++i)
            QVERIFY(std::abs(top.values[size_t(i)] - spectra[1].values[size_t(i)]) <= top.errorBound + 1e-4);
    }

    void spectraCancel() {
        auto model = openModel(demoPath());
        SpectraParams p;
        p.threads = 1;
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(CancelledError, computeSpectra(*model, weightTargets(*model), p, [&](const Progress &) {
                                     ++calls;
                                     return false;
                                 }));
        QVERIFY(calls >= 1);
    }

    // analyzeModel writes the archive, a second call reads everything from it, h5py-visible layout checked by
    // reading back through the public API; another model's hash is refused; a damaged file is an error, not a
    // crash; nothing is left behind under a temporary name.
    void archiveRoundTrip() {
        if (!analysisArchiveAvailable())
            QSKIP("this build has no HDF5");
        const std::string dir = test::tempDir("archive");
        const std::string model = dir + "/m.bin";
        std::filesystem::copy_file(demoPath(), model);
        auto m = openModel(model);
        AnalyzeParams p;
        // By default the archive goes to the per-user cache, never beside the model (issue 19 item 8).
        const QByteArray savedCache = qgetenv("XDG_CACHE_HOME");
        qputenv("XDG_CACHE_HOME", QByteArray::fromStdString(dir + "/cache"));
        const AnalyzeResult inCache = analyzeModel(*m, {}, p);
        if (savedCache.isNull())
            qunsetenv("XDG_CACHE_HOME");
        else
            qputenv("XDG_CACHE_HOME", savedCache);
        QCOMPARE(inCache.archivePath, dir + "/cache/lathe/analysis/" + inCache.data.modelHash + ".h5");
        QVERIFY(std::filesystem::exists(inCache.archivePath));
        for (const auto &e : std::filesystem::directory_iterator(dir))
            QVERIFY2(e.path().filename() == "m.bin" || e.path().filename() == "cache", e.path().c_str());
        // Beside the model when asked (the rest of this test works there).
        p.besideModel = true;
        const AnalyzeResult first = analyzeModel(*m, {}, p);
        QCOMPARE(first.computed, 36);
        QCOMPARE(first.archivePath, model + ".lathe.h5");
        QVERIFY(std::filesystem::exists(first.archivePath));
        const AnalyzeResult second = analyzeModel(*m, {}, p);
        QCOMPARE(second.computed, 0);
        QCOMPARE(second.cached, 36);
        for (const auto &[key, s] : first.data.spectra) {
            const MatrixSpectrum &t = second.data.spectra.at(key);
            QVERIFY(s.values == t.values);
            QCOMPARE(s.rows, t.rows);
            QCOMPARE(s.method, t.method);
            QCOMPARE(s.stats.effectiveRank, t.stats.effectiveRank);
            QCOMPARE(s.stats.alphaTail, t.stats.alphaTail);
        }
        AnalysisData other;
        QVERIFY(!loadAnalysisArchive(first.archivePath, "0000000000000000", other));
        AnalyzeResult withNorms = second;
        withNorms.data.inputNorms["x"] = {1.f, 2.f};
        withNorms.data.inputNormTokens = 7;
        updateAnalysisArchive(withNorms);
        AnalysisData back;
        QVERIFY(loadAnalysisArchive(first.archivePath, first.data.modelHash, back));
        QCOMPARE(back.inputNorms.at("x"), std::vector<float>({1.f, 2.f}));
        QCOMPARE(back.inputNormTokens, 7);
        for (const auto &e : std::filesystem::directory_iterator(dir))
            QVERIFY2(e.path().string().find(".tmp-") == std::string::npos, e.path().c_str());
        // Damage: keep the HDF5 signature, cut the rest.
        std::filesystem::resize_file(first.archivePath, 600);
        AnalysisData damaged;
        bool threw = false;
        try {
            loadAnalysisArchive(first.archivePath, first.data.modelHash, damaged);
        } catch (const LatheError &e) {
            threw = true;
            QVERIFY(std::string(e.what()).find("HDF5") != std::string::npos);
        }
        QVERIFY(threw);
        // analyzeModel survives the damaged archive: it recomputes and rewrites.
        const AnalyzeResult third = analyzeModel(*m, {}, p);
        QCOMPARE(third.computed, 36);
        QVERIFY(loadAnalysisArchive(first.archivePath, first.data.modelHash, back));
    }
};

QTEST_GUILESS_MAIN(TestAnalysis)
#include "tst_analysis.moc"
