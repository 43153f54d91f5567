#pragma once

// Runs tests/support/check_sliced_export.py on a folder exported with remote modelling code (sliced, LoSparse
// compact): transformers loads it with trust_remote_code and compares its logits for `batch` with Lathe's
// (tolerance 1e-4), its KV cache, left-padded batches and generate(), in the reference environment's transformers
// and in each other version installed beside it. Used by tst_methods and tst_finetune.

#include "clirun.h"
#include "engine/transformer.h"
#include "numeric/mat.h"
#include "testsupport.h"

#include <nlohmann/json.hpp>

#include <QProcess>
#include <QString>

#include <string>
#include <vector>

namespace lathe::test {

// Other transformers versions to check beside the reference environment's own: LATHE_TRANSFORMERS_OVERLAYS, a
// colon-separated list of folders each holding one transformers version installed with `pip install --target`
// over the reference environment's torch (packaging/make-reference-env.sh --versions makes them). Each runs with
// the folder first on PYTHONPATH.
inline QStringList transformersOverlays() {
    return qEnvironmentVariable("LATHE_TRANSFORMERS_OVERLAYS").split(':', Qt::SkipEmptyParts);
}

// The script's exit code (0: every check passed in every transformers version; -1: one did not finish in time);
// each version's JSON line is logged with `label`, its error output as a warning when it fails. `python` is
// test::referencePython().
inline int checkRemoteCodeExport(const QString &python, const std::string &dir, const Mat &logits,
                                 const TokenBatch &batch, const QString &label) {
    nlohmann::json c = {{"logits", std::vector<float>(logits.data(), logits.data() + logits.size())},
                        {"tolerance", 1e-4}};
    c["input_ids"] = nlohmann::json::array();
    for (int64_t i = 0; i < batch.batch; ++i)
        c["input_ids"].push_back(
            std::vector<int32_t>(batch.tokens.begin() + i * batch.seq, batch.tokens.begin() + (i + 1) * batch.seq));
    const std::string casePath = dir + "-case.json";
    writeText(casePath, c.dump());
    int worst = 0;
    for (const QString &overlay : QStringList{QString()} + transformersOverlays()) {
        QProcess proc;
        if (!overlay.isEmpty()) {
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert("PYTHONPATH", overlay);
            proc.setProcessEnvironment(env);
        }
        proc.start(python, {QString::fromStdString(sourceDir() + "/tests/support/check_sliced_export.py"),
                            QString::fromStdString(dir), QString::fromStdString(casePath)});
        if (!proc.waitForFinished(240000))
            return -1;
        qInfo("%s: transformers says %s", qPrintable(label), proc.readAllStandardOutput().trimmed().constData());
        if (proc.exitCode() != 0) {
            qWarning("%s", proc.readAllStandardError().right(3000).constData());
            worst = proc.exitCode();
        }
    }
    return worst;
}

} // namespace lathe::test
