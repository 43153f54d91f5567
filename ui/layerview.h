#pragma once

#include "plotview.h"

#include <vector>

namespace lathe {

// Per-layer numbers across the model, as three bar charts stacked: parameters, sparsity after the planned
// compression, mean effective rank of the layer's matrices (from the spectra, when computed).
struct LayerBar {
    int layer = 0;
    double parameters = 0;
    double sparsity = 0;      // fraction of the layer's parameters pruned by the plan
    double effectiveRank = 0; // mean over the layer's matrices; 0 = unknown
};

class ParameterPanel;
class WorkbenchDocument;

// Subscribes to the workbench document (model, analysis) and the parameter panel (the plan) and redraws itself.
class LayerView : public PlotView {
    Q_OBJECT
public:
    LayerView(const WorkbenchDocument *document, const ParameterPanel *panel, QWidget *parent = nullptr);
    void setLayers(const std::vector<LayerBar> &layers, const QString &planText);
    void clear(const QString &message);
    // Recomputes the bars from the document and the panel's plan.
    void refresh();
    // What is drawn: one bar per block, and the plan it shows (empty when cleared).
    const std::vector<LayerBar> &layers() const { return m_layers; }
    QString planText() const { return m_planText; }

private:
    std::vector<LayerBar> m_layers;
    QString m_planText;
    const WorkbenchDocument *m_doc;
    const ParameterPanel *m_panel;
};

} // namespace lathe
