#pragma once

#include "run/compressionrun.h"

#include <QDialog>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QSpinBox;

namespace lathe {

class Model;

// Edits a compression job spec: method, sparsity (or a comma-separated sweep), pattern, target regex with a live
// preview of the matched linears, calibration and evaluation texts, output folder. Everything the engine can
// check without running is checked as the user types (the Run button is disabled with the reason shown). The
// spec can be saved as JSON for lathe-cli compress.
class CompressDialog : public QDialog {
    Q_OBJECT
public:
    CompressDialog(const Model *model, const QString &modelPath, QWidget *parent = nullptr);

    void setSpec(const CompressionSpec &spec);
    // The spec as edited; LatheError when a field does not parse.
    CompressionSpec spec() const;

private:
    void refresh();
    void saveSpec();

    const Model *m_model;
    QString m_modelPath;
    QComboBox *m_method;
    QLineEdit *m_sparsity;
    QComboBox *m_pattern;
    QLineEdit *m_targets;
    QListWidget *m_preview;
    QLineEdit *m_calibration;
    QSpinBox *m_samples;
    QSpinBox *m_seqLen;
    QLineEdit *m_evalText;
    QSpinBox *m_evalSeqLen;
    QLineEdit *m_output;
    QComboBox *m_dtype;
    QCheckBox *m_export;
    QComboBox *m_device;
    QLabel *m_status;
    QPushButton *m_run;
};

} // namespace lathe
