#pragma once

#include "plotview.h"

class QLineEdit;
class QPushButton;
class QSpinBox;
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
    // The sample-generation panel: a prompt, a token count, "Generate with Every Model" (generateRequested with
    // the dense model and every run that exported one), and the texts side by side.
    QTableWidget *generations() const { return m_generations; }
    QLineEdit *prompt() const { return m_prompt; }
    void requestGeneration(); // as the button does
    void setGenerations(const QStringList &labels, const QStringList &texts);

signals:
    void generateRequested(QStringList labels, QStringList paths, QString prompt, int maxNew);

private:
    void rebuildTable();
    void redraw();

    const WorkbenchDocument *m_doc;
    QTableWidget *m_table = nullptr;
    QLineEdit *m_prompt = nullptr;
    QSpinBox *m_maxNew = nullptr;
    QPushButton *m_generate = nullptr;
    QTableWidget *m_generations = nullptr;
};

} // namespace lathe
