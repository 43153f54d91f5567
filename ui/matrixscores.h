#pragma once

#include "analysis/importance.h"
#include "analysis/sparsitymask.h"
#include "engine/calibration.h"
#include "histogram.h"

#include <QString>

#include <memory>
#include <string>

namespace lathe {

class Model;

// What the sparsity and importance views show for one matrix at the current settings. Computed off the GUI thread
// (QtConcurrent) because a large matrix (an embedding table) takes a moment to load and mask.
struct MatrixScoresRequest {
    std::shared_ptr<const Model> model;
    std::string tensor;
    ImportanceKind kind = ImportanceKind::Magnitude;
    SparsityPattern pattern;
    std::shared_ptr<const InputNorms> norms; // for Wanda
    int generation = 0;                      // the newest request wins
};

struct MatrixScores {
    std::string tensor;
    int generation = 0;
    int64_t rows = 0, cols = 0;
    QString method;        // the score actually used ("wanda", or "magnitude" with a note why)
    QString note;
    QString error;         // non-empty: nothing else is valid
    SparsityStats stats;
    Histogram rowHist;     // fraction of zeros per output row, 50 bins over [0, 1]
    Histogram colHist;     // per input column
    Histogram scoreHist;   // log10 of the positive scores, 60 bins
    int64_t zeroScores = 0; // scores of exactly 0 (not on the log axis)
    double threshold = 0;  // log10 of the score at the pruned fraction (the whole matrix's quantile)
};

MatrixScores computeMatrixScores(const MatrixScoresRequest &request);

} // namespace lathe
