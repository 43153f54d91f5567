#pragma once

#include "plotview.h"

#include <QMap>
#include <QString>
#include <QVector>

class QTableWidget;

namespace lathe {

// Results of compression runs side by side: a comparison table (dense and every run: sparsity, perplexity, change,
// parameters, bytes dense / compact, method time, export folder) and perplexity against sparsity, one line per
// method and pattern, with the dense model as a dashed line. Fed with results.json documents (CompressJob).
class ResultsView : public PlotView {
    Q_OBJECT
public:
    explicit ResultsView(QWidget *parent = nullptr);

    // Adds the runs of one job (its results.json content); `label` names the series ("wanda 2:4").
    void addResults(const QString &label, const QString &resultsJson);
    void clearResults();
    QTableWidget *table() const { return m_table; }

private:
    void redraw();

    struct Point {
        double sparsity, perplexity;
    };
    QTableWidget *m_table = nullptr;
    QMap<QString, QVector<Point>> m_series;
    double m_densePerplexity = 0;
};

} // namespace lathe
