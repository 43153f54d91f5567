#include "openmodeljob.h"

#include "error.h"
#include "modelloader.h"

namespace lathe {

OpenModelJob::OpenModelJob(QString path) : m_path(std::move(path)) { setAutoDelete(true); }

void OpenModelJob::run() {
    try {
        std::shared_ptr<Model> model = openModel(m_path.toStdString());
        emit finished(m_path, std::move(model));
    } catch (const LatheError &e) {
        emit failed(m_path, QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::exception &e) {
        emit failed(m_path, QString::fromStdString(e.what()), {});
    }
}

} // namespace lathe
