#include "formhelpers.h"

#include "base/error.h"
#include "numeric/backend.h"

#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSaveFile>

#include <cmath>

namespace lathe {

QLineEdit *withBrowse(QWidget *parent, QFormLayout *form, const QString &label, bool folder, const QString &name,
                      const QString &what) {
    auto *r = new QWidget(parent);
    auto *h = new QHBoxLayout(r);
    h->setContentsMargins(0, 0, 0, 0);
    auto *edit = new QLineEdit(r);
    edit->setObjectName(name);
    auto *browse = new QPushButton(QObject::tr("Browse..."), r);
    h->addWidget(edit, 1);
    h->addWidget(browse);
    const QString title = what.isEmpty() ? QObject::tr("Text file") : what;
    QObject::connect(browse, &QPushButton::clicked, parent, [parent, edit, folder, title] {
        const QString p = folder ? QFileDialog::getExistingDirectory(parent, QObject::tr("Output folder"), edit->text())
                                 : QFileDialog::getOpenFileName(parent, title, edit->text());
        if (!p.isEmpty())
            edit->setText(p);
    });
    form->addRow(label, r);
    return edit;
}

void allowNarrow(QComboBox *box, int chars) {
    box->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    box->setMinimumContentsLength(chars);
}

QWidget *row(QWidget *parent, std::initializer_list<QWidget *> widgets) {
    auto *r = new QWidget(parent);
    auto *h = new QHBoxLayout(r);
    h->setContentsMargins(0, 0, 0, 0);
    for (QWidget *w : widgets)
        h->addWidget(w);
    return r;
}

uint64_t wholeNumber(const QLineEdit *e, const std::string &what) {
    bool ok = false;
    const qulonglong v = e->text().trimmed().toULongLong(&ok);
    if (!ok)
        throw LatheError(what + ": '" + e->text().trimmed().toStdString() + "' is not a whole number >= 0");
    return uint64_t(v);
}

double realNumber(const QLineEdit *e, const std::string &what) {
    bool ok = false;
    const double v = e->text().trimmed().toDouble(&ok);
    if (!ok || !std::isfinite(v))
        throw LatheError(what + ": '" + e->text().trimmed().toStdString() + "' is not a number");
    return v;
}

QComboBox *ggufChoice(QWidget *parent) {
    auto *box = new QComboBox(parent);
    box->setObjectName("gguf");
    box->addItem(QObject::tr("no GGUF"), QString());
    box->addItem(QObject::tr("GGUF f32"), "f32");
    box->addItem(QObject::tr("GGUF f16"), "f16");
    box->addItem(QObject::tr("GGUF q8_0"), "q8_0");
    box->setToolTip(QObject::tr("Also write model.gguf, which llama.cpp runs (weights at this type; norms and biases "
                                "f32). Sliced models have no GGUF form."));
    return box;
}

QComboBox *deviceChoice(QWidget *parent, const QString &toolTip) {
    auto *box = new QComboBox(parent);
    box->setObjectName("device");
    std::string whyNoGpu;
    const std::vector<DeviceInfo> &gpus = gpuDevices(&whyNoGpu);
    box->addItem(gpus.empty() ? QObject::tr("Automatic (the CPU: no usable GPU)")
                              : QObject::tr("Automatic (%1)").arg(QString::fromStdString(gpus.front().label())),
                 "auto");
    box->addItem(QObject::tr("CPU"), "cpu");
    for (const DeviceInfo &g : gpus)
        box->addItem(QString::fromStdString(g.label()), QString::fromStdString("cuda:" + std::to_string(g.index)));
    if (gpus.empty())
        box->addItem(QObject::tr("GPU (CUDA): %1").arg(QString::fromStdString(whyNoGpu)), "cuda");
    box->setToolTip(toolTip);
    return box;
}

void setDeviceChoice(QComboBox *box, const std::string &device) {
    const QString d = QString::fromStdString(device);
    if (box->findData(d) < 0)
        box->addItem(d, d);
    box->setCurrentIndex(box->findData(d));
}

void setGgufChoice(QComboBox *box, const std::string &value) {
    const int i = box->findData(QString::fromStdString(value));
    if (i >= 0)
        box->setCurrentIndex(i);
    else { // a value from a spec file that is not a choice: kept, and refused with the reason by the spec check
        box->addItem(QString::fromStdString(value), QString::fromStdString(value));
        box->setCurrentIndex(box->count() - 1);
    }
}

QString saveJobSpec(QWidget *parent, const nlohmann::json &spec) {
    const QString path = QFileDialog::getSaveFileName(parent, QObject::tr("Save job spec"), "job.json",
                                                      QObject::tr("JSON (*.json)"));
    if (path.isEmpty())
        return {};
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(QByteArray::fromStdString(spec.dump(2) + "\n")) < 0 || !f.commit())
        return QObject::tr("%1: could not be written (%2)").arg(path, f.errorString());
    return {};
}

void showProblem(QLabel *status, QPushButton *run, const QString &problem) {
    status->setText(problem.isEmpty() ? QObject::tr("Ready.") : problem);
    run->setEnabled(problem.isEmpty());
}

QString problemText(const LatheError &e) {
    QString text = QString::fromStdString(e.what());
    if (!e.hint().empty())
        text += " — " + QString::fromStdString(e.hint());
    return text;
}

JobDialogFooter addJobDialogFooter(QDialog *dialog, QBoxLayout *layout) {
    JobDialogFooter f;
    f.status = new QLabel(dialog);
    f.status->setObjectName("status");
    f.status->setWordWrap(true);
    layout->addWidget(f.status);
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, dialog);
    f.run = buttons->addButton(QObject::tr("Run"), QDialogButtonBox::AcceptRole);
    f.run->setObjectName("run");
    f.save = buttons->addButton(QObject::tr("Save Job Spec..."), QDialogButtonBox::ActionRole);
    QObject::connect(buttons, &QDialogButtonBox::accepted, dialog, &QDialog::accept);
    QObject::connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::reject);
    layout->addWidget(buttons);
    return f;
}

} // namespace lathe
