#include "numeric/linalg.h"

#include "base/error.h"
#include "numeric/blas.h"

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cassert>
#include <cmath>

#ifdef LATHE_HAVE_LAPACKE
#include <lapacke.h>
#endif

namespace lathe {

namespace {

[[noreturn]] void lapackFailed(const char *routine, long info, int64_t rows, int64_t cols) {
    throw LatheError(std::string(routine) + " failed (info " + std::to_string(info) + ") on a " + std::to_string(rows) +
                         " x " + std::to_string(cols) + " matrix",
                     info > 0 ? "the iteration did not converge; the matrix may contain NaN or Inf values (run "
                                "`lathe-cli inspect --scan`)"
                              : "");
}

} // namespace

std::vector<double> singularValuesViaGram(const float *a, int64_t rows, int64_t cols,
                                          const std::atomic<bool> *cancelled) {
    const bool tall = rows >= cols;
    const int64_t n = tall ? cols : rows;  // side of the Gram matrix
    const int64_t k = tall ? rows : cols;  // the dimension summed over
    if (n == 0)
        return {};
    constexpr int64_t kChunk = 2048;
    std::vector<double> gram(static_cast<size_t>(n * n), 0.0), chunk;
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
        if (cancelled && cancelled->load())
            return {};
        const int64_t kk = std::min(kChunk, k - k0);
        chunk.resize(static_cast<size_t>(kk * n));
        // chunk (kk x n): rows k0.. of A when tall, columns k0.. of A (as rows) when wide.
        for (int64_t i = 0; i < kk; ++i)
            for (int64_t j = 0; j < n; ++j)
                chunk[size_t(i * n + j)] = tall ? double(a[(k0 + i) * cols + j]) : double(a[j * cols + k0 + i]);
        dsyrkLowerAtA(n, kk, chunk.data(), gram.data());
    }
    std::vector<double> eig;
    symmetricEigen(gram.data(), n, eig);
    for (double &v : eig)
        v = std::sqrt(std::max(v, 0.0));
    return eig;
}

#ifdef LATHE_HAVE_LAPACKE

// LAPACK is column-major. A row-major (rows x cols) array is the column-major (cols x rows) array of its transpose,
// which has the same singular values; passing it that way avoids LAPACKE's row-major copy.
std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) {
    const int64_t k = std::min(rows, cols);
    if (k == 0)
        return {};
    std::vector<float> work(a, a + rows * cols);
    std::vector<float> s(static_cast<size_t>(k));
    float dummy = 0;
    const lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', lapack_int(cols), lapack_int(rows), work.data(),
                                           lapack_int(cols), s.data(), &dummy, 1, &dummy, 1);
    if (info != 0)
        lapackFailed("sgesdd", info, rows, cols);
    return {s.begin(), s.end()};
}

// With A^T = U' S V'^T (column-major), A = V' S U'^T: LAPACK's U' read row-major is our Vt, its V'^T read
// row-major is our U.
ThinSvd thinSvd(const Mat &a) {
    const int64_t rows = a.rows(), cols = a.cols(), k = std::min(rows, cols);
    ThinSvd r;
    r.u.resize(rows, k);
    r.vt.resize(k, cols);
    r.s.resize(size_t(k));
    if (k == 0)
        return r;
    Mat work = a;
    const lapack_int info =
        LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', lapack_int(cols), lapack_int(rows), work.data(), lapack_int(cols),
                       r.s.data(), r.vt.data(), lapack_int(cols), r.u.data(), lapack_int(k));
    if (info != 0)
        lapackFailed("sgesdd", info, rows, cols);
    return r;
}

void symmetricEigen(const double *a, int64_t n, std::vector<double> &values, std::vector<double> *vectors) {
    // The lower triangle of a row-major matrix is the upper triangle of the column-major one.
    std::vector<double> work(a, a + n * n);
    std::vector<double> w(static_cast<size_t>(n));
    const lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, vectors ? 'V' : 'N', 'U', lapack_int(n), work.data(),
                                           lapack_int(n), w.data());
    if (info != 0)
        lapackFailed("dsyevd", info, n, n);
    values.assign(w.rbegin(), w.rend()); // LAPACK returns ascending order
    if (vectors) {
        eigenvectorsDescendingRowMajor(work.data(), n, *vectors);
    }
}

void orthonormalizeColumns(Mat &a) {
    const int64_t rows = a.rows(), cols = a.cols();
    assert(rows >= cols);
    if (cols == 0)
        return;
    std::vector<float> tau(static_cast<size_t>(cols));
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, lapack_int(rows), lapack_int(cols), a.data(),
                                     lapack_int(cols), tau.data());
    if (info != 0)
        lapackFailed("sgeqrf", info, rows, cols);
    info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, lapack_int(rows), lapack_int(cols), lapack_int(cols), a.data(),
                          lapack_int(cols), tau.data());
    if (info != 0)
        lapackFailed("sorgqr", info, rows, cols);
}

std::string lapackName() { return "LAPACKE (OpenBLAS)"; }

#else // Eigen fallback

std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) {
    Eigen::Map<const Mat> m(a, rows, cols);
    Eigen::BDCSVD<Eigen::MatrixXf> svd(m);
    if (svd.info() != Eigen::Success)
        lapackFailed("BDCSVD", 1, rows, cols);
    const Eigen::VectorXf &s = svd.singularValues();
    return {s.data(), s.data() + s.size()};
}

ThinSvd thinSvd(const Mat &a) {
    Eigen::BDCSVD<Eigen::MatrixXf> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    if (svd.info() != Eigen::Success)
        lapackFailed("BDCSVD", 1, a.rows(), a.cols());
    ThinSvd r;
    r.u = svd.matrixU();
    r.vt = svd.matrixV().transpose();
    const Eigen::VectorXf &s = svd.singularValues();
    r.s.assign(s.data(), s.data() + s.size());
    return r;
}

void symmetricEigen(const double *a, int64_t n, std::vector<double> &values, std::vector<double> *vectors) {
    using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatD> m(a, n, n);
    Eigen::MatrixXd full = m.selfadjointView<Eigen::Lower>();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(full, vectors ? Eigen::ComputeEigenvectors
                                                                    : Eigen::EigenvaluesOnly);
    if (es.info() != Eigen::Success)
        lapackFailed("SelfAdjointEigenSolver", 1, n, n);
    const Eigen::VectorXd &w = es.eigenvalues();
    values.assign(w.data(), w.data() + n);
    std::reverse(values.begin(), values.end());
    if (vectors) {
        eigenvectorsDescendingRowMajor(es.eigenvectors().data(), n, *vectors); // Eigen's default is column-major
    }
}

void orthonormalizeColumns(Mat &a) {
    Eigen::HouseholderQR<Eigen::MatrixXf> qr(a);
    a = qr.householderQ() * Eigen::MatrixXf::Identity(a.rows(), a.cols());
}

std::string lapackName() { return "Eigen (no LAPACKE in this build)"; }

#endif

void eigenvectorsDescendingRowMajor(const double *colMajorAscending, int64_t n, std::vector<double> &out) {
    // Column-major eigenvector j (ascending) is colMajorAscending[j*n .. j*n+n); it becomes column n-1-j, row-major.
    out.assign(size_t(n * n), 0.0);
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < n; ++i)
            out[size_t(i * n + (n - 1 - j))] = colMajorAscending[size_t(j * n + i)];
}

} // namespace lathe
