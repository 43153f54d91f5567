#include "numeric/blas.h"

#include "base/parallel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unistd.h>

#ifdef LATHE_HAVE_OPENBLAS
#include <cblas.h>
extern "C" {
char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}
#else
#include "numeric/mat.h"
#include <thread>
#endif

namespace lathe {

#ifdef LATHE_HAVE_OPENBLAS

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
           const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0)
        return;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, int(m), int(n),
                int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

void dsyrkLowerAtA(int64_t n, int64_t k, const double *a, double *c) {
    if (n == 0 || k == 0)
        return;
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), 1.0, a, int(n), 1.0, c, int(n));
}

BlasInfo blasInfo() {
    BlasInfo info;
    info.library = openblas_get_config();
    info.coreType = openblas_get_corename();
    info.threads = openblas_get_num_threads();
    if (const char *n = std::getenv("LATHE_BLAS_FIX_NOTE"))
        info.note = n;
    return info;
}

void setBlasThreads(int threads) { openblas_set_num_threads(threads); }

int blasThreads() { return openblas_get_num_threads(); }

void fixBlasCoreType(int argc, char **argv) {
    (void)argc;
    if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("LATHE_NO_BLAS_FIX"))
        return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (!avx512)
        return;
    const std::string core = openblas_get_corename();
    static const char *const kAvx512Cores[] = {"SkylakeX", "skylakex", "Cooperlake", "cooperlake",
                                               "SapphireRapids", "sapphirerapids"};
    for (const char *c : kAvx512Cores)
        if (core == c)
            return;
    const std::string note = "OpenBLAS chose '" + core + "' on an AVX-512 CPU; restarted with OPENBLAS_CORETYPE=SkylakeX";
    ::setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    ::setenv("LATHE_BLAS_FIX_NOTE", note.c_str(), 1);
    ::execv("/proc/self/exe", argv);
    // execv only returns on failure: carry on with the slow kernel.
    spdlog::warn("could not restart with OPENBLAS_CORETYPE=SkylakeX ({}); GEMM may run at half speed",
                 std::strerror(errno));
#else
    (void)argv;
#endif
}

#else // Eigen fallback

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
           const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0)
        return;
    using Stride = Eigen::OuterStride<>;
    using CMap = Eigen::Map<const Mat, 0, Stride>;
    using Map = Eigen::Map<Mat, 0, Stride>;
    Map C(c, m, n, Stride(ldc));
    auto run = [&](const auto &A, const auto &B) {
        if (beta == 0.0f)
            C.noalias() = alpha * (A * B);
        else {
            C *= beta;
            C.noalias() += alpha * (A * B);
        }
    };
    CMap A(a, transA ? k : m, transA ? m : k, Stride(lda));
    CMap B(b, transB ? n : k, transB ? k : n, Stride(ldb));
    if (transA && transB)
        run(A.transpose(), B.transpose());
    else if (transA)
        run(A.transpose(), B);
    else if (transB)
        run(A, B.transpose());
    else
        run(A, B);
}

void dsyrkLowerAtA(int64_t n, int64_t k, const double *a, double *c) {
    using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatD> A(a, k, n);
    Eigen::Map<RowMatD> C(c, n, n);
    C.selfadjointView<Eigen::Lower>().rankUpdate(A.transpose());
}

BlasInfo blasInfo() {
    BlasInfo info;
    info.library = "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                   std::to_string(EIGEN_MINOR_VERSION);
    info.threads = Eigen::nbThreads();
    return info;
}

void setBlasThreads(int threads) {
    Eigen::setNbThreads(threads > 0 ? threads : int(std::thread::hardware_concurrency()));
}

int blasThreads() { return Eigen::nbThreads(); }

void fixBlasCoreType(int, char **) {}

#endif

namespace {

std::mutex g_splitMutex;
int g_splitDepth = 0;
std::atomic<int> g_splitThreads{0};

} // namespace

bool engineSplitsBlas() {
    static const bool enabled = [] {
        const char *e = std::getenv("LATHE_BLAS_SPLIT");
        return !(e && std::string(e) == "0");
    }();
    return enabled;
}

BlasSplitScope::BlasSplitScope(bool enabled) : m_enabled(enabled) {
    if (!m_enabled)
        return;
    std::lock_guard lock(g_splitMutex);
    if (g_splitDepth++ == 0) {
        g_splitThreads = std::max(1, blasThreads());
        setBlasThreads(1);
    }
}

BlasSplitScope::~BlasSplitScope() {
    if (!m_enabled)
        return;
    std::lock_guard lock(g_splitMutex);
    if (--g_splitDepth == 0) {
        setBlasThreads(g_splitThreads);
        g_splitThreads = 0;
    }
}

int blasSplitThreads() { return g_splitThreads.load(std::memory_order_relaxed); }

int cpuWorkThreads() {
    const int split = blasSplitThreads();
    return split > 0 ? split : std::max(1, blasThreads());
}

void sgemmSplit(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const int threads = blasSplitThreads();
    // Below ~32 rows or columns per thread a split GEMM loses more to packing than it gains.
    constexpr int64_t kMinPart = 32;
    if (threads > 1 && m >= 2 * kMinPart) {
        // Row block [r0, r1) of C needs rows r0.. of A (m x k), or columns r0.. of A (k x m) when transposed.
        parallelFor(m, kMinPart, [&](int64_t r0, int64_t r1) {
            sgemm(transA, transB, r1 - r0, n, k, alpha, transA ? a + r0 : a + r0 * lda, lda, b, ldb, beta,
                  c + r0 * ldc, ldc);
        }, threads);
    } else if (threads > 1 && n >= 2 * kMinPart) {
        // Column block [j0, j1) of C needs rows j0.. of B (n x k) when transposed, columns j0.. of B (k x n) if not.
        parallelFor(n, kMinPart, [&](int64_t j0, int64_t j1) {
            sgemm(transA, transB, m, j1 - j0, k, alpha, a, lda, transB ? b + j0 * ldb : b + j0, ldb, beta, c + j0,
                  ldc);
        }, threads);
    } else {
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
}

} // namespace lathe
