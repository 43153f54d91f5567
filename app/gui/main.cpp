// lathe: the desktop workbench.

#include "base/memory.h"
#include "base/logging.h"
#include "mainwindow.h"
#include "model/model.h"
#include "modeltree.h"
#include "numeric/backend.h"
#include "numeric/blas.h"
#include "run/trainingrun.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QTabWidget>
#include <QTextBrowser>
#include <QTimer>
#include <QUrl>
#include <QFileInfo>
#include <QSettings>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

int main(int argc, char **argv) {
    lathe::fixBlasCoreType(argc, argv); // may re-execute with OPENBLAS_CORETYPE set: before anything else
    lathe::keepFreedMemory();
    // A file size limit (ulimit -f) then fails the write with EFBIG, which is reported like a full disk, instead of
    // killing the process with SIGXFSZ and leaving a half-written file.
    std::signal(SIGXFSZ, SIG_IGN);
    QApplication app(argc, argv);
    QApplication::setOrganizationName("Lathe");
    QApplication::setApplicationName("Lathe");
    QApplication::setApplicationVersion(LATHE_VERSION);
    lathe::registerUiMetaTypes();
    // --verbose (as in lathe-cli): every log level on stderr too. Read before the parser runs, because the logger
    // must exist for the jobs the command line starts.
    bool verbose = false;
    for (int i = 1; i < argc; ++i)
        verbose = verbose || std::strcmp(argv[i], "--verbose") == 0;
    lathe::initLogging("lathe", verbose);

    QCommandLineParser parser;
    parser.setApplicationDescription("Lathe: inspect and compress transformer language models");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addOption(QCommandLineOption("verbose", "Log every message to stderr too (the log file has them anyway)."));
    parser.addPositionalArgument("model", "Model to open: a Hugging Face folder, a .gguf or a llama2.c .bin file");
    QCommandLineOption shot("screenshot", "Save a PNG of the window once the model is analysed, then quit.", "file");
    QCommandLineOption view("view", "With --screenshot: the tab to show (1-5: spectrum, sparsity, importance, "
                                    "layers, details).", "n", "1");
    QCommandLineOption select("select", "With --screenshot: tensors to select, comma-separated.", "names");
    QCommandLineOption size("size", "With --screenshot: window size WxH.", "size", "1440x900");
    QCommandLineOption sweep("sweep", "With --screenshot: run the sensitivity sweep on this text and show its tab.",
                             "text");
    QCommandLineOption compare("compare", "With --screenshot: compare the model with this one (Compare tab).", "model");
    QCommandLineOption train("train", "With --screenshot: run this training job (a JSON job spec) once the model is "
                                      "analysed and grab the Training tab when it ends.", "job");
    QCommandLineOption report("report", "Write the session report into this new folder once the model is analysed "
                                        "(after --select and --sweep), then quit; with --screenshot, the PNG shows "
                                        "the report's first screen.", "folder");
    parser.addOption(shot);
    parser.addOption(view);
    parser.addOption(select);
    parser.addOption(size);
    parser.addOption(sweep);
    parser.addOption(report);
    parser.addOption(compare);
    parser.addOption(train);
    parser.process(app);

    lathe::MainWindow window;
    window.show();
    if (parser.isSet(shot) || parser.isSet(report)) {
        // Documentation screenshots and reports: open, wait for the spectra, select, switch the tab (or run the
        // sensitivity sweep), let the scores arrive, then grab the window or write the report.
        const QStringList wh = parser.value(size).split('x');
        if (wh.size() == 2)
            window.resizeWithDocks(QSize(wh[0].toInt(), wh[1].toInt()));
        const QString file = parser.value(shot);
        const QString reportFolder = parser.value(report);
        const QStringList names = parser.value(select).split(',', Qt::SkipEmptyParts);
        const int tab = parser.value(view).toInt() - 1;
        auto finish = [&window, file, reportFolder] {
            QTimer::singleShot(800, &window, [&window, file, reportFolder] {
                if (!reportFolder.isEmpty()) {
                    window.writeReport(reportFolder);
                    return;
                }
                const bool ok = window.grab().save(file);
                QApplication::exit(ok ? 0 : 1);
            });
        };
        QObject::connect(&window, &lathe::MainWindow::reportWritten, &window,
                         [file](QString html, QString, QString error) {
            if (!error.isEmpty() || file.isEmpty()) {
                QApplication::exit(error.isEmpty() ? 0 : 1);
                return;
            }
            auto *page = new QTextBrowser;
            page->resize(1000, 1300);
            page->setSource(QUrl::fromLocalFile(html));
            QTimer::singleShot(500, page, [page, file] {
                const bool ok = page->grab().save(file);
                QApplication::exit(ok ? 0 : 1);
            });
        });
        const QString sweepText = parser.value(sweep), compareWith = parser.value(compare);
        const QString trainJob = parser.value(train);
        QObject::connect(&window, &lathe::MainWindow::sensitivityReady, &window, finish);
        QObject::connect(&window, &lathe::MainWindow::compareReady, &window, finish);
        QObject::connect(&window, &lathe::MainWindow::trainingFinished, &window, finish);
        auto swept = std::make_shared<bool>(false);
        QObject::connect(&window, &lathe::MainWindow::analysisReady, &window,
                         [&window, names, tab, finish, sweepText, compareWith, trainJob, swept] {
            window.views()->setCurrentIndex(tab);
            window.tree()->selectTensors(names);
            if (!sweepText.isEmpty() || !compareWith.isEmpty() || !trainJob.isEmpty()) {
                if (!*swept) {
                    if (!sweepText.isEmpty()) {
                        window.startSensitivity(sweepText, lathe::SensitivityParams{});
                    } else if (!compareWith.isEmpty()) {
                        window.startCompare(compareWith);
                    } else {
                        try {
                            window.startTraining(lathe::TrainingSpec::fromFile(trainJob.toStdString()));
                        } catch (const std::exception &e) {
                            std::fprintf(stderr, "lathe: %s\n", e.what());
                            QApplication::exit(1);
                        }
                    }
                }
                *swept = true;
                return;
            }
            finish();
        });
        QObject::connect(&window, &lathe::MainWindow::modelFailed, &window, [] { QApplication::exit(1); });
    }
    // The model given on the command line, else the demo model on first start.
    const QStringList args = parser.positionalArguments();
    QSettings settings;
    if (!args.isEmpty()) {
        window.openModelPath(args.at(0));
    } else if (!settings.value("demoShown").toBool()) {
        // Installed layout first (share/lathe/demo), then the source tree this binary was built from.
        for (const QString &demo : {QApplication::applicationDirPath() + "/../share/lathe/demo/stories260K.bin",
                                    QString(LATHE_DEMO_MODEL)}) {
            if (QFileInfo::exists(demo)) {
                settings.setValue("demoShown", true);
                window.openModelPath(demo);
                break;
            }
        }
    }
    return QApplication::exec();
}
