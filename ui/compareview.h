#pragma once

#include "comparejob.h"
#include "plotview.h"

#include <memory>

class QComboBox;

namespace lathe {

class WorkbenchDocument;

// Two models side by side (issue 19 item 1): the open model ("A") and one chosen with Analysis > Compare With
// Model... ("B", e.g. its compressed export). Modes: the singular values of the selected matrix in both (log-log,
// matched by tensor name), or per block the mean effective rank, the mean power-law alpha, the sparsity (zeros of the block linears) or the
// non-zero parameters of both, with the difference B - A as bars.
class CompareView : public PlotView {
    Q_OBJECT
public:
    CompareView(const WorkbenchDocument *document, QWidget *parent = nullptr);

    enum Mode { Spectrum, EffectiveRank, Alpha, Sparsity, Parameters };
    void setComparison(std::shared_ptr<const ModelComparison> comparison);
    void setMode(Mode mode);
    void setSelectedTensor(const QString &name); // the matrix the Spectrum mode overlays
    const ModelComparison *comparison() const { return m_comparison.get(); }

private:
    void redraw();

    const WorkbenchDocument *m_doc;
    std::shared_ptr<const ModelComparison> m_comparison;
    QComboBox *m_mode = nullptr;
    QString m_tensor;
};

} // namespace lathe
