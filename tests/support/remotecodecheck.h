#pragma once

// Runs tests/support/check_sliced_export.py on a folder exported with remote modelling code (sliced, LoSparse
// compact): transformers loads it with trust_remote_code and compares its logits for `batch` with Lathe's
// (tolerance 1e-4), its KV cache, left-padded batches and generate(). Used by tst_methods and tst_finetune.

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

// The script's exit code (0: every check passed; -1: it did not finish in time); its JSON line is logged with
// `label`, its error output as a warning when it fails. `python` is test::referencePython().
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
    QProcess proc;
    proc.start(python, {QString::fromStdString(sourceDir() + "/tests/support/check_sliced_export.py"),
                        QString::fromStdString(dir), QString::fromStdString(casePath)});
    if (!proc.waitForFinished(240000))
        return -1;
    qInfo("%s: transformers says %s", qPrintable(label), proc.readAllStandardOutput().trimmed().constData());
    if (proc.exitCode() != 0)
        qWarning("%s", proc.readAllStandardError().right(3000).constData());
    return proc.exitCode();
}

} // namespace lathe::test
