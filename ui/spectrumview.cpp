#include "spectrumview.h"

#include "analysis/modelspectra.h"
#include "numeric/spectrum.h"

#include <qcustomplot.h>

#include <cmath>

namespace lathe {

namespace {
const QColor kColors[] = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44), QColor(214, 39, 40),
                          QColor(148, 103, 189), QColor(140, 86, 75), QColor(227, 119, 194), QColor(127, 127, 127)};
}

SpectrumView::SpectrumView(QWidget *parent) : PlotView("spectrum", parent) {
    QSharedPointer<QCPAxisTickerLog> logTicker(new QCPAxisTickerLog);
    m_plot->xAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->xAxis->setTicker(logTicker);
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(logTicker);
    m_plot->xAxis->setLabel(tr("index i"));
    m_plot->yAxis->setLabel(tr("singular value σᵢ"));
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(tr("cumulative energy (first matrix)"));
    m_plot->yAxis2->setRange(0, 1.02);
    m_plot->legend->setVisible(true);
    m_plot->legend->setFont(QFont("Sans", 8));
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignLeft | Qt::AlignBottom);
    clear(tr("Select a matrix in the tree"));
}

void SpectrumView::clear(const QString &message) { showPlaceholder(message); }

void SpectrumView::setSpectra(const std::vector<const MatrixSpectrum *> &spectra, const QStringList &labels,
                              int64_t rank) {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (spectra.empty()) {
        clear(tr("No spectrum for this selection (select weight matrices)"));
        return;
    }
    double lo = 1e300, hi = 0;
    size_t maxN = 1;
    for (size_t s = 0; s < spectra.size(); ++s) {
        const MatrixSpectrum &sp = *spectra[s];
        QVector<double> x, y;
        for (size_t i = 0; i < sp.values.size(); ++i) {
            if (sp.values[i] <= 0)
                continue; // no place on a log axis
            x.push_back(double(i + 1));
            y.push_back(sp.values[i]);
            lo = std::min(lo, sp.values[i]);
            hi = std::max(hi, sp.values[i]);
        }
        maxN = std::max(maxN, sp.values.size());
        QCPGraph *g = m_plot->addGraph();
        g->setName(s < size_t(labels.size()) ? labels[int(s)] : QString::fromStdString(sp.key));
        g->setPen(QPen(kColors[s % 8], 1.6));
        g->setData(x, y, true);
    }
    const MatrixSpectrum &first = *spectra.front();
    const std::vector<double> cum = cumulativeEnergy(first.values);
    QVector<double> cx, cy;
    for (size_t i = 0; i < cum.size(); ++i) {
        cx.push_back(double(i + 1));
        cy.push_back(cum[i]);
    }
    QCPGraph *energy = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
    energy->setName(tr("cumulative energy"));
    energy->setPen(QPen(QColor(80, 80, 80), 1.2, Qt::DashLine));
    energy->setData(cx, cy, true);

    m_plot->xAxis->setRange(0.8, double(maxN) * 1.25);
    if (hi > 0)
        m_plot->yAxis->setRange(lo / 1.5, hi * 1.5);
    QString subtitle;
    if (rank > 0) {
        auto *line = new QCPItemStraightLine(m_plot);
        line->setPen(QPen(QColor(200, 30, 30), 1.2, Qt::DotLine));
        line->point1->setCoords(double(rank), 1);
        line->point2->setCoords(double(rank), 2);
        auto *label = new QCPItemText(m_plot);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
        label->position->setType(QCPItemPosition::ptAxisRectRatio);
        label->position->setCoords(0.02, 0.02);
        label->setText(tr("rank %1 keeps %2% of the energy").arg(rank).arg(100.0 * energyKept(first.values, rank), 0, 'f', 1));
        label->setColor(QColor(200, 30, 30));
    }
    const SpectrumStats &st = first.stats;
    const QString alpha = std::isfinite(st.alpha) ? QString::number(st.alpha, 'f', 2) : QStringLiteral("–");
    showResult(tr("%1 (%2 x %3): eff. rank %4, stable rank %5, α %6%7")
                 .arg(labels.value(0, QString::fromStdString(first.key)))
                 .arg(first.rows)
                 .arg(first.cols)
                 .arg(st.effectiveRank, 0, 'f', 1)
                 .arg(st.stableRank, 0, 'f', 2)
                 .arg(alpha)
                 .arg(first.truncated ? tr(", top %1 (±%2)").arg(first.values.size()).arg(first.errorEstimate, 0, 'g', 2)
                                      : QString()));
}

} // namespace lathe
