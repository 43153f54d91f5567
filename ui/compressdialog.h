#pragma once

#include "run/compressionspec.h"
#include "run/preflight.h"

#include <QDialog>
#include <QFuture>
#include <QHash>

#include <memory>
#include <optional>
#include <vector>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSpinBox;
class QStackedWidget;

namespace lathe {

class Model;
class ParamForm;

// Edits a compression job spec: the method (every registered one, methods/registry.h) with a form for its
// parameters built from their declarations, the sparsity (or a comma-separated sweep), a live preview of what a
// run touches (matched linears, widths), calibration and evaluation texts and sizes, tokenizer, output folder,
// export and device. Every field of a spec given to setSpec comes back from spec() (fields the dialog does not
// show, such as resume, are carried). Everything the engine can check without running is checked as the user
// types (Run is disabled with the reason shown). The spec can be saved as JSON for lathe-cli compress.
class CompressDialog : public QDialog {
    Q_OBJECT
public:
    CompressDialog(const Model *model, const QString &modelPath, QWidget *parent = nullptr);
    ~CompressDialog() override; // waits for the probe (a forward pass) when it is still running

    // The preflight estimate line ("Estimate: about 2 min; memory ...") once the probe has run; a run that does not
    // fit is refused with the reason like any other problem (run/preflight.h).
    QString estimateText() const;
    bool probeDone() const { return m_probe.has_value(); }
    void setSpec(const CompressionSpec &spec);
    // The spec as edited; LatheError when a field does not parse.
    CompressionSpec spec() const;

private:
    void refresh();
    void saveSpec();
    int methodIndex() const;

    const Model *m_model;
    QString m_modelPath;
    CompressionSpec m_base; // the spec last given: what the dialog does not show comes from it
    bool m_loading = false; // setSpec is filling the fields
    QComboBox *m_method;
    QLineEdit *m_sparsity;
    QStackedWidget *m_methodPages;
    std::vector<ParamForm *> m_forms; // one per registered method, in the combo's order
    QListWidget *m_preview;
    QWidget *m_calibrationBox;
    QLineEdit *m_calibration;
    QSpinBox *m_samples;
    QSpinBox *m_seqLen;
    QLineEdit *m_seed;
    QLineEdit *m_tokenizer;
    QLineEdit *m_evalText;
    QSpinBox *m_evalSeqLen;
    QLineEdit *m_evalMaxTokens;
    QCheckBox *m_evalDense;
    QComboBox *m_evalPrecision;
    QLineEdit *m_output;
    QCheckBox *m_overwrite;
    QComboBox *m_dtype, *m_gguf;
    QCheckBox *m_export;
    QComboBox *m_device;
    QLabel *m_status;
    QPushButton *m_run;
    QLabel *m_estimate;
    // The probe of this machine and the model's tokenizer, made once on a worker thread when the dialog opens.
    struct Probed {
        ForwardProbe probe;
        std::shared_ptr<const Tokenizer> tokenizer;
        std::string error, gpuError; // gpuError: the GPU's probe failed, the CPU's stands
    };
    QFuture<Probed> m_probing;
    std::optional<ForwardProbe> m_probe;
    QString m_probeNote; // why the GPU was not timed, when it could not be
    // The GPU timed again when the evaluation precision changes from the one it was timed at (its pass in bf16 or
    // fp16 is not its fp32 one): on a worker thread, the CPU's probe standing meanwhile; a precision whose probe
    // failed is not tried again (m_gpuFailed, with the reason).
    QFuture<Probed> m_gpuProbing;
    QHash<int, QString> m_gpuFailed;
    void retimeGpu(ComputePrecision precision);
    std::shared_ptr<const Tokenizer> m_modelTokenizer;
    QHash<QString, int64_t> m_tokens; // estimated token counts by text path
    int64_t tokensOf(const std::string &path);
};

} // namespace lathe
