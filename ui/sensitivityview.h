#pragma once

#include "analysis/sensitivity.h"
#include "plotview.h"

#include <memory>
#include <optional>
#include <vector>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QTableWidget;

namespace lathe {

// Sensitivity and per-layer budgets (issue 19 item 2). The plot: per block, the perplexity change when only that
// block is pruned (bars, left axis) and the proposed sparsity (line, right axis). Below it, the budget controls
// (from the sensitivities or from OWL's outlier ratios, the mean sparsity, lambda) and one table row per block
// whose sparsity cell is editable; a line ranks the kinds of linear. "Compress with These Budgets..." asks for a
// compression whose layer_sparsity is the table's column (budgetsRequested).
class SensitivityView : public PlotView {
    Q_OBJECT
public:
    explicit SensitivityView(QWidget *parent = nullptr);

    // A finished sweep; `title` says what was pruned, `subtitle` names the model and text (on the note line). The
    // budget is proposed afresh from it.
    void setResult(std::shared_ptr<const SensitivityResult> result, const QString &title, const QString &subtitle);
    const SensitivityResult *result() const { return m_result.get(); }

    // The per-block sparsities in the table (proposed, or as edited); empty when a cell does not hold a number in
    // [0, 0.99] (the button is then disabled and the cell marked).
    std::vector<double> budgets() const;
    double target() const;
    // Setters for the controls (tests, and a session that restores them).
    void setBudgetSource(bool fromOutliers);
    void setTarget(double target);
    void setLambda(double lambda);
    void setCellSparsity(int block, double sparsity); // as if typed in the table
    QTableWidget *table() const { return m_table; }
    // The sweep, its titles and the budget controls and table as JSON (a saved session), and back; null when
    // there is no sweep. LatheError for a malformed object.
    nlohmann::json state() const;
    void restore(const nlohmann::json &state);

signals:
    void budgetsRequested(std::vector<double> budgets, double target);

private:
    void propose(); // fills the sparsity column from the controls
    void redraw();  // plot from the table's current values
    std::optional<double> cellSparsity(int row) const; // the row's sparsity cell, when it holds one in [0, 0.99]

    std::shared_ptr<const SensitivityResult> m_result;
    QString m_title, m_subtitle;
    QComboBox *m_source = nullptr;
    QDoubleSpinBox *m_target = nullptr, *m_lambda = nullptr;
    QTableWidget *m_table = nullptr;
    QLabel *m_kinds = nullptr;
    QPushButton *m_compress = nullptr;
    bool m_filling = false;
};

} // namespace lathe
