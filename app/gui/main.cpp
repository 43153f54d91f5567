// lathe: the desktop workbench.

#include "backend.h"
#include "blas.h"
#include "logging.h"
#include "mainwindow.h"
#include "model.h"

#ifdef LATHE_HAVE_CUDA
#include "cudabackend.h"
#endif

#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>
#include <QFileInfo>
#include <QSettings>

#include <memory>

int main(int argc, char **argv) {
    lathe::fixBlasCoreType(argc, argv); // may re-execute with OPENBLAS_CORETYPE set: before anything else
    QApplication app(argc, argv);
    QApplication::setOrganizationName("Lathe");
    QApplication::setApplicationName("Lathe");
    QApplication::setApplicationVersion(LATHE_VERSION);
    qRegisterMetaType<std::shared_ptr<lathe::Model>>("std::shared_ptr<lathe::Model>");
#ifdef LATHE_HAVE_CUDA
    lathe::gpu::registerCudaBackend();
#endif
    lathe::initLogging("lathe");

    QCommandLineParser parser;
    parser.setApplicationDescription("Lathe: inspect and compress transformer language models");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument("model", "Model to open: a Hugging Face folder, a .gguf or a llama2.c .bin file");
    QCommandLineOption shot("screenshot", "Save a PNG of the window once the model is open, then quit.", "file");
    parser.addOption(shot);
    parser.process(app);

    lathe::MainWindow window;
    window.show();
    if (parser.isSet(shot)) {
        const QString file = parser.value(shot);
        auto save = [&window, file] {
            QTimer::singleShot(300, &window, [&window, file] {
                const bool ok = window.grab().save(file);
                QApplication::exit(ok ? 0 : 1);
            });
        };
        QObject::connect(&window, &lathe::MainWindow::modelOpened, &window, save);
        QObject::connect(&window, &lathe::MainWindow::modelFailed, &window, save);
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
