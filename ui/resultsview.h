#pragma once

#include "plotview.h"

#include <QMap>
#include <QString>
#include <QVector>

class QTableWidget;

namespace lathe {

// Results of compression runs side by side: a comparison table (model, run, sparsity, perplexity, change against
// that model's dense perplexity, parameters, bytes dense / compact, method time, export folder) of every run of
// the session, and the current model's perplexity against sparsity, one line per method and setting, with its
// dense model as a dashed line. Fed with results.json documents (CompressJob).
class ResultsView : public PlotView {
    Q_OBJECT
public:
    explicit ResultsView(QWidget *parent = nullptr);

    // Adds the runs of one job on `model` (its results.json content); `label` names the series ("wanda 2:4").
    void addResults(const QString &model, const QString &label, const QString &resultsJson);
    // The model whose runs the plot shows (the table keeps every model's rows, named in its first column).
    void setCurrentModel(const QString &model);
    void clearResults();
    QTableWidget *table() const { return m_table; }

private:
    void redraw();

    struct Point {
        double sparsity, perplexity;
    };
    QTableWidget *m_table = nullptr;
    QMap<QString, QMap<QString, QVector<Point>>> m_series; // model -> label -> points
    QMap<QString, double> m_densePerplexity;                // model -> dense perplexity
    QString m_model;
};

} // namespace lathe
