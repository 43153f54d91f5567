#pragma once

#include <QPlainTextEdit>

#include <memory>

namespace spdlog::sinks {
class sink;
}

namespace lathe {

// The engine's log (spdlog) shown in a panel: a sink added to the default logger forwards each formatted line to
// the GUI thread (queued); lines from any thread arrive in order. The sink is removed when the panel goes.
class LogPanel : public QPlainTextEdit {
    Q_OBJECT
public:
    explicit LogPanel(QWidget *parent = nullptr);
    ~LogPanel() override;

    void appendLine(const QString &line, int level); // level: spdlog::level::level_enum

private:
    std::shared_ptr<spdlog::sinks::sink> m_sink;
};

} // namespace lathe
