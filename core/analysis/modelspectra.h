#pragma once

#include "base/progress.h"
#include "numeric/mat.h"
#include "numeric/spectrum.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class ComputeBackend;
class Model;

// What a spectrum is taken of: a weight tensor, the rows of one layer's q, k and v stacked, or one attention head's
// slice of q/k/v (its rows) or o (its columns).
struct SpectrumTarget {
    std::string key;    // unique: the tensor name, "model.layers.3.qkv_stacked", "<tensor>#head2"
    std::string tensor; // the tensor (for StackedQkv: the layer's q tensor)
    int layer = -1;
    int head = -1;      // >= 0 for one head
    bool stackedQkv = false;
};

// Every 2-D weight of the model: embeddings, the linears of every block, the LM head, BERT's pooler.
std::vector<SpectrumTarget> weightTargets(const Model &model);
// One target per layer with its q, k, v rows stacked (or the fused qkv tensor).
std::vector<SpectrumTarget> stackedQkvTargets(const Model &model);
// One target per attention head of a q, k, v or o tensor (GQA: k and v have the key-value head count).
std::vector<SpectrumTarget> headTargets(const Model &model, const std::string &tensor);
// The target's matrix, fp32, canonical layout.
Mat loadTarget(const Model &model, const SpectrumTarget &target);

struct MatrixSpectrum {
    std::string key;
    int64_t rows = 0, cols = 0;
    std::string method;         // "gesdd", "gram-syevd" or "randomized"
    std::vector<double> values; // descending; all min(rows, cols) values, or the top k of a randomized SVD
    bool truncated = false;     // randomized: only the top values
    double errorBound = 0;      // randomized: bound on each value's error (see RandomizedSvdResult)
    double errorEstimate = 0;   // randomized: estimate of the same distance (tighter)
    SpectrumStats stats;        // from `values` (for truncated spectra the tail-dependent numbers are partial)
    double seconds = 0;         // time of the factorization alone
};

struct SpectraParams {
    int threads = 0;      // matrices factorized at once, each single-threaded (0 = one per core)
    int64_t topK = 0;     // 0: full spectrum (LAPACK gesdd); > 0: randomized SVD of the top topK values
    int powerIterations = 2;
    // Full spectra of matrices at least this many times taller than wide (or wider than tall), such as embedding
    // tables, come from the fp64 Gram matrix (singularValuesViaGram: faster, as accurate, cancellable mid-way);
    // the others from sgesdd. 0 = always sgesdd.
    double gramAspect = 8.0;
    // Full spectra on this device's solver instead (CUDA: cuSOLVER sgesvd on every matrix, one at a time, method
    // "gesvd-cuda"); null = LAPACK on the CPU threads. Not owned; randomized top-k stays on the CPU.
    ComputeBackend *device = nullptr;
};

// Spectra of the targets, in the targets' order. Matrices are spread over the threads largest first. Progress is
// reported from the calling thread at least every 0.2 s; cancelling stops at the latest after the matrices in
// flight (throws CancelledError).
std::vector<MatrixSpectrum> computeSpectra(const Model &model, const std::vector<SpectrumTarget> &targets,
                                           const SpectraParams &params, const ProgressCallback &progress = {});

// One matrix, on the calling thread. `cancelled` (optional) stops a long Gram accumulation: CancelledError.
MatrixSpectrum computeSpectrum(const Mat &m, const std::string &key, const SpectraParams &params,
                               const std::atomic<bool> *cancelled = nullptr);

} // namespace lathe
