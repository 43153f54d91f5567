#include "layerview.h"

#include <qcustomplot.h>

namespace lathe {

LayerView::LayerView(QWidget *parent) : PlotView("layers", parent) {
    m_plot->plotLayout()->remove(m_plot->axisRect());
    auto *grid = new QCPLayoutGrid;
    m_plot->plotLayout()->addElement(1, 0, grid);
    for (int i = 0; i < 3; ++i)
        grid->addElement(i, 0, new QCPAxisRect(m_plot));
    clear(tr("Open a model"));
}

void LayerView::clear(const QString &message) { showPlaceholder(message); }

void LayerView::setLayers(const std::vector<LayerBar> &layers, const QString &planText) {
    m_plot->clearPlottables();
    m_plot->clearItems();
    if (layers.empty()) {
        clear(tr("This model has no blocks"));
        return;
    }
    const QString labels[3] = {tr("parameters"), tr("sparsity after"), tr("mean eff. rank")};
    const QColor colors[3] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(148, 103, 189)};
    for (int k = 0; k < 3; ++k) {
        QCPAxisRect *rect = m_plot->axisRect(k);
        QVector<double> x, y;
        double top = 0;
        for (const LayerBar &l : layers) {
            x.push_back(l.layer);
            const double v = k == 0 ? l.parameters : k == 1 ? l.sparsity : l.effectiveRank;
            y.push_back(v);
            top = std::max(top, v);
        }
        auto *bars = new QCPBars(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
        bars->setData(x, y, true);
        bars->setWidth(0.75);
        bars->setPen(Qt::NoPen);
        bars->setBrush(colors[k]);
        rect->axis(QCPAxis::atLeft)->setLabel(labels[k]);
        rect->axis(QCPAxis::atBottom)->setRange(-0.7, double(layers.back().layer) + 0.7);
        rect->axis(QCPAxis::atLeft)->setRange(0, k == 1 ? 1.0 : std::max(top * 1.1, 1e-9));
        rect->axis(QCPAxis::atBottom)->setLabel(k == 2 ? tr("block") : QString());
    }
    showResult(tr("Per block: %1").arg(planText));
}

} // namespace lathe
