#pragma once

#include "plotview.h"

class QTableWidget;

namespace lathe {

class WorkbenchDocument;

// Results of compression runs side by side, drawn from the workbench document: a comparison table (model, run,
// sparsity, perplexity, change against that model's dense perplexity, parameters, bytes dense / compact, method
// time, export folder) of every run of the session, and the open model's perplexity against sparsity, one line per
// method and setting, with its dense model as a dashed line. Follows the document's runs and open model.
class ResultsView : public PlotView {
    Q_OBJECT
public:
    explicit ResultsView(const WorkbenchDocument *document, QWidget *parent = nullptr);

    QTableWidget *table() const { return m_table; }

private:
    void rebuildTable();
    void redraw();

    const WorkbenchDocument *m_doc;
    QTableWidget *m_table = nullptr;
};

} // namespace lathe
