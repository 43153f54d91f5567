#pragma once

#include <cstdint>
#include <vector>

namespace lathe {

// Numbers derived from the singular values s_1 >= s_2 >= ... of one weight matrix (rows x cols).
struct SpectrumStats {
    double sigmaMax = 0;       // s_1, the spectral norm
    double frobeniusSq = 0;    // sum s_i^2 = ||W||_F^2
    // exp(entropy of p_i = s_i / sum s): Roy & Vetterli's effective rank, in [1, min(rows, cols)].
    double effectiveRank = 0;
    double stableRank = 0;     // ||W||_F^2 / ||W||_2^2
    // Power-law exponent of the tail of the eigenvalue density of W^T W (WeightWatcher's alpha): the eigenvalues
    // lambda_i = s_i^2 >= xmin are fitted by maximum likelihood, alpha = 1 + n / sum ln(lambda_i / xmin), with xmin
    // chosen to minimise the Kolmogorov-Smirnov distance between the tail and the fit (Clauset, Shalizi & Newman
    // 2009). WeightWatcher reads alpha in [2, 6] as well trained, < 2 as over-trained, > 6 as under-trained.
    // NaN when fewer than kMinTail non-zero eigenvalues exist.
    double alpha = 0;
    double alphaXmin = 0;     // the chosen xmin, in units of s^2
    double alphaKs = 0;       // the KS distance of the chosen fit
    int64_t alphaTail = 0;    // eigenvalues in the fitted tail
};

constexpr int64_t kMinTail = 10;

// `sv` descending (as singularValues() returns it).
SpectrumStats spectrumStats(const std::vector<double> &sv);

// Fraction of ||W||_F^2 kept by the top r singular values (r clamped to the spectrum's length).
double energyKept(const std::vector<double> &sv, int64_t r);

// cumulative[i] = energyKept(sv, i + 1).
std::vector<double> cumulativeEnergy(const std::vector<double> &sv);

// Smallest r whose top-r values keep at least `fraction` of the energy.
int64_t rankForEnergy(const std::vector<double> &sv, double fraction);

// The rank LoSparse gives the low-rank part of a (rows x cols) matrix for a parameter ratio rho:
// r = ceil(rho * rows * cols / (rows + cols)), so that the factors hold rho of the matrix's parameters (METHODS.md).
int64_t losparseRank(int64_t rows, int64_t cols, double rho);

} // namespace lathe
