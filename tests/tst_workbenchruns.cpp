// The workbench's runs (offscreen): the compress and training dialogs (every spec field round-trips, previews,
// estimates, refusals), jobs started from the window landing in the Results and Training tabs, resuming an
// interrupted run, calibration for Wanda and Taylor scores, sensitivity sweeps and budgets, sessions, comparisons
// and reports, and what a model switch must leave behind.

#include "compareview.h"
#include "compressdialog.h"
#include "importanceview.h"
#include "jobmanager.h"
#include "mainwindow.h"
#include "modeltree.h"
#include "parameterpanel.h"
#include "resultsview.h"
#include "runhistory.h"
#include "sensitivityview.h"
#include "testsupport.h"
#include "traindialog.h"
#include "trainingview.h"
#include "workbenchdocument.h"
#include "workbenchfixture.h"
#include "engine/evaluation.h"
#include "io/modelloader.h"
#include "methods/methodparams.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "run/trainingrun.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTest>

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace lathe;
using namespace lathe::test;

class TestWorkbenchRuns : public WorkbenchFixture {
    Q_OBJECT

private slots:
    void initTestCase() { setUp("LatheWorkbenchRunsTest"); }

    // The parameter panel's pattern reaches the job spec as chosen: "unstructured, per row" ran per matrix before.
    // Analysis > Sensitivity Sweep: the tab shows the sweep, proposes budgets with the chosen mean from either
    // source, takes edits, refuses a cell that is not a sparsity, and hands a spec with layer_sparsity on.
    void sensitivityAndBudgets() {
        MainWindow w;
        openAndAnalyze(w);
        QVERIFY(smallSweep(w));
        SensitivityView *v = w.sensitivityView();
        QCOMPARE(w.views()->currentWidget(), v);
        QVERIFY(v->hasData());
        QCOMPARE(v->table()->rowCount(), 5);
        QVERIFY(w.findChild<QLabel *>("kindRanking")->text().contains("mlp_down"));
        const auto mean = [](const std::vector<double> &b) {
            double m = 0;
            for (double x : b)
                m += x / double(b.size());
            return m;
        };
        v->setTarget(0.6);
        const std::vector<double> bySensitivity = v->budgets();
        QCOMPARE(int(bySensitivity.size()), 5);
        QVERIFY(std::abs(mean(bySensitivity) - 0.6) < 1e-3);
        v->setBudgetSource(true);
        const std::vector<double> byOutliers = v->budgets();
        QVERIFY(std::abs(mean(byOutliers) - 0.6) < 1e-3);
        QVERIFY(byOutliers != bySensitivity);
        v->setCellSparsity(0, 0.3);
        QCOMPARE(v->budgets()[0], 0.3);
        auto *button = v->findChild<QPushButton *>("compressWithBudgets");
        QVERIFY(button->isEnabled());
        v->table()->item(1, 3)->setText("lots");
        QVERIFY(v->budgets().empty());
        QVERIFY(!button->isEnabled());
        v->setCellSparsity(1, 0.7);
        QVERIFY(button->isEnabled());
        const CompressionSpec spec = w.specWithBudgets(v->budgets(), v->target());
        const std::map<int, double> ratios = spec.params.get<LayerRatios>("layer_sparsity").resolve(5);
        QCOMPARE(ratios.at(0), 0.3);
        QCOMPARE(ratios.at(1), 0.7);
        QCOMPARE(spec.sparsities, std::vector<double>{0.6});
        const QString png = QString::fromStdString(test::tempDir("sens-fig") + "/sensitivity.png");
        QVERIFY(v->exportFigure(png));
    }

    // File > Save Session / Open Session: the model, selection, tab, panel, runs (read back from their folders) and
    // the sensitivity budget come back in a new window; a run folder that is gone is reported, not fatal.
    void sessionRoundTrip() {
        MainWindow w;
        openAndAnalyze(w);
        const QString tensor = "model.layers.1.mlp.up_proj.weight";
        w.tree()->selectTensors({tensor});
        w.parameterPanel()->setSparsity(0.7);
        QVERIFY(smallSweep(w));
        w.sensitivityView()->setCellSparsity(2, 0.25);
        CompressionSpec spec = w.specFromPanel();
        spec.setMethod("magnitude");
        spec.outputDir = test::tempDir("session-run") + "/run";
        QSignalSpy done(&w, &MainWindow::compressionFinished);
        w.startCompression(spec);
        QVERIFY(done.wait(60000));
        CompressionSpec gone = spec;
        gone.outputDir = test::tempDir("session-gone") + "/run";
        w.startCompression(gone);
        QVERIFY(done.wait(60000));
        std::filesystem::remove_all(gone.outputDir);
        // Before/after sample generation in the Results tab: the dense model and each run's export, greedy; a run
        // whose folder is gone says why instead.
        QSignalSpy generated(&w, &MainWindow::generationsReady);
        w.resultsView()->prompt()->setText("Once upon a time");
        w.resultsView()->requestGeneration();
        QVERIFY(generated.wait(60000));
        QTableWidget *g = w.resultsView()->generations();
        QCOMPARE(g->rowCount(), 3);
        QVERIFY(g->item(0, 0)->text().contains("dense"));
        QVERIFY(g->item(0, 1)->text().size() > 20 && !g->item(0, 1)->text().contains("not generated"));
        QVERIFY(g->item(1, 1)->text().size() > 20 && !g->item(1, 1)->text().contains("not generated"));
        QVERIFY(g->item(2, 1)->text().contains("not generated"));
        QVERIFY(g->item(0, 1)->text() != g->item(1, 1)->text()); // 70% magnitude changes the story
        QSignalSpy written(&w, &MainWindow::reportWritten); // and the report carries them
        const QString reportDir = QString::fromStdString(test::tempDir("session-report")) + "/r";
        w.writeReport(reportDir);
        QVERIFY(written.wait(60000));
        QFile report(reportDir + "/report.html");
        QVERIFY(report.open(QIODevice::ReadOnly));
        const QString reportText = QString::fromUtf8(report.readAll());
        QVERIFY(reportText.contains("Sample generations") && reportText.contains(g->item(1, 0)->text().toHtmlEscaped()));
        QVERIFY(reportText.contains("<h2>Sensitivity</h2>"));
        // Compare: the open model against the run's export, per block and for the selected matrix.
        QSignalSpy compared(&w, &MainWindow::compareReady);
        w.startCompare(QString::fromStdString(spec.outputDir + "/model"));
        QVERIFY(compared.wait(60000));
        const ModelComparison *c = w.compareView()->comparison();
        QCOMPARE(int(c->blocks.size()), 5);
        for (const BlockComparison &b : c->blocks) {
            QCOMPARE(b.parameters[0], b.parameters[1]);
            QCOMPARE(b.nonZero[0], b.parameters[0]); // the dense demo model has no zeros
            QVERIFY(std::abs(double(b.nonZero[1]) / double(b.parameters[1]) - 0.3) < 0.01); // magnitude 70%
            QVERIFY(b.effectiveRank[0] > 1 && b.effectiveRank[1] > 1 && b.effectiveRank[1] != b.effectiveRank[0]);
        }
        QVERIFY(w.compareView()->hasData());
        QVERIFY(w.compareView()->title().contains(tensor)); // the selected matrix's spectra overlaid
        for (CompareView::Mode m :
             {CompareView::EffectiveRank, CompareView::Alpha, CompareView::Sparsity, CompareView::Parameters}) {
            w.compareView()->setMode(m);
            QVERIFY(w.compareView()->title().startsWith("Per block"));
        }
        // Its legend (the two models' names) takes the rows the view's width needs instead of setting the view's
        // minimum width, which would squeeze the docks beside it: side by side when they fit, else one per row.
        w.compareView()->setMode(CompareView::Spectrum);
        w.show(); // resize events reach shown widgets only
        w.views()->setCurrentWidget(w.compareView());
        QCPLegend *legend = w.compareView()->plot()->legend;
        QCOMPARE(legend->itemCount(), 2);
        w.compareView()->resize(1400, 500);
        QCOMPARE(legend->columnCount(), 2);
        QCOMPARE(legend->rowCount(), 1);
        w.compareView()->plot()->updateGeometry(); // the view's layout asks for the plot's minimum again
        QVERIFY2(w.compareView()->minimumSizeHint().width() < 300, // not the two entries' width
                 qPrintable(QString::number(w.compareView()->minimumSizeHint().width())));
        w.compareView()->resize(280, 500);
        QCOMPARE(legend->columnCount(), 1);
        QCOMPARE(legend->rowCount(), 2);
        // Run history: both folders remembered, newest first; the one that is gone says so.
        const QStringList remembered = rememberedRunFolders();
        QVERIFY(remembered.size() >= 2);
        QCOMPARE(remembered[0], QString::fromStdString(gone.outputDir));
        QCOMPARE(remembered[1], QString::fromStdString(spec.outputDir));
        const std::vector<RunHistoryEntry> history = readRunHistory(remembered.mid(0, 2));
        QCOMPARE(history[0].status, QString("gone"));
        QCOMPARE(history[1].kind, QString("compression"));
        QCOMPARE(history[1].status, QString("done"));
        QCOMPARE(history[1].method, QString("magnitude"));
        QVERIFY2(history[1].result.contains("at 0.7"), qPrintable(history[1].result));
        {
            const QVector<WorkbenchDocument::Run> before = w.document()->runs();
            RunHistoryDialog dialog(&w);
            QVERIFY(dialog.table()->rowCount() >= 2);
            dialog.table()->setCurrentCell(1, 0);
            dialog.findChild<QPushButton *>("addToResults")->click();
            QCOMPARE(w.document()->runs().size(), before.size() + 1);
            QCOMPARE(w.document()->runs().back().folder, QString::fromStdString(spec.outputDir));
            w.document()->clearRuns(); // the session below holds the runs as they were
            for (const WorkbenchDocument::Run &r : before)
                w.document()->addRun(r);
        }
        w.views()->setCurrentWidget(w.sensitivityView());
        const QString file = QString::fromStdString(test::tempDir("session") + "/s.lathe-session.json");
        w.saveSession(file);

        MainWindow v;
        QSignalSpy restored(&v, &MainWindow::sessionRestored);
        v.openSession(file);
        QVERIFY(restored.wait(30000));
        QCOMPARE(v.document()->modelPath(), w.document()->modelPath());
        QCOMPARE(v.parameterPanel()->state(), w.parameterPanel()->state());
        QCOMPARE(v.document()->runs().size(), 1); // the other folder is gone
        QCOMPARE(v.document()->runs()[0].folder, QString::fromStdString(spec.outputDir));
        QCOMPARE(v.document()->runs()[0].result.runs.size(), size_t(1));
        QCOMPARE(restored.at(0).at(0).toStringList(), QStringList{QString::fromStdString(gone.outputDir)});
        QCOMPARE(v.views()->currentWidget(), v.sensitivityView());
        QCOMPARE(v.sensitivityView()->budgets(), w.sensitivityView()->budgets());
        QCOMPARE(v.sensitivityView()->budgets()[2], 0.25);
        QList<QTreeWidgetItem *> selected = v.tree()->selectedItems();
        QCOMPARE(selected.size(), 1);
        QCOMPARE(selected[0]->data(ModelTree::NameColumn, Qt::UserRole).toString(), tensor);
        // Not a session: refused with the reason.
        const QString bad = QString::fromStdString(test::tempDir("session-bad") + "/x.json");
        test::writeText(bad.toStdString(), "{\"model\": \"x\"}");
        bool refused = false;
        try {
            v.openSession(bad);
        } catch (const LatheError &e) {
            refused = QString::fromStdString(e.what()).contains("not a Lathe session");
        }
        QVERIFY(refused);
        w.parameterPanel()->setSparsity(0.5); // the panel keeps its values in the settings the next tests start with
        v.parameterPanel()->setSparsity(0.5);
    }

    void panelPatternReachesTheSpec() {
        MainWindow w;
        openAndAnalyze(w);
        auto *pattern = w.parameterPanel()->findChild<QComboBox *>("pattern");
        const std::pair<int, const char *> expected[] = {{0, "unstructured"}, {1, "per-row"}, {2, "2:4"}, {3, "4:8"}};
        for (const auto &[index, text] : expected) {
            pattern->setCurrentIndex(index);
            QCOMPARE(QString::fromStdString(w.specFromPanel().params.get<std::string>("pattern")), QString(text));
        }
        pattern->setCurrentIndex(0);
    }

    // The compress dialog previews its targets and refuses bad values before Run; a job started from the window
    // lands in the Results tab (table row + plotted point).
    void compressDialogAndResults() {
        MainWindow w;
        openAndAnalyze(w);
        CompressDialog dialog(w.model(), m_model);
        auto *sparsity = dialog.findChild<QLineEdit *>("sparsity");
        auto *targets = dialog.findChild<QLineEdit *>("targets");
        auto *preview = dialog.findChild<QListWidget *>("preview");
        auto *run = dialog.findChild<QPushButton *>("run");
        dialog.findChild<QLineEdit *>("output")->setText(QString::fromStdString(test::tempDir("gui-run") + "/out"));
        selectMethod(dialog.findChild<QComboBox *>("method"), "magnitude"); // no calibration needed
        QTRY_VERIFY_WITH_TIMEOUT(dialog.probeDone(), 20000); // the preflight probe, on a worker thread
        QVERIFY2(dialog.estimateText().startsWith("Estimate: about"), qPrintable(dialog.estimateText()));
        targets->setText("mlp.down");
        QCOMPARE(preview->count(), 5); // one down_proj per block
        QVERIFY(run->isEnabled());
        sparsity->setText("1.5");
        QVERIFY(!run->isEnabled());
        QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("outside [0, 1)"));
        sparsity->setText("0.3, 0.6");
        QVERIFY(run->isEnabled());
        // The output folder guard (issue 20): the folder holding the model is refused before Run, and so is a
        // hostile targets pattern, which the live preview compiles (no stack overflow).
        auto *output = dialog.findChild<QLineEdit *>("output");
        const QString chosen = output->text();
        output->setText(QFileInfo(m_model).absolutePath());
        QVERIFY(!run->isEnabled());
        QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("contains the input"));
        output->setText(chosen);
        targets->setText(QString(20000, '(') + "mlp" + QString(20000, ')'));
        QVERIFY(!run->isEnabled());
        QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("above the limit"));
        targets->setText("mlp.down");
        QVERIFY(run->isEnabled());
        // An evaluation window above the model's 512 positions is refused before Run, not after the dialog closes.
        auto *evalText = dialog.findChild<QLineEdit *>("evalText");
        auto *evalSeqLen = dialog.findChild<QSpinBox *>("evalSeqLen");
        QVERIFY(evalText && evalSeqLen);
        evalText->setText(QString::fromStdString(test::dataDir() + "/text/tinystories-excerpt.txt"));
        evalSeqLen->setValue(2048);
        QVERIFY(!run->isEnabled());
        QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("above the model's 512 positions"));
        evalSeqLen->setValue(128);
        QVERIFY(run->isEnabled());
        evalText->clear();
        auto *device = dialog.findChild<QComboBox *>("device");
        if (!gpuUsable()) { // asking for the GPU where there is none: Run off, and the reason shown
            device->setCurrentIndex(device->findData("cuda"));
            QVERIFY(!run->isEnabled());
            QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("CUDA"));
        }
        device->setCurrentIndex(device->findData("cpu"));
        QVERIFY(run->isEnabled());
        CompressionSpec spec = dialog.spec();
        QCOMPARE(QString::fromStdString(spec.device), QString("cpu"));
        spec.evalText = test::sourceDir() + "/README.md"; // any text: perplexity only has to be finite here
        spec.evalSeqLen = 64;
        spec.evalMaxTokens = 256;
        QSignalSpy done(&w, &MainWindow::compressionFinished);
        w.startCompression(spec);
        QVERIFY(done.wait(60000));
        QCOMPARE(w.resultsView()->table()->rowCount(), 3); // dense + two runs
        QVERIFY(w.resultsView()->hasData());

        // The session report: HTML and PDF with the figures of every view that shows something, the runs and the
        // job spec that reproduces them; never into a folder that holds something.
        const QString folder = QString::fromStdString(test::tempDir("report")) + "/report";
        QSignalSpy written(&w, &MainWindow::reportWritten);
        w.writeReport(folder);
        QVERIFY(written.wait(60000));
        QVERIFY2(written.at(0).at(2).toString().isEmpty(), qPrintable(written.at(0).at(2).toString()));
        QFile html(folder + "/report.html");
        QVERIFY(html.open(QIODevice::ReadOnly));
        const QString text = QString::fromUtf8(html.readAll());
        for (const char *part : {"<h2>Model</h2>", "<h2>Plan</h2>", "Per block", "<h2>Figures</h2>", "magnitude",
                                 "lathe-cli compress SPEC.json", "&quot;method&quot;: &quot;magnitude&quot;"})
            QVERIFY2(text.contains(part), part);
        const QStringList pngs = QDir(folder).entryList({"*.png"});
        QVERIFY2(pngs.join(",").contains("layers") && pngs.join(",").contains("results"), qPrintable(pngs.join(", ")));
        QCOMPARE(QDir(folder).entryList({"*.svg"}).size(), pngs.size());
        QFile pdf(folder + "/report.pdf");
        QVERIFY(pdf.open(QIODevice::ReadOnly));
        const QByteArray pdfBytes = pdf.readAll();
        QVERIFY(pdfBytes.startsWith("%PDF") && pdf.size() > 20000);
        QCOMPARE(int(pdfBytes.count("/Subtype /Image")), int(pngs.size())); // every figure is in the PDF too
        written.clear();
        w.writeReport(folder);
        QVERIFY(written.count() == 1 || written.wait(10000));
        QVERIFY(written.at(0).at(2).toString().contains("not empty"));
    }

    // The dialog gives back every field of a spec it is given (issue 16 item 3), for every method: the method's
    // parameters (layer ratios, slice_head, damping, precisions), tokenizer, seed, evaluation settings, overwrite,
    // resume, export type and device.
    void dialogRoundTripsEverySpecField() {
        MainWindow w;
        openAndAnalyze(w);
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        for (const char *method : {"wanda", "magnitude", "slicegpt"}) {
            CompressionSpec s;
            s.model = m_model.toStdString();
            s.setMethod(method);
            if (std::string(method) == "slicegpt") {
                s.params.set("slicegpt.slice_head", true);
                s.params.set("slicegpt.random_orientation", true);
                s.params.set("slicegpt.round_to", int64_t(4));
                s.params.set("slicegpt.damping", 0.0123456789012345);
                s.params.set("slicegpt.precision", std::string("fp16"));
                s.params.set("layer_sparsity", LayerRatios::fromJson(nlohmann::json{{"1-2", 0.125}}));
                s.sparsities = {0.1, 0.2};
            } else {
                s.params.set("pattern", std::string("per-row"));
                s.params.set("targets", std::string("mlp"));
                s.params.set("layer_sparsity", LayerRatios::fromJson(nlohmann::json::array({0.1, 0.2, 0.3, 0.4, 0.5})));
                s.sparsities = {0.35};
            }
            s.tokenizer = m_dir + "/tok512.bin";
            s.calibrationText = text;
            s.calibrationSamples = 7;
            s.calibrationSeqLen = 96;
            s.calibrationSeed = 4000000000ull;
            s.evalText = text;
            s.evalSeqLen = 64;
            s.evalMaxTokens = 640;
            s.evalDense = false;
            s.evalPrecision = "bf16";
            s.device = "cpu";
            s.outputDir = test::tempDir("roundtrip") + "/run";
            s.exportModel = false;
            s.dtype = "bf16";
            s.overwrite = true;
            CompressDialog dialog(w.model(), m_model);
            dialog.setSpec(s);
            QCOMPARE(QString::fromStdString(dialog.spec().toJson().dump()), QString::fromStdString(s.toJson().dump()));
            QVERIFY2(dialog.findChild<QPushButton *>("run")->isEnabled(),
                     qPrintable(dialog.findChild<QLabel *>("status")->text()));
            s.overwrite = false;
            s.resume = true; // not shown: carried
            dialog.setSpec(s);
            QCOMPARE(QString::fromStdString(dialog.spec().toJson().dump()), QString::fromStdString(s.toJson().dump()));
        }
    }

    // The Train dialog (issue 17 item 10, issue 18's GUI): every field of a training spec comes back, for the dense
    // control and each fine-tuning method with every parameter off its default; a bad value disables Run with the
    // reason; a spec run from the dialog trains, and the dialog reopens with it in a new run folder.
    void trainDialogRoundTripsEverySpecField() {
        MainWindow w;
        openAndAnalyze(w);
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        const std::map<std::string, ParamValue> changed = {
            {"losparse.targets", std::string("mlp")}, {"losparse.rank_ratio", 0.125},
            {"losparse.final_keep", 0.3},            {"losparse.initial_warmup", 0.01},
            {"losparse.final_warmup", 0.4},          {"losparse.delta_t", int64_t(7)},
            {"losparse.beta", 0.5},                  {"losparse.mask", std::string("official")},
            {"losparse.low_rank_only", true},        {"recovery.targets", std::string("mlp")},
            {"recovery.sparsity", 0.3},
            {"pst.targets", std::string("self_attn")}, {"pst.final_sparsity", 0.75},
            {"pst.ramp_begin", 0.2},                 {"pst.ramp_end", 0.6},
            {"pst.rank", int64_t(4)},                {"pst.mask_rank", int64_t(2)},
            {"pst.beta", 0.5},                       {"pst.alpha1", 0.0},
            {"pst.alpha2", 2.0},                     {"sat.omission", 0.25},
            {"sat.hold", 0.5},                       {"sat.rungs", int64_t(3)},
            {"sat.scores", std::string("magnitude")}, {"sat.mlp", false},
            {"sat.attention", false},                {"sat.selection", std::string("sample")}};
        std::vector<const FineTuningMethod *> methods = {nullptr};
        for (const CompressionMethod *m : methodsOfKind(MethodKind::FineTuning))
            methods.push_back(dynamic_cast<const FineTuningMethod *>(m));
        for (const FineTuningMethod *method : methods) {
            TrainingSpec s;
            s.model = m_model.toStdString();
            s.method = method;
            if (method) {
                s.methodParams = MethodParams(method->info().params);
                for (const ParamSpec &p : method->info().params) {
                    s.methodParams.set(p.key, changed.at(p.key));
                    QVERIFY2(!(s.methodParams.value(p.key) == p.defaultValue), p.key.c_str());
                }
            }
            s.tokenizer = m_dir + "/tok512.bin";
            s.trainable = "layers";
            s.trainText = text;
            s.holdout = 0.125;
            s.seqLen = 48;
            s.batch = 3;
            s.accumulate = 2;
            s.evalWindows = 5;
            s.seed = 4000000000ull;
            s.recompute = true;
            s.device = "auto";
            s.precision = "fp32";
            s.lr = 0.00123456789012345;
            s.schedule = "linear";
            s.warmup = 3;
            s.minLrRatio = 0.05;
            s.beta1 = 0.8;
            s.beta2 = 0.99;
            s.eps = 1e-7;
            s.weightDecay = 0.01;
            s.clip = 0.5;
            s.steps = 12;
            s.evalEvery = 4;
            s.checkpointEvery = 6;
            s.outputDir = test::tempDir("train-roundtrip") + "/run";
            s.exportModel = false;
            s.dtype = "bf16";
            s.overwrite = true;
            TrainDialog dialog(m_model);
            dialog.setSpec(s);
            QCOMPARE(QString::fromStdString(dialog.spec().toJson().dump()), QString::fromStdString(s.toJson().dump()));
            // The schedule preview: one point per step, the method's own schedule; none for dense fine-tuning.
            auto *preview = dialog.findChild<QCustomPlot *>("schedulePreview");
            QVERIFY(preview);
            if (method) {
                QCOMPARE(preview->graphCount(), 1);
                const auto want = method->schedule(s.methodParams, s.steps).values;
                QCOMPARE(preview->graph(0)->data()->size(), int(want.size()));
                QCOMPARE((preview->graph(0)->data()->constEnd() - 1)->value, want.back());
            } else {
                QCOMPARE(preview->graphCount(), 0);
            }
            QVERIFY2(dialog.findChild<QPushButton *>("run")->isEnabled(),
                     qPrintable(dialog.findChild<QLabel *>("status")->text()));
            s.overwrite = false;
            s.resume = true; // not shown: carried
            dialog.setSpec(s);
            QCOMPARE(QString::fromStdString(dialog.spec().toJson().dump()), QString::fromStdString(s.toJson().dump()));
            QVERIFY(dialog.spec().resume);
            dialog.findChild<QLineEdit *>("lr")->setText("fast");
            QVERIFY(!dialog.findChild<QPushButton *>("run")->isEnabled());
            QVERIFY(dialog.findChild<QLabel *>("status")->text().contains("learning rate"));
        }
        // Run from the dialog's spec: it trains, and the dialog reopens with it (new folder) for this model.
        TrainDialog dialog(m_model);
        TrainingSpec s = w.trainingSpecForDialog();
        QCOMPARE(QString::fromStdString(s.model), m_model);
        s.trainText = text;
        s.holdout = 0.1;
        s.seqLen = 64;
        s.batch = 2;
        s.evalWindows = 2;
        s.steps = 4;
        s.evalEvery = 2;
        s.checkpointEvery = 0;
        s.exportModel = false;
        s.outputDir = test::tempDir("train-dialog") + "/run";
        s.method = dynamic_cast<const FineTuningMethod *>(findMethod("sat"));
        s.methodParams = MethodParams(s.method->info().params);
        dialog.setSpec(s);
        QVERIFY2(dialog.findChild<QPushButton *>("run")->isEnabled(),
                 qPrintable(dialog.findChild<QLabel *>("status")->text()));
        // The estimate: one training step timed on a worker thread, then the run's time, memory and disk; a run
        // that cannot fit is refused until the settings change.
        dialog.findChild<QPushButton *>("estimateButton")->click();
        QTRY_VERIFY_WITH_TIMEOUT(!dialog.estimating(), 60000);
        QTRY_VERIFY(dialog.estimateText().startsWith("Estimate: about"));
        QVERIFY(dialog.findChild<QLabel *>("estimate")->toolTip().contains("training steps"));
        QVERIFY(!QFile::exists(QString::fromStdString(s.outputDir)));
        if (memAvailable() > 0) {
            TrainingSpec huge = s;
            huge.batch = 1'000'000; // activations far beyond any machine's memory
            dialog.setSpec(huge);
            QVERIFY(dialog.estimateText().contains("settings changed"));
            dialog.estimate();
            QTRY_VERIFY_WITH_TIMEOUT(!dialog.estimating(), 60000);
            QTRY_VERIFY(!dialog.findChild<QPushButton *>("run")->isEnabled());
            QVERIFY2(dialog.findChild<QLabel *>("status")->text().contains("does not fit"),
                     qPrintable(dialog.findChild<QLabel *>("status")->text()));
            dialog.setSpec(s); // changed back: the refusal goes with the estimate it came from
            QVERIFY(dialog.findChild<QPushButton *>("run")->isEnabled());
        }
        QSignalSpy done(&w, &MainWindow::trainingFinished);
        w.startTraining(dialog.spec());
        QVERIFY(done.wait(60000));
        QCOMPARE(w.trainingView()->stepCount(), 4);
        const TrainingSpec again = w.trainingSpecForDialog();
        QVERIFY(again.method == s.method && again.steps == 4 && again.outputDir != s.outputDir);
    }

    // Switching model leaves nothing of the previous one (issue 16's defects): the Results plot shows the current
    // model's runs only while the table names each row's model, the rank line is cleared, placeholder plots show no
    // axes, an error banner goes away after a run that succeeded, and the Compress dialog reopens with the last
    // settings used for that model.
    void modelSwitchLeavesNoStaleState() {
        MainWindow w;
        openAndAnalyze(w);
        auto *banner = w.findChild<QLabel *>("messageBar");
        CompressionSpec bad = w.specFromPanel();
        bad.setMethod("magnitude");
        const std::string root = test::tempDir("stale");
        bad.evalText = root + "/short.txt";
        std::ofstream(bad.evalText) << "Once upon a time.\n";
        bad.evalSeqLen = 500; // the text has fewer tokens than one window: the job fails after it starts
        bad.outputDir = root + "/bad";
        w.startCompression(bad);
        QTRY_VERIFY_WITH_TIMEOUT(banner->isVisibleTo(&w) && !w.lastError().isEmpty(), 30000);
        CompressionSpec good = bad;
        good.evalText = test::sourceDir() + "/README.md";
        good.evalSeqLen = 64;
        good.evalMaxTokens = 128;
        good.params.set("targets", std::string("mlp"));
        good.outputDir = root + "/good";
        QSignalSpy done(&w, &MainWindow::compressionFinished);
        w.startCompression(good);
        QVERIFY(done.wait(60000));
        QVERIFY(!banner->isVisibleTo(&w));
        QVERIFY(w.resultsView()->hasData());
        QCOMPARE(w.resultsView()->table()->rowCount(), 2); // dense + one run
        QCOMPARE(w.resultsView()->table()->item(0, 0)->text(), QFileInfo(m_model).fileName());
        // The dialog reopens with that run's settings, in a new run folder.
        const CompressionSpec again = w.specForDialog();
        QCOMPARE(QString::fromStdString(again.params.get<std::string>("targets")), QString("mlp"));
        QCOMPARE(again.evalMaxTokens, int64_t(128));
        QVERIFY(again.outputDir != good.outputDir);

        w.parameterPanel()->setRankInfo("block 0: rank 3 keeps 50% of the energy");
        const std::string other = test::tempDir("stale-model");
        for (const char *f : {"stories260K.bin", "tok512.bin"})
            std::filesystem::copy_file(m_dir + "/" + f, other + "/" + f);
        const QString otherModel = QString::fromStdString(other + "/stories260K.bin");
        QSignalSpy opened(&w, &MainWindow::modelOpened);
        w.openModelPath(otherModel);
        QVERIFY(opened.wait(20000));
        QVERIFY(w.parameterPanel()->findChild<QLabel *>("rankLabel")->text().isEmpty());
        QVERIFY(!w.resultsView()->hasData()); // no runs of this model yet
        for (QCPAxisRect *rect : w.resultsView()->plot()->axisRects())
            QVERIFY(!rect->visible()); // no axes of the previous figure
        QCOMPARE(w.resultsView()->table()->rowCount(), 2); // the earlier rows stay, named by their model
        QCOMPARE(QString::fromStdString(w.specForDialog().params.has("targets") ? w.specForDialog().params.get<std::string>("targets") : ""),
                 QString(".*")); // this model's dialog starts from the panel, not from the other model's run
    }

    // A training job from the window (issue 17 item 10): every step and evaluation reaches the Training tab while
    // it runs (loss and learning rate per step, held-out perplexity at steps 0, 4, 8), the log-scale switch works,
    // and a long run cancelled from the job manager stops at a step boundary and says so in its results.
    void trainingJobDrawsLive() {
        MainWindow w;
        const std::string root = test::tempDir("gui-train");
        TrainingSpec spec = smallTrainingSpec(m_model, 8, 4, 0);
        spec.outputDir = root + "/run";
        QSignalSpy done(&w, &MainWindow::trainingFinished);
        w.startTraining(spec);
        QVERIFY(done.wait(60000));
        TrainingView *view = w.trainingView();
        QCOMPARE(view->stepCount(), 8);
        QCOMPARE(view->evalCount(), 3);
        QVERIFY(view->hasData());
        QCOMPARE(view->plot()->graphCount(), 3);
        QCOMPARE(view->plot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
        view->setLogScale(false);
        QCOMPARE(view->plot()->yAxis->scaleType(), QCPAxis::stLinear);

        // A fine-tuning method's schedule gets its own axis: PST's sparsity, 0 to 0.5.
        spec.method = dynamic_cast<const FineTuningMethod *>(findMethod("pst"));
        QVERIFY(spec.method);
        spec.methodParams = MethodParams(spec.method->info().params);
        spec.methodParams.set("pst.final_sparsity", 0.5);
        spec.outputDir = root + "/pst";
        w.startTraining(spec);
        QVERIFY(done.wait(60000));
        QCOMPARE(view->plot()->graphCount(), 4);
        QCPGraph *sched = view->plot()->graph(3);
        QCOMPARE(sched->name(), QString("sparsity"));
        QCOMPARE(sched->data()->size(), 8);
        QCOMPARE((sched->data()->constEnd() - 1)->value, 0.5);
        QVERIFY(sched->valueAxis()->label().contains("sparsity"));
        QVERIFY2(view->title().contains(", pst, "), qPrintable(view->title())); // the chart says which method
        spec.method = nullptr;
        QCOMPARE(view->plot()->graph(1)->name(), QString("held-out perplexity"));

        // A BERT masked LM: its perplexity is named for what it is.
        TrainingSpec bert = smallTrainingSpec(QString::fromStdString(test::sourceDir() + "/tests/fixtures/tf-bert-mlm"), 4, 2, 0);
        bert.seqLen = 32;
        bert.outputDir = root + "/bert";
        w.startTraining(bert);
        QVERIFY(done.wait(60000));
        QCOMPARE(view->evalCount(), 3);
        QCOMPARE(view->plot()->graph(1)->name(), QString("held-out masked-LM perplexity"));

        spec.steps = 100000;
        spec.outputDir = root + "/cancel";
        w.startTraining(spec);
        QTRY_VERIFY_WITH_TIMEOUT(view->stepCount() >= 2, 30000);
        w.jobManager()->cancelAll();
        QTRY_COMPARE_WITH_TIMEOUT(w.jobManager()->activeCount(), 0, 30000);
        const auto r = nlohmann::json::parse(readTextFile(root + "/cancel/results.json"));
        QCOMPARE(QString::fromStdString(r["status"].get<std::string>()), QString("cancelled"));
        QVERIFY(r["steps"].size() >= 2 && r["steps"].size() < 100000);
    }

    // Train > Resume Interrupted Run...: a run cancelled (or killed) part way continues from its last checkpoint and
    // ends with the steps and evaluations of an uninterrupted run; a folder that is no run is refused with a reason.
    void resumeInterruptedRunFromTheGui() {
        MainWindow w;
        const std::string root = test::tempDir("gui-resume");
        TrainingSpec spec = smallTrainingSpec(m_model, 40, 10, 5);
        spec.outputDir = root + "/ref";
        QSignalSpy done(&w, &MainWindow::trainingFinished);
        w.startTraining(spec);
        QVERIFY(done.wait(60000));
        spec.outputDir = root + "/cut";
        w.startTraining(spec);
        QTRY_VERIFY_WITH_TIMEOUT(w.trainingView()->stepCount() >= 12, 30000);
        w.jobManager()->cancelAll();
        QTRY_COMPARE_WITH_TIMEOUT(w.jobManager()->activeCount(), 0, 30000);
        auto results = [](const std::string &dir) {
            nlohmann::json r = nlohmann::json::parse(readTextFile(dir + "/results.json"));
            for (auto &s : r["steps"])
                s.erase("tokens_per_s");
            return r;
        };
        QCOMPARE(QString::fromStdString(results(root + "/cut")["status"].get<std::string>()), QString("cancelled"));
        w.resumeRun(QString::fromStdString(root + "/cut"));
        QVERIFY(done.wait(60000));
        const nlohmann::json a = results(root + "/ref"), b = results(root + "/cut");
        QCOMPARE(QString::fromStdString(b["status"].get<std::string>()), QString("done"));
        QVERIFY(a["steps"] == b["steps"]);
        QVERIFY(a["evals"] == b["evals"]);
        QVERIFY(readTextFile(root + "/cut/run.log").find("resumed at step") != std::string::npos);
        w.resumeRun(QString::fromStdString(root));
        QVERIFY2(w.lastError().contains("not a run folder"), qPrintable(w.lastError()));
    }

    void wandaAfterCalibration() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        const std::string text = m_dir + "/calib.txt";
        {
            std::ofstream out(text);
            for (int i = 0; i < 200; ++i)
                out << "The cat sat on the mat and the dog ran in the park with a red ball.\n";
        }
        selectMethod(w.parameterPanel()->findChild<QComboBox *>("method"), "wanda");
        QSignalSpy scores(&w, &MainWindow::scoresReady);
        select(w, {"model.layers.0.self_attn.k_proj.weight"});
        QVERIFY(scores.wait(10000));
        QVERIFY(w.importanceView()->title().contains("magnitude")); // no calibration yet: said so
        QVERIFY(w.importanceView()->title().contains("calibration"));
        CalibrationParams p;
        p.samples = 4;
        p.seqLen = 64;
        QSignalSpy ready(&w, &MainWindow::calibrationReady);
        w.collectCalibration(QString::fromStdString(text), p);
        QVERIFY(ready.wait(20000));
        QVERIFY(scores.wait(10000));
        QVERIFY2(w.importanceView()->title().contains("wanda"), qPrintable(w.importanceView()->title()));
        // The norms went into the archive.
        AnalysisData back;
        QVERIFY(loadAnalysisArchive(w.analysis()->archivePath, w.analysis()->data.modelHash, back));
        QCOMPARE(int(back.inputNorms.size()), 35);
        selectMethod(w.parameterPanel()->findChild<QComboBox *>("method"), "magnitude");
        // A missing calibration file is reported, not a crash.
        w.collectCalibration("/nonexistent/text.txt", p);
        QVERIFY(w.lastError().contains("not found"));
        QVERIFY(w.findChild<QLabel *>("messageBar")->isVisible());
    }

    // Taylor scores (issue 18's gradient importance): chosen as the Score, they are said to need gradients until
    // a calibration with gradients is collected; then the views rank by them.
    void taylorScoresAfterCalibrationWithGradients() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        const std::string text = test::dataDir() + "/text/tinystories-excerpt.txt";
        auto *score = w.parameterPanel()->findChild<QComboBox *>("score");
        QVERIFY(score);
        score->setCurrentIndex(score->findData(QString("taylor")));
        QSignalSpy scores(&w, &MainWindow::scoresReady);
        select(w, {"model.layers.1.mlp.down_proj.weight"});
        QVERIFY(scores.wait(10000));
        QVERIFY2(w.importanceView()->title().contains("magnitude"), qPrintable(w.importanceView()->title()));
        CalibrationParams p;
        p.samples = 3;
        p.seqLen = 64;
        p.gradients = true;
        QSignalSpy ready(&w, &MainWindow::calibrationReady);
        w.collectCalibration(QString::fromStdString(text), p);
        QVERIFY(ready.wait(30000));
        QVERIFY(scores.wait(10000));
        QVERIFY2(w.importanceView()->title().contains("taylor"), qPrintable(w.importanceView()->title()));
        QCOMPARE(int(w.document()->calibration()->gradients.size()), 35);
        // LoSparse's rows of |S ⊙ ∇S| from the same gradients.
        score->setCurrentIndex(score->findData(QString("losparse")));
        QVERIFY(scores.wait(10000));
        QVERIFY2(w.importanceView()->title().contains("losparse"), qPrintable(w.importanceView()->title()));
        score->setCurrentIndex(0);
    }
};

QTEST_MAIN(TestWorkbenchRuns)
#include "tst_workbenchruns.moc"
