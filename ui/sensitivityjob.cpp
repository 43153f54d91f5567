#include "sensitivityjob.h"

#include "engine/evaluation.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "tokenizers/tokenizer.h"

#include <QFileInfo>

namespace lathe {

SensitivityJob::SensitivityJob(std::shared_ptr<const Model> model, QString textPath, SensitivityParams params)
    : Job(QObject::tr("Sensitivity sweep (%1% per part, %2)")
              .arg(params.ratio * 100, 0, 'g', 3)
              .arg(params.wanda ? QObject::tr("Wanda") : QObject::tr("magnitude"))),
      m_model(std::move(model)), m_textPath(std::move(textPath)), m_params(params) {}

void SensitivityJob::execute() {
    const ProgressCallback progress = progressCallback();
    reportProgress(progress, 0.0, "tokenizing " + QFileInfo(m_textPath).fileName().toStdString());
    const std::vector<int32_t> ids =
        loadTokenizer(*m_model)->encodeForModel(joinDatasetRows(readTextFile(m_textPath.toStdString())));
    auto r = std::make_shared<const SensitivityResult>(sensitivitySweep(m_model->sourcePath, ids, m_params, progress));
    emit finished(r);
}

} // namespace lathe
