#include "numeric/randomizedsvd.h"

#include "numeric/blas.h"
#include "numeric/linalg.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

namespace lathe {

namespace {

Mat gaussian(int64_t rows, int64_t cols, std::mt19937_64 &rng) {
    std::normal_distribution<float> nd(0.f, 1.f);
    Mat m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = nd(rng);
    return m;
}

// c = op(a) * op(b) for row-major matrices.
Mat product(const Mat &a, bool ta, const Mat &b, bool tb) {
    const int64_t m = ta ? a.cols() : a.rows(), k = ta ? a.rows() : a.cols(), n = tb ? b.rows() : b.cols();
    Mat c(m, n);
    sgemm(ta, tb, m, n, k, 1.f, a.data(), a.cols(), b.data(), b.cols(), 0.f, c.data(), c.cols());
    return c;
}

} // namespace

RandomizedSvdResult randomizedSvd(const Mat &a, const RandomizedSvdParams &params) {
    RandomizedSvdResult r;
    const int64_t minDim = std::min(a.rows(), a.cols());
    const int64_t k = std::clamp<int64_t>(params.rank, 0, minDim);
    if (k == 0)
        return r;
    const int64_t l = std::min(minDim, k + std::max<int64_t>(params.oversample, 0));
    std::mt19937_64 rng(params.seed);

    Mat q = product(a, false, gaussian(a.cols(), l, rng), false); // rows x l
    orthonormalizeColumns(q);
    for (int it = 0; it < params.powerIterations; ++it) {
        Mat z = product(a, true, q, false); // cols x l
        orthonormalizeColumns(z);
        q = product(a, false, z, false);
        orthonormalizeColumns(q);
    }
    const Mat b = product(q, true, a, false); // l x cols
    ThinSvd svd = thinSvd(b);
    r.values.assign(svd.s.begin(), svd.s.begin() + k);
    if (params.wantVectors) {
        r.u = product(q, false, svd.u, false).leftCols(k);
        r.vt = svd.vt.topRows(k);
    }

    // Error probes: ||(I - Q Q^T) A w|| for 10 Gaussian w; the bound is 10 sqrt(2/pi) times the largest.
    constexpr int kProbes = 10;
    const Mat w = gaussian(a.cols(), kProbes, rng);
    Mat aw = product(a, false, w, false);               // rows x probes
    const Mat proj = product(q, true, aw, false);       // l x probes
    aw -= product(q, false, proj, false);
    double worst = 0;
    for (int j = 0; j < kProbes; ++j)
        worst = std::max(worst, double(aw.col(j).norm()));
    r.errorBound = 10.0 * std::sqrt(2.0 / std::numbers::pi) * worst;
    r.relativeError = r.values.front() > 0 ? r.errorBound / r.values.front() : 0;

    // Power iteration on E^T E, E = (I - Q Q^T) A.
    Mat v = gaussian(a.cols(), 1, rng);
    v /= v.norm();
    for (int it = 0; it < 20; ++it) {
        Mat x = product(a, false, v, false);
        x -= product(q, false, product(q, true, x, false), false);
        r.errorEstimate = double(x.norm());
        v = product(a, true, x, false);
        const float n = v.norm();
        if (n == 0)
            break;
        v /= n;
    }
    return r;
}

} // namespace lathe
