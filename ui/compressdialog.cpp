#include "compressdialog.h"

#include "numeric/backend.h"

#include "base/error.h"
#include "methods/pruningtargets.h"
#include "methods/slicegpt.h"
#include "model/model.h"

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
#include <QSpinBox>
#include <QVBoxLayout>

namespace lathe {

namespace {

QLineEdit *withBrowse(QWidget *parent, QFormLayout *form, const QString &label, bool folder, const QString &name) {
    auto *row = new QWidget(parent);
    auto *h = new QHBoxLayout(row);
    h->setContentsMargins(0, 0, 0, 0);
    auto *edit = new QLineEdit(row);
    edit->setObjectName(name);
    auto *browse = new QPushButton(QObject::tr("Browse..."), row);
    h->addWidget(edit, 1);
    h->addWidget(browse);
    QObject::connect(browse, &QPushButton::clicked, parent, [parent, edit, folder] {
        const QString p = folder ? QFileDialog::getExistingDirectory(parent, QObject::tr("Output folder"), edit->text())
                                 : QFileDialog::getOpenFileName(parent, QObject::tr("Text file"), edit->text());
        if (!p.isEmpty())
            edit->setText(p);
    });
    form->addRow(label, row);
    return edit;
}

} // namespace

CompressDialog::CompressDialog(const Model *model, const QString &modelPath, QWidget *parent)
    : QDialog(parent), m_model(model), m_modelPath(modelPath) {
    setWindowTitle(tr("Compress %1").arg(modelPath));
    auto *layout = new QVBoxLayout(this);
    auto *form = new QFormLayout;
    m_method = new QComboBox(this);
    m_method->setObjectName("method");
    m_method->addItem(tr("Wanda (calibrated pruning)"), "wanda");
    m_method->addItem(tr("Magnitude (data-free pruning)"), "magnitude");
    m_method->addItem(tr("SliceGPT (PCA rotation + slicing)"), "slicegpt");
    form->addRow(tr("Method"), m_method);
    m_sparsity = new QLineEdit("0.5", this);
    m_sparsity->setObjectName("sparsity");
    m_sparsity->setToolTip(tr("One value, or several separated by commas for a sweep (a PPL-vs-sparsity plot)"));
    form->addRow(tr("Sparsity / sweep"), m_sparsity);
    m_pattern = new QComboBox(this);
    m_pattern->setObjectName("pattern");
    m_pattern->addItems({"unstructured", "2:4", "4:8"});
    form->addRow(tr("Pattern"), m_pattern);
    m_targets = new QLineEdit(".*", this);
    m_targets->setObjectName("targets");
    m_targets->setToolTip(tr("Regular expression over tensor names; the list below shows what it selects"));
    form->addRow(tr("Targets"), m_targets);
    m_preview = new QListWidget(this);
    m_preview->setObjectName("preview");
    m_preview->setMaximumHeight(110);
    form->addRow(QString(), m_preview);
    m_calibration = withBrowse(this, form, tr("Calibration text"), false, "calibration");
    m_samples = new QSpinBox(this);
    m_samples->setRange(1, 4096);
    m_samples->setValue(128);
    m_seqLen = new QSpinBox(this);
    m_seqLen->setRange(2, 32768);
    m_seqLen->setValue(2048);
    auto *calRow = new QWidget(this);
    auto *calH = new QHBoxLayout(calRow);
    calH->setContentsMargins(0, 0, 0, 0);
    calH->addWidget(new QLabel(tr("samples"), calRow));
    calH->addWidget(m_samples);
    calH->addWidget(new QLabel(tr("x tokens"), calRow));
    calH->addWidget(m_seqLen);
    form->addRow(QString(), calRow);
    m_evalText = withBrowse(this, form, tr("Evaluation text"), false, "evalText");
    m_evalSeqLen = new QSpinBox(this);
    m_evalSeqLen->setRange(2, 32768);
    m_evalSeqLen->setValue(2048);
    m_evalSeqLen->setObjectName("evalSeqLen");
    form->addRow(tr("Evaluation window"), m_evalSeqLen);
    m_output = withBrowse(this, form, tr("Run folder"), true, "output");
    m_dtype = new QComboBox(this);
    m_dtype->addItems({"f32", "bf16", "f16"});
    m_export = new QCheckBox(tr("Export the compressed model (Hugging Face folder)"), this);
    m_export->setChecked(true);
    form->addRow(tr("Export type"), m_dtype);
    form->addRow(QString(), m_export);
    m_device = new QComboBox(this);
    m_device->setObjectName("device");
    m_device->addItem(gpuUsable() ? tr("Automatic (the GPU)") : tr("Automatic (the CPU: no usable GPU)"), "auto");
    m_device->addItem(tr("CPU"), "cpu");
    m_device->addItem(tr("GPU (CUDA)"), "cuda");
    m_device->setToolTip(tr("Where evaluation and SliceGPT run; a GPU that is not usable here is refused with the reason"));
    form->addRow(tr("Device"), m_device);
    layout->addLayout(form);
    m_status = new QLabel(this);
    m_status->setObjectName("status");
    m_status->setWordWrap(true);
    layout->addWidget(m_status);
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
    m_run = buttons->addButton(tr("Run"), QDialogButtonBox::AcceptRole);
    m_run->setObjectName("run");
    QPushButton *save = buttons->addButton(tr("Save Job Spec..."), QDialogButtonBox::ActionRole);
    connect(save, &QPushButton::clicked, this, &CompressDialog::saveSpec);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    layout->addWidget(buttons);
    for (QLineEdit *e : {m_sparsity, m_targets, m_calibration, m_evalText, m_output})
        connect(e, &QLineEdit::textChanged, this, &CompressDialog::refresh);
    connect(m_method, &QComboBox::currentIndexChanged, this, &CompressDialog::refresh);
    connect(m_pattern, &QComboBox::currentIndexChanged, this, &CompressDialog::refresh);
    connect(m_device, &QComboBox::currentIndexChanged, this, &CompressDialog::refresh);
    for (QSpinBox *spin : {m_samples, m_seqLen, m_evalSeqLen}) // lengths are checked against the model's positions
        connect(spin, &QSpinBox::valueChanged, this, &CompressDialog::refresh);
    refresh();
}

void CompressDialog::setSpec(const CompressionSpec &s) {
    m_method->setCurrentIndex(std::max(0, m_method->findData(QString::fromStdString(s.method))));
    QStringList values;
    for (double v : s.sparsities)
        values << QString::number(v);
    m_sparsity->setText(values.join(", "));
    m_pattern->setCurrentText(QString::fromStdString(s.pattern));
    m_targets->setText(QString::fromStdString(s.targets));
    m_calibration->setText(QString::fromStdString(s.calibrationText));
    m_samples->setValue(int(s.calibrationSamples));
    m_seqLen->setValue(int(s.calibrationSeqLen));
    m_evalText->setText(QString::fromStdString(s.evalText));
    m_evalSeqLen->setValue(int(s.evalSeqLen));
    m_output->setText(QString::fromStdString(s.outputDir));
    m_dtype->setCurrentText(QString::fromStdString(s.dtype));
    m_export->setChecked(s.exportModel);
    m_device->setCurrentIndex(std::max(0, m_device->findData(QString::fromStdString(s.device))));
    refresh();
}

CompressionSpec CompressDialog::spec() const {
    CompressionSpec s;
    s.model = m_modelPath.toStdString();
    s.method = m_method->currentData().toString().toStdString();
    s.sparsities.clear();
    for (const QString &part : m_sparsity->text().split(',', Qt::SkipEmptyParts)) {
        bool ok = false;
        const double v = part.trimmed().toDouble(&ok);
        if (!ok)
            throw LatheError("'" + part.trimmed().toStdString() + "' is not a number", "e.g. 0.5 or 0.1, 0.2, 0.3");
        s.sparsities.push_back(v);
    }
    s.pattern = s.method == "slicegpt" ? "unstructured" : m_pattern->currentText().toStdString();
    s.targets = m_targets->text().toStdString();
    s.calibrationText = m_calibration->text().toStdString();
    s.calibrationSamples = m_samples->value();
    s.calibrationSeqLen = m_seqLen->value();
    s.evalText = m_evalText->text().toStdString();
    s.evalSeqLen = m_evalSeqLen->value();
    s.outputDir = m_output->text().toStdString();
    s.dtype = m_dtype->currentText().toStdString();
    s.exportModel = m_export->isChecked();
    s.device = m_device->currentData().toString().toStdString();
    return s;
}

void CompressDialog::refresh() {
    const bool slicing = m_method->currentData().toString() == "slicegpt";
    m_pattern->setEnabled(!slicing);
    m_targets->setEnabled(!slicing);
    m_preview->clear();
    QString problem;
    try {
        const CompressionSpec s = spec();
        if (m_model && !slicing && !s.sparsities.empty()) {
            PruningSelection sel;
            sel.pattern = parsePattern(s.pattern, s.sparsities[0]);
            sel.targets = s.targets;
            const std::vector<PruningTarget> picked = selectTargets(*m_model, sel);
            for (size_t i = 0; i < picked.size() && i < 200; ++i)
                m_preview->addItem(QString::fromStdString(picked[i].label()));
            if (picked.size() > 200)
                m_preview->addItem(tr("... %1 more").arg(picked.size() - 200));
        }
        if (m_model && slicing)
            for (double v : s.sparsities) {
                SliceGptParams p;
                p.sparsity = v;
                const SliceGptWidths w = sliceGptWidths(m_model->config.hiddenSize, m_model->config.numLayers, p);
                m_preview->addItem(tr("%1: hidden width %2 -> %3").arg(v).arg(m_model->config.hiddenSize).arg(w.embedding));
            }
        validateSpec(s);
        if (m_model)
            checkSpecAgainstModel(s, *m_model); // lengths against the model's positions, widths, ranges
    } catch (const LatheError &e) {
        problem = QString::fromStdString(e.what());
        if (!e.hint().empty())
            problem += " — " + QString::fromStdString(e.hint());
    }
    m_status->setText(problem.isEmpty() ? tr("Ready.") : problem);
    m_run->setEnabled(problem.isEmpty());
}

void CompressDialog::saveSpec() {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save job spec"), "job.json", tr("JSON (*.json)"));
    if (path.isEmpty())
        return;
    try {
        QSaveFile f(path);
        if (f.open(QIODevice::WriteOnly)) {
            f.write(QByteArray::fromStdString(spec().toJson().dump(2) + "\n"));
            f.commit();
        }
    } catch (const LatheError &e) {
        m_status->setText(QString::fromStdString(e.what()));
    }
}

} // namespace lathe
