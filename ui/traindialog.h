#pragma once

#include "run/trainingrun.h"

#include <QDialog>
#include <QFuture>

#include <atomic>
#include <memory>
#include <vector>

class QCPGraph;
class QCheckBox;
class QCustomPlot;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QStackedWidget;

namespace lathe {

class ParamForm;

// Edits a training job spec (the one `lathe-cli train` reads, run/trainingrun.h): the method (dense fine-tuning,
// the control, or a registered fine-tuning method with a form for its parameters built from their declarations),
// what trains, the data (training text, held-out text or fraction, window, batch, accumulation, evaluation windows,
// seed), the optimizer and schedule, steps, evaluation and checkpoint intervals, recomputation, and the output.
// A small plot previews the method's schedule (sparsity, kept fraction, omission rate) over the run's steps, as the
// run will report it. Every field of a spec given to setSpec comes back from spec() (resume, which the dialog does not show, is
// carried). Mistakes the engine can find without running are shown as the user types, with Run disabled; the
// spec can be saved as JSON. Estimate (run/preflight.h, preflightTraining) builds the job's model and method on a
// worker thread, times one training step, and shows the run's estimated time, memory and disk; a run that does not
// fit is refused with the reason, like any other problem, until the settings change.
class TrainDialog : public QDialog {
    Q_OBJECT
public:
    TrainDialog(const QString &modelPath, QWidget *parent = nullptr);
    ~TrainDialog() override;

    void setSpec(const TrainingSpec &spec);
    // The spec as edited; LatheError when a field does not parse or a value is out of range.
    TrainingSpec spec() const;
    // Starts the estimate of the current spec (what the Estimate button does); its line says when it is done.
    void estimate();
    QString estimateText() const;
    bool estimating() const { return m_estimating.isRunning(); }

private:
    void refresh();
    struct Estimated {
        std::string error;
        TrainingPreflight preflight;
    };

    TrainingSpec m_base;
    bool m_loading = false;
    QComboBox *m_method;
    QStackedWidget *m_methodPages;
    std::vector<ParamForm *> m_forms; // per fine-tuning method, in the combo's order after "dense"
    QLineEdit *m_model, *m_tokenizer, *m_trainable, *m_train, *m_eval, *m_seed, *m_lr, *m_minLr, *m_weightDecay,
        *m_clip, *m_beta1, *m_beta2, *m_eps, *m_output;
    QDoubleSpinBox *m_holdout;
    QSpinBox *m_seqLen, *m_batch, *m_accumulate, *m_evalWindows, *m_warmup, *m_steps, *m_evalEvery,
        *m_checkpointEvery;
    QComboBox *m_schedule, *m_dtype, *m_gguf, *m_device, *m_precision;
    QCheckBox *m_recompute, *m_export, *m_overwrite;
    QCustomPlot *m_preview; // the method's schedule over the run's steps (hidden for dense fine-tuning)
    QLabel *m_status;
    QPushButton *m_run;
    QPushButton *m_estimateButton;
    QLabel *m_estimate;
    QFuture<Estimated> m_estimating;
    std::shared_ptr<std::atomic<bool>> m_cancelEstimate;
    std::string m_estimatedKey; // the spec (as JSON) the current estimate is of; empty: none
    std::string m_refusal;      // of that estimate
};

} // namespace lathe
