#pragma once

#include "plotview.h"

namespace lathe {

struct MatrixScores;

// Distribution of one matrix's importance scores: histogram of log10(score), counts on a log axis, and a vertical
// line at the score below which the chosen fraction is pruned.
class ImportanceView : public PlotView {
    Q_OBJECT
public:
    explicit ImportanceView(QWidget *parent = nullptr);
    void setScores(const MatrixScores &scores, const QString &label, double prunedFraction);
    void clear(const QString &message);
};

} // namespace lathe
