#include "exportjob.h"

#include "analysis/modelsummary.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"

#include <QFileInfo>

namespace lathe {

ExportJob::ExportJob(std::shared_ptr<const Model> model, QString path, Format format, std::optional<DType> dtype,
                     bool overwrite)
    : Job(QObject::tr("Export: %1").arg(QFileInfo(path).fileName())), m_model(std::move(model)), m_path(std::move(path)),
      m_format(format), m_dtype(dtype), m_overwrite(overwrite) {}

void ExportJob::execute() {
    const std::string path = m_path.toStdString();
    if (m_format == Format::Gguf) {
        GgufWriteOptions o;
        o.dtype = m_dtype.value_or(DType::F16);
        o.overwrite = m_overwrite;
        const GgufWriteResult r = writeGgufFile(*m_model, path, o, progressCallback());
        QString summary = QObject::tr("GGUF (%1), weights %2, %3")
                              .arg(QString::fromStdString(r.architecture), dtypeName(o.dtype),
                                   QString::fromStdString(humanBytes(r.bytes)));
        if (!r.notes.empty())
            summary += QObject::tr("; %n matrices kept at F16 (rows not a multiple of 32)", nullptr, int(r.notes.size()));
        emit exported(m_path, summary);
        return;
    }
    HfWriteOptions o;
    o.dtype = m_dtype;
    o.overwrite = m_overwrite;
    const HfWriteResult r = writeHfFolder(*m_model, path, o, progressCallback());
    emit exported(m_path, QObject::tr("Hugging Face folder, %n files, %1 of tensors", nullptr, int(r.files.size()))
                              .arg(QString::fromStdString(humanBytes(r.bytes))));
}

} // namespace lathe
