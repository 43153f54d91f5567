// The workbench GUI (offscreen): opens the demo model, checks each view's data points against the model, moves the
// sparsity slider and checks the summary against an independent count, starts and cancels a real engine job from
// the job panel, filters the tree, and exports figures (single and all). Runs, dialogs and sessions are in
// tst_workbenchruns.

#include "importanceview.h"
#include "job.h"
#include "jobmanager.h"
#include "jobpanel.h"
#include "layerview.h"
#include "mainwindow.h"
#include "modeltree.h"
#include "parameterpanel.h"
#include "resultsview.h"
#include "sparsityview.h"
#include "spectrumview.h"
#include "testsupport.h"
#include "workbenchdocument.h"
#include "workbenchfixture.h"
#include "analysis/modelanalysis.h"
#include "analysis/modelsummary.h"
#include "engine/evaluation.h"
#include "export/exportestimate.h"
#include "export/ggufwriter.h"
#include "io/modelloader.h"
#include "model/model.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QImage>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollArea>
#include <QScrollBar>
#include <QSignalSpy>
#include <QSlider>
#include <QTest>
#include <QTreeWidgetItemIterator>

#include <cmath>
#include <fstream>

using namespace lathe;
using namespace lathe::test;

class TestWorkbench : public WorkbenchFixture {
    Q_OBJECT

private slots:
    void initTestCase() { setUp("LatheWorkbenchTest"); }

    // The workbench document (issue 16 item 5) owns the state and says when it changes: a new model resets analysis
    // and calibration, an analysis finished for a model no longer open is dropped, norms kept in the archive become
    // the calibration, runs are kept per model; the Results view follows it without being fed by hand.
    void workbenchDocument() {
        WorkbenchDocument doc;
        ResultsView results(&doc);
        QSignalSpy model(&doc, &WorkbenchDocument::modelChanged), analysis(&doc, &WorkbenchDocument::analysisChanged),
            calibration(&doc, &WorkbenchDocument::calibrationChanged), runs(&doc, &WorkbenchDocument::runsChanged);
        std::shared_ptr<Model> a = openModel(m_model.toStdString()), b = openModel(m_model.toStdString());
        doc.setModel("a.bin", a);
        QCOMPARE(model.count(), 1);
        auto withNorms = std::make_shared<AnalyzeResult>();
        withNorms->data.inputNorms["x"] = {1.0f, 2.0f};
        withNorms->data.inputNormTokens = 64;
        withNorms->data.calibration = "text.txt, 4 x 16";
        doc.setAnalysis(a.get(), withNorms);
        QCOMPARE(analysis.count(), 1);
        QCOMPARE(calibration.count(), 1);
        QVERIFY(doc.calibration() && doc.calibration()->tokens == 64);
        QVERIFY(doc.calibrationSource().contains("from the archive"));
        doc.setModel("b.bin", b);
        QVERIFY(!doc.analysis() && !doc.calibration());
        doc.setAnalysis(a.get(), std::make_shared<AnalyzeResult>()); // a's late result: dropped
        QVERIFY(!doc.analysis());
        QCOMPARE(analysis.count(), 1);
        doc.setCalibration(b.get(), std::make_shared<InputNorms>(), "calib.txt");
        QVERIFY(doc.calibrationSource().contains("collected: calib.txt"));

        CompressionRunResult r;
        r.densePerplexity = 10;
        r.runs.push_back({});
        r.runs.back().sparsity = 0.5;
        r.runs.back().perplexity = 12;
        doc.addRun({"a.bin", "wanda", "/runs/1", r});
        QCOMPARE(runs.count(), 1);
        QCOMPARE(results.table()->rowCount(), 2);
        QCOMPARE(results.table()->item(1, 0)->text(), QString("a.bin"));
        QCOMPARE(results.table()->item(1, 4)->text(), QString("+20.0%"));
        QVERIFY(!results.hasData()); // b is open: a's runs are not plotted
        doc.addRun({"b.bin", "magnitude", "/runs/2", r});
        QVERIFY(results.hasData());
        QCOMPARE(results.plot()->graphCount(), 2); // magnitude + dense line
        QCOMPARE(doc.runsOf("a.bin").size(), 1);
        CompressionSpec spec;
        spec.model = "b.bin";
        spec.setMethod("slicegpt");
        doc.rememberSpec(spec);
        QCOMPARE(QString::fromStdString(doc.lastSpec("b.bin")->methodName()), QString("slicegpt"));
        QVERIFY(!doc.lastSpec("a.bin"));
        doc.clearRuns();
        QCOMPARE(results.table()->rowCount(), 0);
        QVERIFY(!results.hasData());
    }

    void spectrumPoints() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        QCOMPARE(int(w.analysis()->data.spectra.size()), 36);
        const QString q = "model.layers.2.self_attn.q_proj.weight", up = "model.layers.2.mlp.up_proj.weight";
        select(w, {q});
        QCustomPlot *p = w.spectrumView()->plot();
        QCOMPARE(p->graphCount(), 2); // q_proj + its cumulative energy
        QCOMPARE(p->graph(0)->dataCount(), 64); // min(64, 64) singular values
        QCOMPARE(p->graph(1)->dataCount(), 64);
        QVERIFY(w.spectrumView()->title().contains("64 x 64"));
        select(w, {q, up});
        QCOMPARE(p->graphCount(), 3);
        QCOMPARE(p->graph(1)->dataCount(), 64); // up_proj (172 x 64)
        // Selecting a block selects its matrices: 7 linears overlaid + energy.
        w.tree()->clearSelection();
        w.tree()->topLevelItem(2)->setSelected(true);
        QCOMPARE(p->graphCount(), 8);
        // The second open reads the archive.
        MainWindow w2;
        openAndAnalyze(w2);
        QCOMPARE(w2.analysis()->cached, 36);
        QCOMPARE(w2.analysis()->computed, 0);
    }

    void sparsityAndImportancePoints() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        w.parameterPanel()->findChild<QComboBox *>("pattern")->setCurrentIndex(0);
        selectMethod(w.parameterPanel()->findChild<QComboBox *>("method"), "magnitude");
        QSignalSpy scores(&w, &MainWindow::scoresReady);
        select(w, {"model.layers.1.mlp.down_proj.weight"}); // 64 x 172
        QVERIFY(scores.wait(10000));
        QCustomPlot *sp = w.sparsityView()->plot();
        QCPBars *rows = barsIn(sp, 0), *cols = barsIn(sp, 1);
        QVERIFY(rows && cols);
        QCOMPARE(rows->data()->size(), 50);
        QCOMPARE(barsTotal(rows), 64.0);   // one count per output row
        QCOMPARE(barsTotal(cols), 172.0);  // one per input column
        QCustomPlot *ip = w.importanceView()->plot();
        QCOMPARE(ip->plottableCount(), 1);
        auto *hist = qobject_cast<QCPBars *>(ip->plottable(0));
        QCOMPARE(hist->data()->size(), 60);
        QCOMPARE(barsTotal(hist), 64.0 * 172.0); // every (non-zero) weight once
        QVERIFY(w.sparsityView()->title().contains("50.0% pruned"));
        // 2:4: every row exactly half, pattern valid.
        w.parameterPanel()->findChild<QComboBox *>("pattern")->setCurrentIndex(2);
        QVERIFY(scores.wait(10000));
        QVERIFY(w.sparsityView()->title().contains("N:M valid"));
        rows = barsIn(sp, 0);
        QCOMPARE(barsTotal(rows), 64.0);
        // The layer bars: 5 blocks in each of the three charts.
        QCustomPlot *lp = w.layerView()->plot();
        QCOMPARE(lp->plottableCount(), 3);
        for (int i = 0; i < 3; ++i)
            QCOMPARE(qobject_cast<QCPBars *>(lp->plottable(i))->data()->size(), 5);
        // Their x axes are aligned (one margin group), whatever the widths of their value labels.
        lp->replot();
        for (int i = 1; i < 3; ++i) {
            QCOMPARE(lp->axisRect(i)->left(), lp->axisRect(0)->left());
            QCOMPARE(lp->axisRect(i)->right(), lp->axisRect(0)->right());
        }
        w.parameterPanel()->findChild<QComboBox *>("pattern")->setCurrentIndex(0);
    }

    // The summary after a slider move, against a count made here from the tensor table.
    void sliderUpdatesSummary() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        w.parameterPanel()->findChild<QSlider *>("rankSlider")->setValue(0);
        w.parameterPanel()->findChild<QComboBox *>("pattern")->setCurrentIndex(0);
        auto *slider = w.parameterPanel()->findChild<QSlider *>("sparsitySlider");
        QTest::mouseClick(slider, Qt::LeftButton); // focus
        slider->setValue(30);
        int64_t total = 0, pruned = 0;
        for (const TensorInfo &t : w.model()->tensors()) {
            total += t.numel();
            if (t.layer >= 0 && t.shape.size() == 2 && !t.isBias && isLinearRole(t.role))
                pruned += int64_t(std::floor(0.30 * double(t.numel())));
        }
        const QString summary = w.parameterPanel()->summaryText();
        QVERIFY2(summary.contains("30% unstructured"), qPrintable(summary));
        QVERIFY2(summary.contains(QString::fromStdString(humanCount(total - pruned))), qPrintable(summary));
        slider->setValue(70);
        pruned = 0;
        for (const TensorInfo &t : w.model()->tensors())
            if (t.layer >= 0 && t.shape.size() == 2 && !t.isBias && isLinearRole(t.role))
                pruned += int64_t(std::floor(0.70 * double(t.numel())));
        QVERIFY(w.parameterPanel()->summaryText().contains(QString::fromStdString(humanCount(total - pruned))));
        QVERIFY(!w.parameterPanel()->summaryText().contains("not smaller"));
        // Each export's size and what it runs at: the folders and the GGUF keep the zeros (dense speed), the
        // archive is storage only; its size as the run will write it.
        CompressionPlan plan;
        plan.pattern.ratio = 0.7;
        for (const ExportSize &x : estimateExportSizes(*w.model(), plan, !ggufExportBlocker(*w.model()))) {
            const std::string size = x.format + " <b>" + humanBytes(x.bytes) + "</b>";
            QVERIFY2(w.parameterPanel()->summaryText().contains(QString::fromStdString(size)), size.c_str());
        }
        for (const char *row : {"GGUF q8_0 <b>", "</b>: dense speed (the zeros are multiplied)",
                                "<br>run.h5 archive <b>", "</b>: storage only"})
            QVERIFY2(w.parameterPanel()->summaryText().contains(row), qPrintable(w.parameterPanel()->summaryText()));
        // Honest sizes: at 10% the compact form (values + indices) is larger than dense storage, and says so; a large
        // low-rank part on top makes the model itself larger.
        slider->setValue(10);
        QVERIFY2(w.parameterPanel()->summaryText().contains("not smaller"), qPrintable(w.parameterPanel()->summaryText()));
        w.parameterPanel()->findChild<QSlider *>("rankSlider")->setValue(50);
        QVERIFY2(w.parameterPanel()->summaryText().contains("larger"), qPrintable(w.parameterPanel()->summaryText()));
        w.parameterPanel()->findChild<QSlider *>("rankSlider")->setValue(0);
        slider->setValue(70);
        // The layer bars follow: sparsity after is below 0.7 (norms are kept) and above 0.6.
        auto *bars = qobject_cast<QCPBars *>(w.layerView()->plot()->plottable(1));
        const double s0 = bars->data()->at(0)->value;
        QVERIFY2(s0 > 0.6 && s0 < 0.7, qPrintable(QString::number(s0)));
        slider->setValue(50);
    }

    // A real calibration job over a long text is cancelled from the job panel's button and stops within a second.
    void startAndCancelJob() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        const std::string text = m_dir + "/long.txt";
        {
            std::ofstream out(text);
            for (int i = 0; i < 40000; ++i)
                out << "Once upon a time, there was a little girl named Lily. She loved to play outside.\n";
        }
        CalibrationParams p;
        p.samples = 2000;
        p.seqLen = 256;
        QSignalSpy started(w.jobManager(), &JobManager::jobStarted);
        w.collectCalibration(QString::fromStdString(text), p);
        QCOMPARE(started.count(), 1);
        auto *job = started.at(0).at(0).value<Job *>();
        QSignalSpy progress(job, &Job::progress);
        QSignalSpy cancelled(job, &Job::cancelled);
        QSignalSpy ended(job, &Job::ended);
        QVERIFY(progress.wait(20000));
        // Wait until it runs samples (tokenizing is done), then press Cancel in its row.
        QElapsedTimer clock;
        clock.start();
        while (!progress.last().at(1).toString().contains("calibration sample") && clock.elapsed() < 30000)
            QVERIFY(progress.wait(30000));
        QList<QPushButton *> buttons;
        for (QPushButton *b : w.jobPanel()->findChildren<QPushButton *>("cancelButton"))
            if (b->isEnabled() && b->isVisible())
                buttons << b;
        QCOMPARE(buttons.size(), 1);
        clock.restart();
        QTest::mouseClick(buttons.front(), Qt::LeftButton);
        QVERIFY(cancelled.wait(5000));
        const qint64 ms = clock.elapsed();
        qInfo("cancel took %lld ms", static_cast<long long>(ms));
        QVERIFY2(ms < 1000, qPrintable(QString::number(ms)));
        bool rowSaysCancelled = false;
        for (QLabel *l : w.jobPanel()->findChildren<QLabel *>("stage"))
            rowSaysCancelled |= l->text() == "cancelled";
        QVERIFY(rowSaysCancelled);
        QTRY_COMPARE(w.jobManager()->activeCount(), 0);
    }

    // Issue 19 item 7: the jobs panel brings each new job into view: the model opened three times on a small
    // screen (an open and a spectra job each) leaves the last row inside the panel's viewport.
    void jobPanelShowsNewJobs() {
        MainWindow w;
        w.show();
        w.resizeWithDocks(QSize(1280, 720));
        for (int i = 0; i < 3; ++i)
            openAndAnalyze(w);
        QApplication::processEvents();
        auto *scroll = w.jobPanel()->findChild<QScrollArea *>();
        QVERIFY(scroll);
        const QList<QWidget *> rows = w.jobPanel()->findChildren<QWidget *>("jobRow");
        QCOMPARE(rows.size(), 6);
        QVERIFY2(scroll->verticalScrollBar()->maximum() > 0, "the rows fit without scrolling: no check");
        const QWidget *last = rows.back();
        const QPoint at = last->mapTo(scroll->viewport(), QPoint(0, 0));
        QVERIFY2(at.y() >= 0 && at.y() + last->height() <= scroll->viewport()->height(),
                 qPrintable(QString("row at %1..%2, viewport %3")
                                .arg(at.y())
                                .arg(at.y() + last->height())
                                .arg(scroll->viewport()->height())));
    }

    // Issue 19 item 7: the tree filter keeps the matching tensors and their groups; the ρ number field and slider
    // are one value; Help lists every shortcut and says what the build runs on.
    void treeFilterRankFieldAndHelp() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        auto *filter = w.findChild<QLineEdit *>("treeFilter");
        QVERIFY(filter);
        auto visibleTensors = [&] {
            QStringList names;
            for (QTreeWidgetItemIterator it(w.tree()); *it; ++it)
                if ((*it)->parent() && !(*it)->isHidden() && !(*it)->parent()->isHidden())
                    names << (*it)->data(ModelTree::NameColumn, Qt::UserRole).toString();
            return names;
        };
        const int all = int(visibleTensors().size());
        filter->setText("down_proj");
        const QStringList down = visibleTensors();
        QCOMPARE(int(down.size()), int(w.document()->model()->config.numLayers));
        for (const QString &n : down)
            QVERIFY2(n.contains("down_proj"), qPrintable(n));
        // The tree's short names (the role, as the views' titles say it) match too, and a full name's block.
        filter->setText("mlp_down");
        QCOMPARE(visibleTensors(), down);
        filter->setText("layers.1.");
        const QStringList block1 = visibleTensors();
        QVERIFY(!block1.isEmpty());
        for (const QString &n : block1)
            QVERIFY2(n.startsWith("model.layers.1."), qPrintable(n));
        filter->setText("no such tensor");
        QVERIFY(visibleTensors().isEmpty());
        filter->clear();
        QCOMPARE(int(visibleTensors().size()), all);

        auto *spin = w.parameterPanel()->findChild<QDoubleSpinBox *>("rankSpin");
        auto *slider = w.parameterPanel()->findChild<QSlider *>("rankSlider");
        QVERIFY(spin && slider);
        spin->setValue(0.2);
        QCOMPARE(slider->value(), 20);
        QCOMPARE(w.parameterPanel()->rankRatio(), 0.2);
        slider->setValue(7);
        QCOMPARE(spin->value(), 0.07);

        const QString shortcuts = w.shortcutsText();
        for (const char *k : {"Ctrl+O", "Ctrl+R", "Ctrl+Shift+T", "F5"})
            QVERIFY2(shortcuts.contains(k), qPrintable(shortcuts));
        QVERIFY(w.aboutText().contains("BLAS") && w.aboutText().contains("GPU"));

        // Compress > Open Compression Job... with a job for another model asks for that model first.
        const std::string job = m_dir + "/other-model-job.json";
        test::writeText(job, nlohmann::json({{"model", test::sourceDir() + "/tests/fixtures/hf-llama"}, {"method", "magnitude"},
                                             {"sparsity", 0.5}, {"output", {{"dir", m_dir + "/never"}}}}).dump());
        w.openCompressionJob(QString::fromStdString(job));
        QVERIFY2(w.lastError().contains("not the open model"), qPrintable(w.lastError()));
    }

    void exportFigures() {
        MainWindow w;
        w.show();
        openAndAnalyze(w);
        QSignalSpy scores(&w, &MainWindow::scoresReady);
        select(w, {"model.layers.3.mlp.gate_proj.weight"});
        QVERIFY(scores.wait(10000));
        const QString dir = QString::fromStdString(test::tempDir("figures"));
        for (PlotView *v : {static_cast<PlotView *>(w.spectrumView()), static_cast<PlotView *>(w.sparsityView()),
                            static_cast<PlotView *>(w.importanceView()), static_cast<PlotView *>(w.layerView())}) {
            for (const char *ext : {"png", "svg", "pdf"}) {
                const QString path = dir + "/" + v->name() + "." + ext;
                QString error;
                QVERIFY2(v->exportFigure(path, &error), qPrintable(error));
                QVERIFY2(QFileInfo(path).size() > 1000, qPrintable(path));
            }
            const QImage png(dir + "/" + v->name() + ".png");
            QCOMPARE(png.size(), QSize(1800, 1200)); // 900 x 600 at scale 2
            QVERIFY(std::abs(png.dotsPerMeterX() - 11811) < 20); // 300 dpi
            QFile svg(dir + "/" + v->name() + ".svg");
            QVERIFY(svg.open(QIODevice::ReadOnly));
            QVERIFY(svg.readAll().contains("<svg"));
            QFile pdf(dir + "/" + v->name() + ".pdf");
            QVERIFY(pdf.open(QIODevice::ReadOnly));
            QVERIFY(pdf.read(5) == "%PDF-");
        }
        QString error;
        QVERIFY(!w.spectrumView()->exportFigure(dir + "/x.bmp", &error));
        QVERIFY(error.contains("unknown figure format"));
        // Paper presets: single column 3.5 in at 300 dpi with 8 pt text, a title of one's own (or none); the view
        // on screen keeps its fonts and title.
        const QString onScreen = w.spectrumView()->title();
        FigureStyle single = FigureStyle::singleColumn();
        single.title = "Figure 3: down projection";
        QVERIFY(w.spectrumView()->exportFigure(dir + "/single.png", single, &error));
        QCOMPARE(QImage(dir + "/single.png").size(), QSize(1050, 788));
        QVERIFY(w.spectrumView()->exportFigure(dir + "/single.svg", single, &error));
        QFile singleSvg(dir + "/single.svg");
        QVERIFY(singleSvg.open(QIODevice::ReadOnly));
        const QByteArray svgText = singleSvg.readAll();
        QVERIFY(svgText.contains("width=\"88.9mm\"")); // 3.5 in
        QVERIFY(svgText.contains("Figure 3: down projection") && !svgText.contains(onScreen.toUtf8()));
        QVERIFY(svgText.contains("font-size=\"8\""));
        const QRegularExpression fontSize("font-size=\"([0-9.]+)\"");
        for (auto it = fontSize.globalMatch(QString::fromUtf8(svgText)); it.hasNext();) {
            const double size = it.next().captured(1).toDouble();
            QVERIFY2(size >= 7 && size < 10, qPrintable(QString::number(size))); // 8 pt text (9: the painter's default state)
        }
        // The view's own title, broken into lines for the column's width as on screen for the view's (a wide
        // window: one line there).
        single.title.reset();
        w.resize(1800, 1000);
        QApplication::processEvents();
        QVERIFY(w.spectrumView()->exportFigure(dir + "/titled.svg", single, &error));
        QFile titled(dir + "/titled.svg");
        QVERIFY(titled.open(QIODevice::ReadOnly));
        const QString titledText = QString::fromUtf8(titled.readAll());
        const QStringList words = onScreen.split(' ');
        QVERIFY2(words.size() > 8 && !titledText.contains(onScreen), qPrintable(onScreen)); // not on one line
        QVERIFY(titledText.contains(words.front()) && titledText.contains(words.back()));
        single.title = QString();
        QVERIFY(w.spectrumView()->exportFigure(dir + "/untitled.svg", single, &error));
        QFile untitled(dir + "/untitled.svg");
        QVERIFY(untitled.open(QIODevice::ReadOnly) && !untitled.readAll().contains("Figure 3"));
        QCOMPARE(w.spectrumView()->title(), onScreen);
        QVERIFY(w.spectrumView()->exportFigure(dir + "/double.png", FigureStyle::doubleColumn(), &error));
        QCOMPARE(QImage(dir + "/double.png").size(), QSize(2100, 1050));

        // Export all for a block: 7 matrices x 3 figures + the layer bars, PNG and PDF each, and the index.
        w.tree()->clearSelection();
        w.tree()->topLevelItem(4)->setSelected(true); // Block 3
        const QString all = dir + "/all";
        QSignalSpy done(&w, &MainWindow::figuresExported);
        w.exportAllFigures(all);
        QVERIFY(done.wait(60000));
        QVERIFY2(done.at(0).at(1).toString().isEmpty(), qPrintable(done.at(0).at(1).toString()));
        const QStringList files = done.at(0).at(0).toStringList();
        QCOMPARE(files.size(), (7 * 3 + 1) * 2 + 2);
        for (const QString &f : files)
            QVERIFY2(QFileInfo(f).size() > 0, qPrintable(f));
        QFile index(all + "/index.html");
        QVERIFY(index.open(QIODevice::ReadOnly));
        QVERIFY(index.readAll().contains("model.layers.3.mlp.down_proj.weight.spectrum.png"));
    }
};

QTEST_MAIN(TestWorkbench)
#include "tst_workbench.moc"
