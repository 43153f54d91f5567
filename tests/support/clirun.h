#pragma once

// Runs lathe-cli ($LATHE_CLI, set by ctest) from a test and collects what it printed. Header-only: it needs
// QtCore, which only the Qt Test executables link, not lathe_testsupport.

#include "testsupport.h"

#include <nlohmann/json.hpp>

#include <QElapsedTimer>
#include <QProcess>
#include <QThread>
#include <QStringList>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace lathe::test {

struct CliRun {
    int exitCode; // -1 when it timed out or crashed
    std::string out, err;
};

inline CliRun runCli(const QStringList &args, int timeoutMs = 120000) {
    QProcess p;
    p.start(QString::fromLocal8Bit(std::getenv("LATHE_CLI")), args);
    if (!p.waitForFinished(timeoutMs))
        return {-1, {}, "timeout"};
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAllStandardOutput().toStdString(),
            p.readAllStandardError().toStdString()};
}

// Starts lathe-cli with `args` and kills it with SIGKILL after `delayMs`; true when it was still running then.
inline bool runCliKilledAfter(const QStringList &args, int delayMs) {
    QProcess p;
    p.start(QString::fromLocal8Bit(std::getenv("LATHE_CLI")), args);
    if (!p.waitForStarted())
        return false;
    QThread::msleep(unsigned(delayMs));
    const bool running = p.state() == QProcess::Running;
    p.kill();
    p.waitForFinished();
    return running;
}

// A job spec written to root/job.json and run (`command`: "train", "compress") into root/ref, timed: the reference
// run that the kill-and-resume tests compare with.
struct ReferenceRun {
    CliRun run;
    QString specPath;
    std::filesystem::path out;
    qint64 ms = 0;
};
inline ReferenceRun runReference(const std::filesystem::path &root, const nlohmann::json &spec, const QString &command) {
    ReferenceRun r;
    r.specPath = QString::fromStdString((root / "job.json").string());
    writeText(r.specPath.toStdString(), spec.dump(2));
    r.out = root / "ref";
    QElapsedTimer clock;
    clock.start();
    r.run = runCli({command, r.specPath, "--output", QString::fromStdString(r.out.string())});
    r.ms = clock.elapsed();
    return r;
}

} // namespace lathe::test
