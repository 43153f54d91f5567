#include "generationjob.h"

#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "tokenizers/tokenizer.h"

namespace lathe {

GenerationJob::GenerationJob(std::vector<Target> targets, QString prompt, int maxNew)
    : Job(QObject::tr("Generate with %n models", nullptr, int(targets.size()))), m_targets(std::move(targets)),
      m_prompt(std::move(prompt)), m_maxNew(maxNew) {}

void GenerationJob::execute() {
    const ProgressCallback progress = progressCallback();
    QStringList labels, texts;
    for (size_t i = 0; i < m_targets.size(); ++i) {
        const Target &t = m_targets[i];
        reportProgress(progress, double(i) / double(m_targets.size()), "generating with " + t.label.toStdString());
        labels << t.label;
        try {
            std::unique_ptr<Model> model = openModel(t.path.toStdString());
            const std::unique_ptr<Tokenizer> tok = loadTokenizer(*model);
            Transformer engine(*model);
            const std::vector<int32_t> prompt = tok->encodeForModel(m_prompt.toStdString());
            const std::vector<int32_t> ids = generateGreedy(engine, prompt, m_maxNew, tok->eos);
            const std::vector<int32_t> continuation(ids.begin() + std::ptrdiff_t(prompt.size()), ids.end());
            texts << QString::fromStdString(tok->decode(continuation));
        } catch (const CancelledError &) {
            throw;
        } catch (const std::exception &e) {
            texts << QObject::tr("(not generated: %1)").arg(QString::fromStdString(e.what()));
        }
    }
    emit generated(labels, texts);
}

} // namespace lathe
