#include "sparsityview.h"

#include "analysis/matrixscores.h"

#include <qcustomplot.h>

namespace lathe {

namespace {

void fillBars(QCPAxisRect *rect, const Histogram &h, const QColor &color, const QString &xLabel) {
    auto *bars = new QCPBars(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
    bars->setData(QVector<double>(h.centers.begin(), h.centers.end()), QVector<double>(h.counts.begin(), h.counts.end()), true);
    bars->setWidth(h.width() * 0.9);
    bars->setPen(Qt::NoPen);
    bars->setBrush(color);
    rect->axis(QCPAxis::atBottom)->setLabel(xLabel);
    rect->axis(QCPAxis::atLeft)->setLabel(QObject::tr("count"));
    rect->axis(QCPAxis::atBottom)->setRange(-0.02, 1.02);
    double top = 1;
    for (double c : h.counts)
        top = std::max(top, c);
    rect->axis(QCPAxis::atLeft)->setRange(0, top * 1.1);
}

} // namespace

SparsityView::SparsityView(QWidget *parent) : PlotView("sparsity", parent) {
    // Row 0 holds the title; row 1 a sub-grid with the two histograms side by side.
    m_plot->plotLayout()->remove(m_plot->axisRect());
    auto *grid = new QCPLayoutGrid;
    m_plot->plotLayout()->addElement(1, 0, grid);
    grid->addElement(0, 0, new QCPAxisRect(m_plot));
    grid->addElement(0, 1, new QCPAxisRect(m_plot));
    clear(tr("Select a weight matrix in the tree"));
}

void SparsityView::clear(const QString &message) { showPlaceholder(message); }

void SparsityView::setScores(const MatrixScores &s, const QString &label, const QString &pattern) {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (!s.error.empty()) {
        clear(QString::fromStdString(s.error));
        return;
    }
    auto *rows = m_plot->axisRect(0);
    auto *cols = m_plot->axisRect(1);
    fillBars(rows, s.rowHist, QColor(31, 119, 180), tr("fraction pruned per output row\n(%1 rows)").arg(s.rows));
    fillBars(cols, s.colHist, QColor(255, 127, 14), tr("fraction pruned per input column\n(%1 columns)").arg(s.cols));
    QString title = tr("%1: %2, %3 score, %4% pruned").arg(label, pattern, QString::fromUtf8(importanceName(s.used))).arg(100.0 * s.stats.sparsity, 0, 'f', 1);
    if (pattern.contains(':'))
        title += s.stats.nmValid ? tr(", N:M valid") : tr(", NOT N:M");
    // A model that was pruned before it was opened (a Wanda, magnitude, PST or recovery export) says so.
    if (s.loadedZeros >= 0.005)
        title += tr("; %1% zeros as loaded").arg(100.0 * s.loadedZeros, 0, 'f', 1);
    showResult(title, QString::fromStdString(s.note));
}

} // namespace lathe
