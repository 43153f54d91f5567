#include "openmodeljob.h"

#include "io/modelloader.h"
#include "model/model.h"

#include <QFileInfo>

namespace lathe {

OpenModelJob::OpenModelJob(QString path)
    : Job(QObject::tr("Open %1").arg(QFileInfo(path).fileName())), m_path(std::move(path)) {}

void OpenModelJob::execute() {
    std::shared_ptr<Model> model = openModel(m_path.toStdString());
    emit opened(m_path, std::move(model));
}

} // namespace lathe
