#include "calibrationjob.h"

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "tokenizers/tokenizer.h"
#include "train/taylor.h"

#include <QFileInfo>

#include <spdlog/spdlog.h>

namespace lathe {

CalibrationJob::CalibrationJob(std::shared_ptr<const Model> model, QString textPath, CalibrationParams params)
    : Job(QObject::tr("Calibration (%1 x %2)").arg(params.samples).arg(params.seqLen)), m_model(std::move(model)),
      m_textPath(std::move(textPath)), m_params(params) {}

void CalibrationJob::execute() {
    const ProgressCallback progress = progressCallback();
    reportProgress(progress, 0.0, "tokenizing " + QFileInfo(m_textPath).fileName().toStdString());
    std::unique_ptr<Tokenizer> tokenizer = loadTokenizer(*m_model);
    const std::vector<int32_t> tokens = tokenizer->encodeForModel(joinDatasetRows(readTextFile(m_textPath.toStdString())));
    CalibrationParams params = m_params;
    if (m_model->config.maxPositions > 0 && params.seqLen > m_model->config.maxPositions)
        throw LatheError("calibration samples of " + std::to_string(params.seqLen) + " tokens are longer than the " +
                             std::to_string(m_model->config.maxPositions) + " positions the model allows",
                         "lower the sample length");
    const CalibrationSet set = makeCalibrationSet(tokens, params);
    if (!set.note.empty())
        spdlog::warn("{}", set.note);
    Transformer engine(*m_model);
    // With gradients, the input norms take the first half of the bar and the Taylor scores the second.
    auto half = [&](double from) -> ProgressCallback {
        if (!params.gradients)
            return progress;
        return [progress, from](const Progress &p) {
            Progress q = p;
            q.fraction = from + 0.5 * p.fraction;
            return !progress || progress(q);
        };
    };
    auto norms = std::make_shared<InputNorms>(collectInputNorms(engine, *m_model, set, half(0.0)));
    if (params.gradients)
        norms->gradients = train::collectGradientMagnitudes(*m_model, set, half(0.5));
    const QString description = QObject::tr("%1: %2 x %3 tokens, seed %4%5")
                                    .arg(QFileInfo(m_textPath).fileName())
                                    .arg(set.sequences.size())
                                    .arg(set.seqLen)
                                    .arg(params.seed)
                                    .arg(params.gradients ? QObject::tr(", with gradients") : QString());
    emit collected(std::move(norms), description);
}

} // namespace lathe
