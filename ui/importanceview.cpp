#include "importanceview.h"

#include "analysis/matrixscores.h"

#include <qcustomplot.h>

#include <cmath>

namespace lathe {

ImportanceView::ImportanceView(QWidget *parent) : PlotView("importance", parent) {
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    m_plot->yAxis->setLabel(tr("entries"));
    clear(tr("Select a weight matrix in the tree"));
}

void ImportanceView::clear(const QString &message) { showPlaceholder(message); }

void ImportanceView::setScores(const MatrixScores &s, const QString &label, double prunedFraction) {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (!s.error.empty()) {
        clear(QString::fromStdString(s.error));
        return;
    }
    const Histogram &h = s.scoreHist;
    auto *bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    bars->setData(QVector<double>(h.centers.begin(), h.centers.end()), QVector<double>(h.counts.begin(), h.counts.end()), true);
    bars->setWidth(h.width() * 0.95);
    bars->setPen(Qt::NoPen);
    bars->setBrush(QColor(44, 160, 44));
    bars->setBaseValue(0.5); // a log axis has no 0
    m_plot->xAxis->setLabel(tr("log10(%1 score)").arg(QString::fromUtf8(importanceName(s.used))));
    m_plot->xAxis->setRange(h.lo - h.width(), h.hi + h.width());
    double top = 1;
    for (double c : h.counts)
        top = std::max(top, c);
    m_plot->yAxis->setRange(0.5, top * 2);
    if (std::isfinite(s.threshold)) {
        auto *line = new QCPItemStraightLine(m_plot);
        line->setPen(QPen(QColor(200, 30, 30), 1.5, Qt::DashLine));
        line->point1->setCoords(s.threshold, 1);
        line->point2->setCoords(s.threshold, 10);
        auto *text = new QCPItemText(m_plot);
        text->position->setType(QCPItemPosition::ptAxisRectRatio);
        text->position->setCoords(0.02, 0.03);
        text->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
        text->setColor(QColor(200, 30, 30));
        // The score itself, as the parameter panel's users think of it, with its place on the log axis.
        text->setText(tr("%1% of entries below %2 (10^%3)")
                          .arg(100.0 * prunedFraction, 0, 'f', 0)
                          .arg(std::pow(10.0, s.threshold), 0, 'g', 3)
                          .arg(s.threshold, 0, 'f', 2));
    }
    QString title = tr("%1: %2 scores of %3 entries").arg(label, QString::fromUtf8(importanceName(s.used))).arg(s.rows * s.cols);
    if (s.zeroScores)
        title += tr(" (%1 zero, off the log axis)").arg(s.zeroScores);
    showResult(title, QString::fromStdString(s.note));
}

} // namespace lathe
