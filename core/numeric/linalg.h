#pragma once

#include "numeric/mat.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// Dense factorizations for the analysis engine and the methods. LAPACK (OpenBLAS's, through LAPACKE) does the
// work in the desktop build; the engine-only build without LAPACKE falls back to Eigen's BDCSVD and
// SelfAdjointEigenSolver (correct, 3-12x slower). Eigen's JacobiSVD is never used. All inputs are row-major; none
// is modified. Failures to converge throw LatheError.

// Singular values of the (rows x cols) matrix `a`, descending, min(rows, cols) of them. LAPACK sgesdd with
// jobz='N' (values only): fp32 arithmetic, so values below ~1e-7 of the largest are noise.
std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols);

// Singular values from the eigenvalues of the fp64 Gram matrix A^T A (or A A^T, whichever is smaller), accumulated
// in chunks of rows with dsyrk, then dsyevd: sigma_i = sqrt(max(lambda_i, 0)). For a tall or wide matrix this is
// several times faster than sgesdd, and as accurate in absolute terms: the eigenvalues carry an error of about
// 1e-16 * sigma_1^2, so each sigma_i is within ~1.5e-8 * sigma_1 (better than sgesdd's fp32 ~1e-7 * sigma_1).
// `cancelled` is polled between chunks; when it turns true the function returns an empty vector.
std::vector<double> singularValuesViaGram(const float *a, int64_t rows, int64_t cols,
                                          const std::atomic<bool> *cancelled = nullptr);

// Thin SVD a = U diag(s) Vt: U (rows x k), s (k, descending), Vt (k x cols), k = min(rows, cols). sgesdd jobz='S'.
struct ThinSvd {
    Mat u;
    std::vector<float> s;
    Mat vt;
};
ThinSvd thinSvd(const Mat &a);

// Eigen-decomposition of the symmetric (n x n) matrix `a` (row-major, fp64; only its lower triangle is read):
// eigenvalues descending and, when `vectors` is given, the matching unit eigenvectors as its columns. dsyevd.
void symmetricEigen(const double *a, int64_t n, std::vector<double> &values, std::vector<double> *vectors = nullptr);
// The (n x n) eigenvectors a solver returns column-major in ascending eigenvalue order (LAPACK, cuSOLVER) as the
// row-major matrix symmetricEigen promises: eigenvectors as columns, descending.
void eigenvectorsDescendingRowMajor(const double *colMajorAscending, int64_t n, std::vector<double> &out);

// Replaces the columns of `a` (rows >= cols) by an orthonormal basis of their span (Householder QR:
// sgeqrf + sorgqr).
void orthonormalizeColumns(Mat &a);

// "LAPACKE (OpenBLAS 0.3.21)" or "Eigen (no LAPACKE in this build)".
std::string lapackName();

} // namespace lathe
