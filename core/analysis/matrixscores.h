#pragma once

#include "analysis/importance.h"
#include "analysis/sparsitymask.h"
#include "engine/calibration.h"
#include "analysis/histogram.h"

#include <memory>
#include <string>

namespace lathe {

class Model;

// What the workbench's sparsity and importance views show for one matrix at the current settings: the matrix
// loaded, scored (magnitude or Wanda with calibration norms), masked with the pattern, and the histograms of the
// result. Callers run it off the GUI thread because a large matrix (an embedding table) takes a moment, and the
// LoSparse score an SVD of the matrix.
struct MatrixScoresRequest {
    std::shared_ptr<const Model> model;
    std::string tensor;
    ImportanceKind kind = ImportanceKind::Magnitude;
    SparsityPattern pattern;
    std::shared_ptr<const InputNorms> norms; // for Wanda (input norms), Taylor and LoSparse (gradients)
    double rankRatio = 0;                    // LoSparse: the low-rank part's share rho (numeric/spectrum.h)
    int generation = 0;                      // the newest request wins
};

struct MatrixScores {
    std::string tensor;
    int generation = 0;
    int64_t rows = 0, cols = 0;
    ImportanceKind used = ImportanceKind::Magnitude; // the score actually used (magnitude when Wanda lacks norms: see note)
    std::string note;
    std::string error;     // non-empty: nothing else is valid
    SparsityStats stats;
    Histogram rowHist;     // fraction of zeros per output row, 50 bins over [0, 1]
    Histogram colHist;     // per input column
    Histogram scoreHist;   // log10 of the positive scores, 60 bins
    int64_t zeroScores = 0; // scores of exactly 0 (not on the log axis)
    double threshold = 0;  // log10 of the score at the pruned fraction (the whole matrix's quantile)
    double loadedZeros = 0; // fraction of the weights that are exactly zero as loaded (a pruned export's sparsity)
};

MatrixScores computeMatrixScores(const MatrixScoresRequest &request);

} // namespace lathe
