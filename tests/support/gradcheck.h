#pragma once

// Helpers of the training engine's gradient checks (tst_trainops, tst_trainmodel, tst_linearkinds): random fp64
// matrices and the central finite-difference comparison every backward is held to.

#include "engine/transformer.h"
#include "train/causallm.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

namespace lathe::test {

inline train::Matrix<double> randomMat(int64_t rows, int64_t cols, std::mt19937 &rng, double scale = 1.0) {
    std::normal_distribution<double> n(0.0, scale);
    train::Matrix<double> m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = n(rng);
    return m;
}

// Max |analytic - numeric| / max(1e-12, max |numeric|) over every element of `x`, whose analytic gradient is `grad`,
// for the scalar loss `loss` (which reads x); numeric = (loss(x + e) - loss(x - e)) / 2e with e = 1e-6.
inline double fdError(double *x, int64_t n, const double *grad, const std::function<double()> &loss) {
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

// The weighted sum sum(y ⊙ r): a scalar loss whose gradient with respect to y is r.
inline double weighted(const train::Matrix<double> &y, const train::Matrix<double> &r) {
    return (y.array() * r.array()).sum();
}

// A parameter of a whole model against central finite differences of its loss on `batch`, at 8 elements drawn
// from `rng` (all of a smaller one); the gradient must be the one of the last backward on that batch. Returns max
// |analytic - numeric| / max(1e-4, the gradient's largest magnitude): the floor holds a gradient that is small or
// zero analytically (the key bias: softmax ignores a constant added to a row of scores) to an absolute bound
// instead, since the finite differences of an fp64 loss near 5 carry ~1e-9 of rounding at a step of 1e-6.
inline double modelFdError(train::CausalLm<double> &lm, const TokenBatch &batch, train::Parameter<double> &p,
                           std::mt19937 &rng) {
    const train::Matrix<double> grad = p.grad;
    std::uniform_int_distribution<int64_t> pick(0, p.value.size() - 1);
    double err = 0;
    for (int s = 0; s < std::min<int64_t>(8, p.value.size()); ++s) {
        const int64_t i = p.value.size() <= 8 ? s : pick(rng);
        double &x = p.value.data()[i];
        const double keep = x, eps = 1e-6;
        x = keep + eps;
        const double up = lm.forward(batch);
        x = keep - eps;
        const double down = lm.forward(batch);
        x = keep;
        err = std::max(err, std::abs((up - down) / (2 * eps) - grad.data()[i]));
    }
    return err / std::max(1e-4, grad.cwiseAbs().maxCoeff());
}

} // namespace lathe::test
