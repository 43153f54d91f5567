#include "compressjob.h"

#include <QFileInfo>

namespace lathe {

namespace {

QString titleOf(const CompressionSpec &s) {
    QString what = QString::fromStdString(s.label());
    if (s.sparsities.size() == 1)
        what += QStringLiteral(" %1").arg(s.sparsities[0]);
    else
        what += QObject::tr(" sweep (%1 runs)").arg(s.sparsities.size());
    return QObject::tr("Compress: %1").arg(what);
}

} // namespace

CompressJob::CompressJob(CompressionSpec spec) : Job(titleOf(spec)), m_spec(std::move(spec)) {}

void CompressJob::execute() {
    auto r = std::make_shared<const CompressionRunResult>(runCompression(m_spec, progressCallback()));
    emit finished(r, QString::fromStdString(m_spec.outputDir));
}

} // namespace lathe
