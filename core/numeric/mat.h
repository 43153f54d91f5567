#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace lathe {

// Activations and weights of the CPU engine. Row-major so that a (tokens x width) activation keeps each token's
// vector contiguous, and a linear weight (out x in) is laid out exactly as Hugging Face stores it.
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;
// fp64 row-major, for the accumulations and factorizations that need the precision (PCA, norm fusion).
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// max |got - want| / max(1, max |want|): the error measure every numerical check states its tolerance in (logits
// against transformers, GPU against CPU). NaN anywhere gives infinity.
inline double relativeMaxError(const float *got, const float *want, size_t n) {
    double err = 0, scale = 1;
    for (size_t i = 0; i < n; ++i) {
        const double d = std::fabs(double(got[i]) - double(want[i]));
        if (std::isnan(d))
            return std::numeric_limits<double>::infinity();
        err = std::max(err, d);
        scale = std::max(scale, double(std::fabs(want[i])));
    }
    return err / scale;
}
// The same for two matrices; infinity when the shapes differ.
inline double relativeMaxError(const Mat &got, const Mat &want) {
    if (got.rows() != want.rows() || got.cols() != want.cols())
        return std::numeric_limits<double>::infinity();
    return relativeMaxError(got.data(), want.data(), size_t(want.size()));
}

} // namespace lathe
