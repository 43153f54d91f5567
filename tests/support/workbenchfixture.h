#pragma once

// What the GUI test executables (tst_workbench, tst_workbenchruns) share: the demo model copied into a private
// folder (the analysis archive written beside it stays out of the source tree), settings cleared, and helpers that
// open the model, select matrices, run a small sensitivity sweep and read bar charts.

#include "mainwindow.h"
#include "modeltree.h"
#include "run/trainingrun.h"
#include "analysis/sensitivity.h"
#include "testsupport.h"

#include <qcustomplot.h>

#include <QApplication>
#include <QComboBox>
#include <QSettings>
#include <QSignalSpy>
#include <QTest>
#include <QTreeWidgetItemIterator>

#include <filesystem>
#include <string>

namespace lathe::test {

inline double barsTotal(QCPBars *bars) {
    double t = 0;
    for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it)
        t += it->value;
    return t;
}

// Chooses a registered method by name in a method combo box (panel or dialog), whatever its position.
inline void selectMethod(QComboBox *combo, const char *name) {
    const int i = combo->findData(QString(name));
    QVERIFY2(i >= 0, name);
    combo->setCurrentIndex(i);
}

inline QCPBars *barsIn(QCustomPlot *plot, int rect) {
    for (int i = 0; i < plot->plottableCount(); ++i)
        if (auto *b = qobject_cast<QCPBars *>(plot->plottable(i)); b && b->keyAxis()->axisRect() == plot->axisRect(rect))
            return b;
    return nullptr;
}

// A short training job on the demo model (TinyStories excerpt, 10% held out, 2 x 64 tokens a step), no export.
inline TrainingSpec smallTrainingSpec(const QString &model, int64_t steps, int64_t evalEvery, int64_t checkpointEvery) {
    TrainingSpec spec;
    spec.model = model.toStdString();
    spec.trainText = test::dataDir() + "/text/tinystories-excerpt.txt";
    spec.holdout = 0.1;
    spec.seqLen = 64;
    spec.batch = 2;
    spec.evalWindows = 2;
    spec.steps = steps;
    spec.evalEvery = evalEvery;
    spec.checkpointEvery = checkpointEvery;
    spec.exportModel = false;
    return spec;
}

// The base of the GUI test classes. setUp (from initTestCase) names the application (each executable its own, so
// that their settings never mix when ctest runs them side by side), clears its settings and copies the demo model.
class WorkbenchFixture : public QObject {
protected:
    std::string m_dir;
    QString m_model;

    void setUp(const char *applicationName) {
        QApplication::setOrganizationName("LatheTest");
        QApplication::setApplicationName(applicationName);
        QSettings().clear();
        registerUiMetaTypes();
        m_dir = test::tempDir(applicationName);
        for (const char *f : {"stories260K.bin", "tok512.bin"})
            std::filesystem::copy_file(test::sourceDir() + "/resources/demo/" + f, m_dir + "/" + f);
        m_model = QString::fromStdString(m_dir + "/stories260K.bin");
    }

    void select(MainWindow &w, const QStringList &names) {
        w.tree()->clearSelection();
        for (QTreeWidgetItemIterator it(w.tree()); *it; ++it)
            if (names.contains((*it)->data(ModelTree::NameColumn, Qt::UserRole).toString()))
                (*it)->setSelected(true);
    }

    // A sensitivity sweep of the demo model small enough for a test (2 windows of 128 tokens); false on timeout.
    bool smallSweep(MainWindow &w) {
        SensitivityParams p;
        p.calibrationWindows = 2;
        p.evalWindows = 2;
        p.seqLen = 128;
        QSignalSpy ready(&w, &MainWindow::sensitivityReady);
        w.startSensitivity(QString::fromStdString(test::dataDir() + "/text/tinystories-excerpt.txt"), p);
        return ready.wait(60000);
    }

    // Opens the model and waits for the spectra.
    void openAndAnalyze(MainWindow &w) {
        QSignalSpy analyzed(&w, &MainWindow::analysisReady);
        w.openModelPath(m_model);
        QVERIFY(analyzed.wait(20000));
        QVERIFY(w.model() && w.analysis());
    }
};

} // namespace lathe::test
