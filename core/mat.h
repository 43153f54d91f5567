#pragma once

#include <Eigen/Core>

namespace lathe {

// Activations and weights of the CPU engine. Row-major so that a (tokens x width) activation keeps each token's
// vector contiguous, and a linear weight (out x in) is laid out exactly as Hugging Face stores it.
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;
// fp64 row-major, for the accumulations and factorizations that need the precision (PCA, norm fusion).
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

} // namespace lathe
