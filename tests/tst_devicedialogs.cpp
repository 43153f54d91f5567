// The workbench's dialogs on a GPU, without one: the stand-in GPU (referencegpu.h: the CPU engine behind the GPU
// services) is registered before anything asks for the GPUs, so the compress dialog's preflight probes "the GPU"
// when it opens (issue 19 item 3) and times it again when the evaluation precision changes, its pass in bf16 not
// being its fp32 one. A binary of its own: the GPU list is found once per process.

#include "compressdialog.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "referencegpu.h"
#include "testsupport.h"
#include "workbenchfixture.h"

#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QtTest/QtTest>

using namespace lathe;

namespace {
const test::ReferencePlatform kPlatform;
}

class TestDeviceDialogs : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        registerGpuPlatform(&kPlatform);
        QCOMPARE(int(gpuDevices().size()), 1);
    }

    // The estimate's tooltip names the GPU and the precision it was timed at: fp32 when the dialog opens, bf16 once
    // the evaluation precision is bf16 (after "timing the GPU at bf16..." meanwhile), and none on device cpu.
    void compressEstimateFollowsThePrecision() {
        const QString path = QString::fromStdString(test::sourceDir() + "/resources/demo/stories260K.bin");
        const std::unique_ptr<Model> model = openModel(path.toStdString());
        CompressDialog dialog(model.get(), path);
        dialog.findChild<QLineEdit *>("output")->setText(QString::fromStdString(test::tempDir("device-dialog") + "/out"));
        test::selectMethod(dialog.findChild<QComboBox *>("method"), "magnitude"); // no calibration needed
        auto *estimate = dialog.findChild<QLabel *>("estimate");
        auto *precision = dialog.findChild<QComboBox *>("evalPrecision");
        QCOMPARE(precision->currentText(), QString("fp32"));
        QTRY_VERIFY_WITH_TIMEOUT(dialog.probeDone(), 20000);
        QTRY_VERIFY2(estimate->toolTip().contains("on reference GPU (CPU engine), fp32") &&
                         estimate->toolTip().contains("(fp32)"),
                     qPrintable(dialog.findChild<QLabel *>("status")->text() + " | " + dialog.estimateText() + " | " +
                                estimate->toolTip()));
        precision->setCurrentText("bf16");
        QVERIFY2(estimate->toolTip().contains("timing the GPU at bf16...") ||
                     estimate->toolTip().contains("(bf16)"),
                 qPrintable(estimate->toolTip()));
        QTRY_VERIFY_WITH_TIMEOUT(estimate->toolTip().contains("(bf16)"), 20000);
        QVERIFY2(!estimate->toolTip().contains("timing the GPU"), qPrintable(estimate->toolTip()));
        precision->setCurrentText("fp32"); // timed again: the probe holds one precision
        QTRY_VERIFY_WITH_TIMEOUT(estimate->toolTip().contains("(fp32)"), 20000);
        auto *device = dialog.findChild<QComboBox *>("device");
        QVERIFY(device);
        device->setCurrentIndex(device->findData("cpu"));
        precision->setCurrentText("bf16"); // the CPU computes in fp32: nothing to time
        QVERIFY2(!estimate->toolTip().contains("timing the GPU"), qPrintable(estimate->toolTip()));
    }
};

QTEST_MAIN(TestDeviceDialogs)
#include "tst_devicedialogs.moc"
