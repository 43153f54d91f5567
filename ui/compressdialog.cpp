#include "compressdialog.h"

#include "formhelpers.h"
#include "paramform.h"

#include "numeric/backend.h"

#include "base/error.h"
#include "methods/registry.h"
#include "model/model.h"
#include "io/tokenizerloader.h"
#include "tokenizers/tokenizer.h"
#include "analysis/modelsummary.h"
#include "run/runfolder.h"
#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSaveFile>
#include <QLocale>
#include <QSpinBox>
#include <QStackedWidget>
#include <QVBoxLayout>

#include <limits>

namespace lathe {

CompressDialog::CompressDialog(const Model *model, const QString &modelPath, QWidget *parent)
    : QDialog(parent), m_model(model), m_modelPath(modelPath) {
    setWindowTitle(tr("Compress %1").arg(modelPath));
    auto *layout = new QVBoxLayout(this);
    auto *form = new QFormLayout;
    m_method = new QComboBox(this);
    m_method->setObjectName("method");
    m_methodPages = new QStackedWidget(this);
    for (const CompressionMethod *method : methodsOfKind(MethodKind::PostTraining)) {
        m_forms.push_back(addMethodPage(m_method, m_methodPages, method->info()));
        connect(m_forms.back(), &ParamForm::changed, this, &CompressDialog::refresh);
    }
    form->addRow(tr("Method"), m_method);
    m_sparsity = new QLineEdit("0.5", this);
    m_sparsity->setObjectName("sparsity");
    form->addRow(tr("Sparsity / sweep"), m_sparsity);
    form->addRow(m_methodPages);
    m_preview = new QListWidget(this);
    m_preview->setObjectName("preview");
    m_preview->setMaximumHeight(110);
    form->addRow(QString(), m_preview);

    m_calibrationBox = new QWidget(this);
    auto *cal = new QFormLayout(m_calibrationBox);
    cal->setContentsMargins(0, 0, 0, 0);
    m_calibration = withBrowse(m_calibrationBox, cal, tr("Calibration text"), false, "calibration");
    m_samples = new QSpinBox(this);
    m_samples->setObjectName("samples");
    m_samples->setRange(1, 1'000'000);
    m_seqLen = new QSpinBox(this);
    m_seqLen->setObjectName("seqLen");
    m_seqLen->setRange(2, 1'000'000);
    m_seed = new QLineEdit(this);
    m_seed->setObjectName("seed");
    m_seed->setToolTip(tr("Seed of the random choice of calibration windows"));
    cal->addRow(QString(), row(m_calibrationBox, {new QLabel(tr("samples"), this), m_samples, new QLabel(tr("x tokens"), this),
                                                  m_seqLen, new QLabel(tr("seed"), this), m_seed}));
    form->addRow(m_calibrationBox);
    m_tokenizer = withBrowse(this, form, tr("Tokenizer"), false, "tokenizer", tr("Tokenizer file"));
    m_tokenizer->setPlaceholderText(tr("the model's own"));
    m_evalText = withBrowse(this, form, tr("Evaluation text"), false, "evalText");
    m_evalSeqLen = new QSpinBox(this);
    m_evalSeqLen->setRange(2, 1'000'000);
    m_evalSeqLen->setObjectName("evalSeqLen");
    m_evalMaxTokens = new QLineEdit(this);
    m_evalMaxTokens->setObjectName("evalMaxTokens");
    m_evalMaxTokens->setToolTip(tr("Tokens of the text evaluated; 0 evaluates the whole text"));
    m_evalDense = new QCheckBox(tr("also the dense model"), this);
    m_evalDense->setObjectName("evalDense");
    m_evalPrecision = new QComboBox(this);
    m_evalPrecision->setObjectName("evalPrecision");
    m_evalPrecision->addItems({"fp32", "bf16", "fp16"});
    m_evalPrecision->setToolTip(tr("Precision of the evaluation's forward pass on a GPU (the CPU computes in fp32)"));
    form->addRow(tr("Evaluation window"), row(this, {m_evalSeqLen, new QLabel(tr("max tokens"), this), m_evalMaxTokens,
                                                     m_evalDense, m_evalPrecision}));
    m_output = withBrowse(this, form, tr("Run folder"), true, "output");
    m_overwrite = new QCheckBox(tr("Replace a previous run in this folder"), this);
    m_overwrite->setObjectName("overwrite");
    form->addRow(QString(), m_overwrite);
    m_dtype = new QComboBox(this);
    m_dtype->setObjectName("dtype");
    m_dtype->addItems({"f32", "bf16", "f16"});
    m_export = new QCheckBox(tr("Export the compressed model (Hugging Face folder)"), this);
    m_export->setObjectName("export");
    m_gguf = ggufChoice(this);
    form->addRow(tr("Export type"), row(this, {m_dtype, m_gguf}));
    form->addRow(QString(), m_export);
    m_device = deviceChoice(
        this, tr("Where evaluation and SliceGPT run; a GPU that is not usable here is refused with the reason"));
    form->addRow(tr("Device"), m_device);
    layout->addLayout(form);
    const JobDialogFooter footer = addJobDialogFooter(this, layout);
    m_status = footer.status;
    m_run = footer.run;
    connect(footer.save, &QPushButton::clicked, this, &CompressDialog::saveSpec);
    for (QLineEdit *e : {m_sparsity, m_calibration, m_seed, m_tokenizer, m_evalText, m_evalMaxTokens, m_output})
        connect(e, &QLineEdit::textChanged, this, &CompressDialog::refresh);
    for (QComboBox *c : {m_method, m_device, m_dtype, m_gguf, m_evalPrecision})
        connect(c, &QComboBox::currentIndexChanged, this, &CompressDialog::refresh);
    for (QCheckBox *c : {m_overwrite, m_export, m_evalDense})
        connect(c, &QCheckBox::toggled, this, &CompressDialog::refresh);
    for (QSpinBox *spin : {m_samples, m_seqLen, m_evalSeqLen}) // lengths are checked against the model's positions
        connect(spin, &QSpinBox::valueChanged, this, &CompressDialog::refresh);
    m_estimate = new QLabel(this);
    m_estimate->setObjectName("estimate");
    m_estimate->setWordWrap(true);
    layout->insertWidget(layout->count() - 1, m_estimate);
    if (m_model) {
        m_estimate->setText(tr("Estimate: timing one forward pass on this machine..."));
        const Model *model = m_model;
        const int64_t seq = std::min(512, m_evalSeqLen->value());
        const ComputePrecision precision = parsePrecision(m_base.evalPrecision);
        m_probing = QtConcurrent::run([model, seq, precision] {
            Probed p;
            try {
                p.probe = probeForward(*model, seq);
                p.tokenizer = std::shared_ptr<const Tokenizer>(loadTokenizer(*model));
            } catch (const std::exception &e) {
                p.error = e.what();
                return p;
            }
            // The GPU a run with device auto would take, when there is one; without it the estimate stays the
            // CPU's (a run on the GPU is then estimated slower than it will be).
            try {
                if (!gpuDevices().empty())
                    probeDeviceForward(p.probe, *model, createBackend(DevicePreference::Auto), precision);
            } catch (const std::exception &e) {
                p.gpuError = e.what();
            }
            return p;
        });
        auto *watcher = new QFutureWatcher<Probed>(this);
        connect(watcher, &QFutureWatcher<Probed>::finished, this, [this, watcher] {
            const Probed p = watcher->result();
            if (p.error.empty()) {
                m_probe = p.probe;
                m_probeNote = QString::fromStdString(p.gpuError);
                m_modelTokenizer = p.tokenizer;
            } else {
                m_estimate->setText(tr("No estimate: %1").arg(QString::fromStdString(p.error)));
            }
            refresh();
        });
        watcher->setFuture(m_probing);
    }
    m_base.model = m_modelPath.toStdString();
    setSpec(m_base);
}

CompressDialog::~CompressDialog() {
    for (QFuture<Probed> *f : {&m_probing, &m_gpuProbing})
        if (f->isRunning())
            f->waitForFinished();
}

void CompressDialog::retimeGpu(ComputePrecision precision) {
    const Model *model = m_model;
    Probed from;
    from.probe = *m_probe;
    m_gpuProbing = QtConcurrent::run([model, from, precision] {
        Probed p = from;
        try {
            probeDeviceForward(p.probe, *model, p.probe.gpu, precision);
        } catch (const std::exception &e) {
            p.gpuError = e.what();
        }
        return p;
    });
    auto *watcher = new QFutureWatcher<Probed>(this);
    connect(watcher, &QFutureWatcher<Probed>::finished, this, [this, watcher, precision] {
        const Probed p = watcher->result();
        watcher->deleteLater();
        if (p.gpuError.empty())
            m_probe = p.probe;
        else
            m_gpuFailed.insert(int(precision), QString::fromStdString(p.gpuError));
        refresh();
    });
    watcher->setFuture(m_gpuProbing);
}

QString CompressDialog::estimateText() const { return m_estimate->text(); }

int64_t CompressDialog::tokensOf(const std::string &path) {
    if (path.empty() || !m_modelTokenizer)
        return 0;
    const QString key = QString::fromStdString(path);
    if (!m_tokens.contains(key))
        m_tokens.insert(key, estimateTextTokens(*m_modelTokenizer, path));
    return m_tokens.value(key);
}

int CompressDialog::methodIndex() const { return std::max(0, m_method->currentIndex()); }

void CompressDialog::setSpec(const CompressionSpec &s) {
    m_base = s;
    {
        m_loading = true; // one refresh at the end
        m_method->setCurrentIndex(std::max(0, m_method->findData(QString::fromStdString(s.methodName()))));
        m_forms[size_t(methodIndex())]->setParams(s.params);
        QStringList values;
        for (double v : s.sparsities)
            values << QString::number(v, 'g', QLocale::FloatingPointShortest);
        m_sparsity->setText(values.join(", "));
        m_calibration->setText(QString::fromStdString(s.calibrationText));
        m_samples->setValue(int(s.calibrationSamples));
        m_seqLen->setValue(int(s.calibrationSeqLen));
        m_seed->setText(QString::number(s.calibrationSeed));
        m_tokenizer->setText(QString::fromStdString(s.tokenizer));
        m_evalText->setText(QString::fromStdString(s.evalText));
        m_evalSeqLen->setValue(int(s.evalSeqLen));
        m_evalMaxTokens->setText(QString::number(s.evalMaxTokens));
        m_evalDense->setChecked(s.evalDense);
        m_evalPrecision->setCurrentText(QString::fromStdString(s.evalPrecision));
        m_output->setText(QString::fromStdString(s.outputDir));
        m_overwrite->setChecked(s.overwrite);
        m_dtype->setCurrentText(QString::fromStdString(s.dtype));
        setGgufChoice(m_gguf, s.gguf);
        m_export->setChecked(s.exportModel);
        setDeviceChoice(m_device, s.device);
        m_loading = false;
    }
    refresh();
}

CompressionSpec CompressDialog::spec() const {
    CompressionSpec s = m_base; // resume and the spec file travel unchanged
    s.model = m_modelPath.toStdString();
    s.setMethod(m_method->currentData().toString().toStdString());
    s.params = m_forms[size_t(methodIndex())]->params();
    s.sparsities.clear();
    for (const QString &part : m_sparsity->text().split(',', Qt::SkipEmptyParts)) {
        bool ok = false;
        const double v = part.trimmed().toDouble(&ok);
        if (!ok)
            throw LatheError(QStringLiteral("'%1' is not a number").arg(part.trimmed()).toStdString(),
                             "e.g. 0.5 or 0.1, 0.2, 0.3");
        s.sparsities.push_back(v);
    }
    s.calibrationText = m_calibration->text().toStdString();
    s.calibrationSamples = m_samples->value();
    s.calibrationSeqLen = m_seqLen->value();
    s.calibrationSeed = wholeNumber(m_seed, "calibration seed");
    s.tokenizer = m_tokenizer->text().trimmed().toStdString();
    s.evalText = m_evalText->text().toStdString();
    s.evalSeqLen = m_evalSeqLen->value();
    const uint64_t maxTokens = wholeNumber(m_evalMaxTokens, "evaluation max tokens");
    if (maxTokens > uint64_t(std::numeric_limits<int64_t>::max()))
        throw LatheError("evaluation max tokens: '" + m_evalMaxTokens->text().trimmed().toStdString() + "' is too large");
    s.evalMaxTokens = int64_t(maxTokens);
    s.evalDense = m_evalDense->isChecked();
    s.evalPrecision = m_evalPrecision->currentText().toStdString();
    s.outputDir = m_output->text().toStdString();
    s.overwrite = m_overwrite->isChecked();
    s.dtype = m_dtype->currentText().toStdString();
    s.gguf = m_gguf->currentData().toString().toStdString();
    s.exportModel = m_export->isChecked();
    s.device = m_device->currentData().toString().toStdString();
    return s;
}

void CompressDialog::refresh() {
    if (m_loading)
        return;
    const CompressionMethod &method = *methodsOfKind(MethodKind::PostTraining)[size_t(methodIndex())];
    m_methodPages->setCurrentIndex(methodIndex());
    m_calibrationBox->setEnabled(method.info().needsCalibration);
    m_sparsity->setToolTip(tr("One value, or several separated by commas for a sweep (a PPL-vs-sparsity plot): %1")
                               .arg(QString::fromStdString(method.info().ratioMeaning)));
    m_preview->clear();
    QString problem;
    try {
        const CompressionSpec s = spec();
        if (m_model)
            for (double v : s.sparsities)
                for (const std::string &line : method.preview(*m_model, v, s.params))
                    if (m_preview->findItems(QString::fromStdString(line), Qt::MatchExactly).isEmpty())
                        m_preview->addItem(QString::fromStdString(line)); // pruning: the same linears at every ratio
        validateSpec(s);
        if (m_model)
            checkSpecAgainstModel(s, *m_model); // lengths against the model's positions, widths, ranges
        if (m_model && m_probe) {
            const ComputePrecision precision = parsePrecision(s.evalPrecision);
            const bool stale = m_probe->gpu && !m_probe->device.empty() && m_probe->devicePrecision != precision &&
                               DeviceChoice::parse(s.device).preference != DevicePreference::Cpu;
            if (stale && !m_gpuProbing.isRunning() && !m_gpuFailed.contains(int(precision)))
                retimeGpu(precision);
            const RunEstimate e = estimateCompressionRun(s, *m_model, *m_probe, tokensOf(s.calibrationText),
                                                         tokensOf(s.evalText));
            QStringList phases;
            for (const RunEstimate::Phase &ph : e.phases)
                phases << QStringLiteral("%1: %2").arg(QString::fromStdString(ph.name),
                                                       QString::fromStdString(ph.duration()));
            m_estimate->setText(tr("Estimate: %1").arg(QString::fromStdString(e.summary())));
            QString gpu;
            if (!e.device.empty())
                gpu = tr("; on %1: %2 s, built in %3 s (%4)")
                          .arg(QString::fromStdString(e.device))
                          .arg(m_probe->deviceForwardSeconds, 0, 'f', 3)
                          .arg(m_probe->deviceBuildSeconds, 0, 'f', 2)
                          .arg(QString::fromLatin1(precisionName(m_probe->devicePrecision)));
            else if (!m_probeNote.isEmpty())
                gpu = tr("; the GPU could not be timed: %1").arg(m_probeNote);
            if (stale)
                gpu += m_gpuFailed.contains(int(precision))
                           ? tr("; the GPU could not be timed at %1: %2")
                                 .arg(QString::fromLatin1(precisionName(precision)), m_gpuFailed.value(int(precision)))
                           : tr("; timing the GPU at %1...").arg(QString::fromLatin1(precisionName(precision)));
            m_estimate->setToolTip(tr("From one timed %1-token forward pass on this machine (%2 s; engine built in %3 "
                                      "s%4):\n%5\nExports at an assumed 300 MB/s.")
                                       .arg(m_probe->seqLen)
                                       .arg(m_probe->forwardSeconds, 0, 'f', 3)
                                       .arg(m_probe->buildSeconds, 0, 'f', 2)
                                       .arg(gpu)
                                       .arg(phases.join("\n")));
            if (!e.refusal.empty())
                problem = tr("This run does not fit: %1").arg(QString::fromStdString(e.refusal));
        }
    } catch (const LatheError &e) {
        problem = problemText(e);
    }
    showProblem(m_status, m_run, problem);
}

void CompressDialog::saveSpec() {
    try {
        const QString error = saveJobSpec(this, spec().toJson());
        if (!error.isEmpty())
            m_status->setText(error);
    } catch (const LatheError &e) {
        m_status->setText(QString::fromStdString(e.what()));
    }
}

} // namespace lathe
