#include "layerview.h"

#include "analysis/compressionestimate.h"
#include "model/model.h"
#include "parameterpanel.h"
#include "workbenchdocument.h"

#include <qcustomplot.h>

#include <map>

namespace lathe {

LayerView::LayerView(const WorkbenchDocument *document, const ParameterPanel *panel, QWidget *parent)
    : PlotView("layers", parent), m_doc(document), m_panel(panel) {
    m_plot->plotLayout()->remove(m_plot->axisRect());
    auto *grid = new QCPLayoutGrid;
    m_plot->plotLayout()->addElement(1, 0, grid);
    // One margin group: the three panels' axes start and end at the same x, so block k lines up in all three.
    auto *margins = new QCPMarginGroup(m_plot);
    for (int i = 0; i < 3; ++i) {
        auto *rect = new QCPAxisRect(m_plot);
        rect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
        grid->addElement(i, 0, rect);
    }
    clear(tr("Open a model"));
    connect(m_doc, &WorkbenchDocument::modelChanged, this, &LayerView::refresh);
    connect(m_doc, &WorkbenchDocument::analysisChanged, this, &LayerView::refresh);
    connect(m_panel, &ParameterPanel::changed, this, &LayerView::refresh);
}

void LayerView::refresh() {
    const std::shared_ptr<Model> model = m_doc->model();
    if (!model) {
        clear(tr("Open a model"));
        return;
    }
    const std::shared_ptr<const AnalyzeResult> analysis = m_doc->analysis();
    const CompressionPlan plan = m_panel->plan();
    std::map<int, LayerBar> bars;
    std::map<int, int> rankCount;
    for (const TensorInfo &t : model->tensors()) {
        if (t.layer < 0 || t.role == TensorRole::Buffer)
            continue;
        LayerBar &b = bars[t.layer];
        b.layer = t.layer;
        b.parameters += double(t.numel());
        if (isCompressionTarget(t)) {
            b.sparsity += double(prunedCount(plan.pattern, t.shape[0], t.shape[1]));
            if (analysis) {
                auto it = analysis->data.spectra.find(t.name);
                if (it != analysis->data.spectra.end()) {
                    b.effectiveRank += it->second.stats.effectiveRank;
                    ++rankCount[t.layer];
                }
            }
        }
    }
    std::vector<LayerBar> out;
    for (auto &[layer, b] : bars) {
        b.sparsity = b.parameters > 0 ? b.sparsity / b.parameters : 0;
        b.effectiveRank = rankCount[layer] ? b.effectiveRank / rankCount[layer] : 0;
        out.push_back(b);
    }
    setLayers(out, m_panel->patternText() + (analysis ? QString() : tr(" (effective ranks: computing)")));
}

void LayerView::clear(const QString &message) {
    m_layers.clear();
    m_planText.clear();
    showPlaceholder(message);
}

void LayerView::setLayers(const std::vector<LayerBar> &layers, const QString &planText) {
    m_layers = layers;
    m_planText = planText;
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
