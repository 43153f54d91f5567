#pragma once

// Runs lathe-cli ($LATHE_CLI, set by ctest) from a test and collects what it printed. Header-only: it needs
// QtCore, which only the Qt Test executables link, not lathe_testsupport.

#include <QProcess>
#include <QThread>
#include <QStringList>

#include <cstdlib>
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

} // namespace lathe::test
