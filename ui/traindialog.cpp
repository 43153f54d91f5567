#include "traindialog.h"

#include "formhelpers.h"
#include "paramform.h"

#include "base/error.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStackedWidget>
#include <QVBoxLayout>

#include <limits>

namespace lathe {

namespace {

QSpinBox *spin(QWidget *parent, const char *name, int min, int max, const QString &tip) {
    auto *s = new QSpinBox(parent);
    s->setObjectName(name);
    s->setRange(min, max);
    s->setToolTip(tip);
    return s;
}

QLineEdit *edit(QWidget *parent, const char *name, const QString &tip) {
    auto *e = new QLineEdit(parent);
    e->setObjectName(name);
    e->setToolTip(tip);
    return e;
}

// Spin boxes hold int: a spec value beyond that range is shown clamped, and spec() keeps the original.
int toSpin(int64_t v) { return int(std::clamp<int64_t>(v, 0, std::numeric_limits<int>::max())); }

} // namespace

TrainDialog::TrainDialog(const QString &modelPath, QWidget *parent) : QDialog(parent) {
    setWindowTitle(tr("Train %1").arg(modelPath));
    m_base.model = modelPath.toStdString();
    auto *layout = new QVBoxLayout(this);
    auto *form = new QFormLayout;

    m_method = new QComboBox(this);
    m_method->setObjectName("method");
    m_methodPages = new QStackedWidget(this);
    m_method->addItem(tr("Dense fine-tuning (the control)"), QString());
    m_method->setItemData(0, tr("every `trainable` parameter, no compression: what each method is compared with"),
                          Qt::ToolTipRole);
    m_methodPages->addWidget(new QWidget(m_methodPages));
    for (const CompressionMethod *method : methodsOfKind(MethodKind::FineTuning)) {
        m_forms.push_back(addMethodPage(m_method, m_methodPages, method->info()));
        connect(m_forms.back(), &ParamForm::changed, this, &TrainDialog::refresh);
    }
    form->addRow(tr("Method"), m_method);
    form->addRow(QString(), m_methodPages);
    m_preview = new QCustomPlot(this);
    m_preview->setObjectName("schedulePreview");
    m_preview->setMinimumHeight(110);
    m_preview->xAxis->setLabel(tr("step"));
    m_preview->yAxis->setRange(0, 1);
    form->addRow(tr("Schedule"), m_preview);

    m_model = withBrowse(this, form, tr("Model"), false, "model", tr("Model"));
    m_tokenizer = withBrowse(this, form, tr("Tokenizer (optional)"), false, "tokenizer", tr("Tokenizer"));
    m_trainable = edit(this, "trainable", tr("Regular expression over parameter names; the others are frozen"));
    form->addRow(tr("Trainable"), m_trainable);
    m_train = withBrowse(this, form, tr("Training text"), false, "trainText");
    m_eval = withBrowse(this, form, tr("Held-out text (optional)"), false, "evalText");
    m_holdout = new QDoubleSpinBox(this);
    m_holdout->setObjectName("holdout");
    m_holdout->setRange(0, 0.9);
    m_holdout->setDecimals(4);
    m_holdout->setSingleStep(0.05);
    m_holdout->setToolTip(tr("Instead of a held-out text: this fraction of the training text's tokens, from its "
                             "end, is kept out of training and evaluated"));
    form->addRow(tr("Held-out fraction"), m_holdout);
    m_seqLen = spin(this, "seqLen", 2, 1 << 20, tr("Tokens per window"));
    m_batch = spin(this, "batch", 1, 1 << 16, tr("Windows per micro-batch"));
    m_accumulate = spin(this, "accumulate", 1, 1 << 16, tr("Micro-batches per optimizer step"));
    form->addRow(tr("Window / batch / accumulate"), row(this, {m_seqLen, m_batch, m_accumulate}));
    m_evalWindows = spin(this, "evalWindows", 1, 1 << 20, tr("Held-out windows per evaluation"));
    m_seed = edit(this, "seed", tr("Seed of the data order and of the methods' random initialisations"));
    form->addRow(tr("Evaluation windows / seed"), row(this, {m_evalWindows, m_seed}));

    m_lr = edit(this, "lr", tr("Peak learning rate"));
    m_schedule = new QComboBox(this);
    m_schedule->setObjectName("schedule");
    m_schedule->addItems({"cosine", "linear", "constant"});
    m_warmup = spin(this, "warmup", 0, std::numeric_limits<int>::max(), tr("Linear warm-up steps"));
    m_minLr = edit(this, "minLrRatio", tr("The decay's floor as a fraction of the peak"));
    form->addRow(tr("Learning rate / schedule"), row(this, {m_lr, m_schedule, m_warmup, m_minLr}));
    m_weightDecay = edit(this, "weightDecay", tr("AdamW's decoupled weight decay (2-D weights only)"));
    m_clip = edit(this, "clip", tr("Global gradient-norm clipping; 0 turns it off"));
    m_beta1 = edit(this, "beta1", tr("AdamW beta1"));
    m_beta2 = edit(this, "beta2", tr("AdamW beta2"));
    m_eps = edit(this, "eps", tr("AdamW epsilon"));
    form->addRow(tr("Decay / clip / betas / eps"), row(this, {m_weightDecay, m_clip, m_beta1, m_beta2, m_eps}));
    m_steps = spin(this, "steps", 1, std::numeric_limits<int>::max(), tr("Optimizer steps"));
    m_evalEvery = spin(this, "evalEvery", 0, std::numeric_limits<int>::max(),
                       tr("Steps between evaluations; 0: at the end only"));
    m_checkpointEvery = spin(this, "checkpointEvery", 0, std::numeric_limits<int>::max(),
                             tr("Steps between checkpoints (a killed run resumes from the last); 0: none"));
    form->addRow(tr("Steps / evaluate every / checkpoint every"), row(this, {m_steps, m_evalEvery, m_checkpointEvery}));
    m_recompute = new QCheckBox(tr("Recompute activations in backward (less memory, about 1.4x the time)"), this);
    m_recompute->setObjectName("recompute");
    form->addRow(QString(), m_recompute);
    m_device = deviceChoice(this,
                            tr("Where the steps run: the CPU engine, or the GPU trainer (both run every family and "
                               "every fine-tuning method); Automatic takes the GPU where there is a usable one and "
                               "says why not in the run log"));
    m_precision = new QComboBox(this);
    m_precision->setObjectName("precision");
    m_precision->addItems({"bf16", "fp32"});
    m_precision->setToolTip(tr("The GPU's products: bf16 operands with fp32 accumulation (tensor cores), or fp32; "
                               "weights, gradients and AdamW state stay fp32"));
    form->addRow(tr("Device / GPU precision"), row(this, {m_device, m_precision}));
    m_output = withBrowse(this, form, tr("Run folder"), true, "output");
    m_overwrite = new QCheckBox(tr("Replace a previous run in this folder"), this);
    m_overwrite->setObjectName("overwrite");
    m_export = new QCheckBox(tr("Export the trained model (Hugging Face folder)"), this);
    m_export->setObjectName("export");
    m_dtype = new QComboBox(this);
    m_dtype->setObjectName("dtype");
    m_dtype->addItems({"f32", "bf16", "f16"});
    m_gguf = ggufChoice(this);
    form->addRow(QString(), row(this, {m_overwrite, m_export, m_dtype, m_gguf}));
    layout->addLayout(form);

    m_estimate = new QLabel(tr("Estimate: press Estimate to time one training step of this job here"), this);
    m_estimate->setObjectName("estimate");
    m_estimate->setWordWrap(true);
    m_estimateButton = new QPushButton(tr("Estimate"), this);
    m_estimateButton->setObjectName("estimateButton");
    m_estimateButton->setToolTip(tr("Builds the job's model and method, times one training step on this machine and "
                                    "estimates the run's time, memory and disk (seconds to a minute)"));
    connect(m_estimateButton, &QPushButton::clicked, this, &TrainDialog::estimate);
    layout->addWidget(row(this, {m_estimate, m_estimateButton}));

    const JobDialogFooter footer = addJobDialogFooter(this, layout);
    m_status = footer.status;
    m_run = footer.run;
    connect(footer.save, &QPushButton::clicked, this, [this] {
        try {
            const QString error = saveJobSpec(this, spec().toJson());
            if (!error.isEmpty())
                m_status->setText(error);
        } catch (const LatheError &e) {
            m_status->setText(QString::fromStdString(e.what()));
        }
    });

    for (QLineEdit *e : {m_model, m_tokenizer, m_trainable, m_train, m_eval, m_seed, m_lr, m_minLr, m_weightDecay,
                         m_clip, m_beta1, m_beta2, m_eps, m_output})
        connect(e, &QLineEdit::textChanged, this, &TrainDialog::refresh);
    for (QSpinBox *s :
         {m_seqLen, m_batch, m_accumulate, m_evalWindows, m_warmup, m_steps, m_evalEvery, m_checkpointEvery})
        connect(s, &QSpinBox::valueChanged, this, &TrainDialog::refresh);
    connect(m_holdout, &QDoubleSpinBox::valueChanged, this, &TrainDialog::refresh);
    for (QComboBox *c : {m_method, m_schedule, m_dtype, m_gguf, m_device, m_precision})
        connect(c, &QComboBox::currentIndexChanged, this, &TrainDialog::refresh);
    for (QCheckBox *c : {m_recompute, m_export, m_overwrite})
        connect(c, &QCheckBox::toggled, this, &TrainDialog::refresh);
    setSpec(m_base);
}

TrainDialog::~TrainDialog() {
    if (m_cancelEstimate)
        *m_cancelEstimate = true;
    if (m_estimating.isRunning())
        m_estimating.waitForFinished(); // at most the rest of the set-up or one probe step
}

QString TrainDialog::estimateText() const { return m_estimate->text(); }

void TrainDialog::estimate() {
    TrainingSpec s;
    try {
        s = spec();
        validateTrainingSpec(s);
    } catch (const LatheError &e) {
        m_estimate->setText(tr("No estimate: %1").arg(QString::fromStdString(e.what())));
        return;
    }
    if (m_cancelEstimate)
        *m_cancelEstimate = true; // a running one is of older settings
    m_cancelEstimate = std::make_shared<std::atomic<bool>>(false);
    m_estimatedKey = s.toJson().dump();
    m_refusal.clear();
    m_estimate->setText(tr("Estimate: building the model and timing one training step on this machine..."));
    m_estimateButton->setEnabled(false);
    m_estimating = QtConcurrent::run([s, cancel = m_cancelEstimate] {
        Estimated r;
        try {
            r.preflight = preflightTraining(s, cancel.get());
        } catch (const std::exception &e) {
            r.error = e.what();
        }
        return r;
    });
    auto *watcher = new QFutureWatcher<Estimated>(this);
    const std::shared_ptr<std::atomic<bool>> cancel = m_cancelEstimate;
    connect(watcher, &QFutureWatcher<Estimated>::finished, this, [this, watcher, cancel] {
        watcher->deleteLater();
        if (*cancel)
            return; // the settings changed meanwhile
        m_estimateButton->setEnabled(true);
        const Estimated r = watcher->result();
        if (!r.error.empty()) {
            m_estimate->setText(tr("No estimate: %1").arg(QString::fromStdString(r.error)));
            return;
        }
        const RunEstimate &e = r.preflight.estimate;
        const TrainingProbe &p = r.preflight.probe;
        m_estimate->setText(tr("Estimate: %1").arg(QString::fromStdString(e.summary())));
        m_estimate->setToolTip(tr("From one timed training step of %1 x %2 tokens on this machine (set-up %3 s, "
                                  "forward %4 s, backward %5 s, optimizer and method %6 s):\n%7Checkpoints and exports "
                                  "at an assumed 300 MB/s.")
                                   .arg(p.batch)
                                   .arg(p.seqLen)
                                   .arg(p.setupSeconds, 0, 'f', 2)
                                   .arg(p.forwardSeconds, 0, 'f', 3)
                                   .arg(p.backwardSeconds, 0, 'f', 3)
                                   .arg(p.fixedSeconds, 0, 'f', 3)
                                   .arg(QString::fromStdString(e.report())));
        m_refusal = e.refusal;
        refresh();
    });
    watcher->setFuture(m_estimating);
}

void TrainDialog::setSpec(const TrainingSpec &s) {
    m_loading = true;
    m_base = s;
    int method = 0;
    for (size_t i = 0; i < m_forms.size(); ++i)
        if (s.method && m_method->itemData(int(i) + 1).toString().toStdString() == s.method->info().name) {
            method = int(i) + 1;
            m_forms[i]->setParams(s.methodParams);
        }
    m_method->setCurrentIndex(method);
    m_model->setText(QString::fromStdString(s.model));
    m_tokenizer->setText(QString::fromStdString(s.tokenizer));
    m_trainable->setText(QString::fromStdString(s.trainable));
    m_train->setText(QString::fromStdString(s.trainText));
    m_eval->setText(QString::fromStdString(s.evalText));
    m_holdout->setValue(s.holdout);
    m_seqLen->setValue(toSpin(s.seqLen));
    m_batch->setValue(toSpin(s.batch));
    m_accumulate->setValue(toSpin(s.accumulate));
    m_evalWindows->setValue(toSpin(s.evalWindows));
    m_seed->setText(QString::number(s.seed));
    auto exact = [](double v) { return QString::number(v, 'g', 17); };
    m_lr->setText(exact(s.lr));
    m_schedule->setCurrentText(QString::fromStdString(s.schedule));
    m_warmup->setValue(toSpin(s.warmup));
    m_minLr->setText(exact(s.minLrRatio));
    m_weightDecay->setText(exact(s.weightDecay));
    m_clip->setText(exact(s.clip));
    m_beta1->setText(exact(s.beta1));
    m_beta2->setText(exact(s.beta2));
    m_eps->setText(exact(s.eps));
    m_steps->setValue(toSpin(s.steps));
    m_evalEvery->setValue(toSpin(s.evalEvery));
    m_checkpointEvery->setValue(toSpin(s.checkpointEvery));
    m_recompute->setChecked(s.recompute);
    setDeviceChoice(m_device, s.device);
    m_precision->setCurrentText(QString::fromStdString(s.precision));
    m_output->setText(QString::fromStdString(s.outputDir));
    m_overwrite->setChecked(s.overwrite);
    m_export->setChecked(s.exportModel);
    m_dtype->setCurrentText(QString::fromStdString(s.dtype));
    setGgufChoice(m_gguf, s.gguf);
    m_loading = false;
    refresh();
}

TrainingSpec TrainDialog::spec() const {
    TrainingSpec s = m_base;
    const int method = m_method->currentIndex();
    if (method > 0) {
        s.method = dynamic_cast<const FineTuningMethod *>(findMethod(m_method->currentData().toString().toStdString()));
        s.methodParams = m_forms[size_t(method - 1)]->params();
    } else {
        s.method = nullptr;
        s.methodParams = MethodParams();
    }
    s.model = m_model->text().trimmed().toStdString();
    s.tokenizer = m_tokenizer->text().trimmed().toStdString();
    s.trainable = m_trainable->text().toStdString();
    s.trainText = m_train->text().trimmed().toStdString();
    s.evalText = m_eval->text().trimmed().toStdString();
    s.holdout = m_holdout->value();
    // A spin box shows at most INT_MAX: a larger value from the spec is kept while its box is not edited.
    auto fromSpin = [](const QSpinBox *b, int64_t before) {
        return b->value() == toSpin(before) ? before : int64_t(b->value());
    };
    s.seqLen = fromSpin(m_seqLen, m_base.seqLen);
    s.batch = fromSpin(m_batch, m_base.batch);
    s.accumulate = fromSpin(m_accumulate, m_base.accumulate);
    s.evalWindows = fromSpin(m_evalWindows, m_base.evalWindows);
    s.seed = wholeNumber(m_seed, "seed");
    s.lr = realNumber(m_lr, "learning rate");
    s.schedule = m_schedule->currentText().toStdString();
    s.warmup = fromSpin(m_warmup, m_base.warmup);
    s.minLrRatio = realNumber(m_minLr, "minimum learning-rate ratio");
    s.weightDecay = realNumber(m_weightDecay, "weight decay");
    s.clip = realNumber(m_clip, "clip");
    s.beta1 = realNumber(m_beta1, "beta1");
    s.beta2 = realNumber(m_beta2, "beta2");
    s.eps = realNumber(m_eps, "eps");
    s.steps = fromSpin(m_steps, m_base.steps);
    s.evalEvery = fromSpin(m_evalEvery, m_base.evalEvery);
    s.checkpointEvery = fromSpin(m_checkpointEvery, m_base.checkpointEvery);
    s.recompute = m_recompute->isChecked();
    s.device = m_device->currentData().toString().toStdString();
    s.precision = m_precision->currentText().toStdString();
    s.outputDir = m_output->text().trimmed().toStdString();
    s.overwrite = m_overwrite->isChecked();
    s.exportModel = m_export->isChecked();
    s.dtype = m_dtype->currentText().toStdString();
    s.gguf = m_gguf->currentData().toString().toStdString();
    return s;
}

void TrainDialog::refresh() {
    if (m_loading)
        return;
    m_methodPages->setCurrentIndex(m_method->currentIndex());
    // The schedule preview: what the run's metrics will show for this method, parameters and step count.
    m_preview->clearGraphs();
    bool preview = false;
    try {
        const TrainingSpec s = spec();
        if (s.method) {
            const FineTuningMethod::Schedule sched =
                s.method->schedule(s.methodParams, std::min<int64_t>(s.steps, 100000));
            QVector<double> x, y;
            for (size_t i = 0; i < sched.values.size(); ++i) {
                x << double(i + 1);
                y << sched.values[i];
            }
            QCPGraph *g = m_preview->addGraph();
            g->setName(QString::fromStdString(sched.name).replace('_', ' '));
            g->setData(x, y, true);
            g->setPen(QPen(QColor(44, 160, 44), 1.5));
            m_preview->xAxis->setRange(0, std::max(1.0, double(sched.values.size())));
            m_preview->yAxis->setLabel(g->name());
            preview = true;
        }
    } catch (const LatheError &) {
        // a field that does not parse: the status line below says which
    }
    m_preview->setVisible(preview);
    m_preview->replot();
    QString problem;
    try {
        const TrainingSpec s = spec();
        validateTrainingSpec(s);
        // An estimate describes the settings it was made with: a change makes it stale (and lifts its refusal).
        const std::string key = s.toJson().dump();
        if (key != m_estimatedKey) {
            if (!m_estimatedKey.empty()) {
                m_estimate->setText(tr("Estimate: the settings changed; press Estimate again"));
                m_estimate->setToolTip(QString());
            }
            if (m_cancelEstimate && m_estimating.isRunning())
                *m_cancelEstimate = true;
            m_estimateButton->setEnabled(true);
            m_refusal.clear();
            m_estimatedKey.clear();
        }
        if (!m_refusal.empty())
            problem = tr("This run does not fit: %1").arg(QString::fromStdString(m_refusal));
    } catch (const LatheError &e) {
        problem = problemText(e);
    }
    showProblem(m_status, m_run, problem);
}

} // namespace lathe
