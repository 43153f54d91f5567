#pragma once

#include "plotview.h"

namespace lathe {

struct MatrixScores;

// Histograms of the fraction of pruned entries per output row (left) and per input column (right) of one matrix
// under the chosen method and pattern.
class SparsityView : public PlotView {
    Q_OBJECT
public:
    explicit SparsityView(QWidget *parent = nullptr);
    void setScores(const MatrixScores &scores, const QString &label, const QString &pattern);
    void clear(const QString &message);
};

} // namespace lathe
