#pragma once

#include <cstdint>
#include <string>

namespace lathe {

// Single-precision GEMM on row-major matrices: C = alpha * op(A) * op(B) + beta * C, where op(A) is (m x k),
// op(B) is (k x n) and C is (m x n). `lda`, `ldb`, `ldc` are row strides in elements. Uses OpenBLAS when the build
// has it (multi-threaded), else Eigen's own GEMM (the engine-only build for the GPU machine).
void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
           const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

// Double-precision symmetric rank-k update of the lower triangle: C += A^T A, with A (k x n) row-major and C
// (n x n) row-major. The upper triangle of C is left as it was.
void dsyrkLowerAtA(int64_t n, int64_t k, const double *a, double *c);

struct BlasInfo {
    std::string library;   // "OpenBLAS 0.3.21" or "Eigen"
    std::string coreType;  // OpenBLAS's kernel family ("Zen", "Haswell", "SkylakeX"), empty for Eigen
    int threads = 1;
    std::string note;      // why the core type was overridden, when it was
};
BlasInfo blasInfo();

// Debian's OpenBLAS picks a generic kernel on some AVX-512 CPUs it does not recognise and runs GEMM at half speed.
// The kernel is chosen when the library loads, before main(), so the only fix is the environment: when the CPU
// has AVX-512 (F, BW, DQ, VL), OPENBLAS_CORETYPE is unset and OpenBLAS chose a kernel without AVX-512, this sets
// OPENBLAS_CORETYPE=SkylakeX and re-executes the program with the same arguments. It never selects AVX-512
// kernels on a CPU without AVX-512 (they would die with SIGILL). Returns only when no restart is needed. Call first
// thing in main(); LATHE_NO_BLAS_FIX=1 disables it.
void fixBlasCoreType(int argc, char **argv);

// Sets the number of BLAS threads (0 = one per core).
void setBlasThreads(int threads);
int blasThreads();

// While at least one BlasSplitScope is alive (on any thread), BLAS runs single-threaded and blasSplitThreads()
// is the thread count BLAS had when the first scope opened; callers then split their work over that many threads
// themselves, one single-threaded GEMM each (sgemmSplit, the attention heads, one matrix per thread for spectra).
// Outside any scope blasSplitThreads() is 0 and BLAS threads its own calls. Why: the engine's GEMMs are small (a
// 135M model's block: 512 x 192 x 576), and between them OpenBLAS's workers spin for a while, competing with the
// element-wise code for the cores; on 2 cores that cost 15-25% of a forward pass. Scopes nest and may overlap
// across threads (a count, not a stack), so the last one to close restores BLAS's thread count. A scope made with
// `enabled` false does nothing.
class BlasSplitScope {
public:
    explicit BlasSplitScope(bool enabled = true);
    ~BlasSplitScope();
    BlasSplitScope(const BlasSplitScope &) = delete;
    BlasSplitScope &operator=(const BlasSplitScope &) = delete;

private:
    bool m_enabled;
};
int blasSplitThreads();
// The threads for CPU work beside BLAS (the training ops, AdamW, the linear kinds' passes): blasSplitThreads()
// inside a scope, BLAS's own count outside, so that `--threads N` bounds all of a command's work.
int cpuWorkThreads();
// Whether the transformer engine opens BlasSplitScopes: false when LATHE_BLAS_SPLIT=0, which leaves the engine's
// GEMMs to BLAS's own threading (benchmarks compare the two). Code that needs BLAS single-threaded for its own
// threads (spectra) opens its scope regardless.
bool engineSplitsBlas();

// C = alpha op(A) op(B) + beta C (the sgemm contract), split into row blocks of C (or column blocks when m is
// small) over blasSplitThreads() threads inside a BlasSplitScope, one single-threaded BLAS call each; one BLAS call
// outside. Each entry of C is the same dot product as in one call.
void sgemmSplit(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

} // namespace lathe
