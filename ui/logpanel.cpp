#include "logpanel.h"

#include <QMetaObject>
#include <QPointer>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace lathe {

namespace {

class PanelSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit PanelSink(LogPanel *panel) : m_panel(panel) {}
    void detach() {
        std::lock_guard lock(mutex_);
        m_panel = nullptr;
    }

protected:
    void sink_it_(const spdlog::details::log_msg &msg) override {
        if (!m_panel)
            return;
        spdlog::memory_buf_t buf;
        formatter_->format(msg, buf);
        QString line = QString::fromUtf8(buf.data(), int(buf.size())).trimmed();
        const int level = int(msg.level);
        QPointer<LogPanel> panel = m_panel.data();
        QMetaObject::invokeMethod(panel, [panel, line, level] {
            if (panel)
                panel->appendLine(line, level);
        }, Qt::QueuedConnection);
    }
    void flush_() override {}

private:
    QPointer<LogPanel> m_panel;
};

} // namespace

LogPanel::LogPanel(QWidget *parent) : QPlainTextEdit(parent) {
    setReadOnly(true);
    setMaximumBlockCount(5000);
    setFont(QFont("Monospace", 9));
    auto sink = std::make_shared<PanelSink>(this);
    sink->set_pattern("%H:%M:%S %l %v");
    sink->set_level(spdlog::level::info);
    m_sink = sink;
    spdlog::default_logger()->sinks().push_back(m_sink);
    // The default logger may filter below info; the panel wants info and up.
    if (spdlog::default_logger()->level() > spdlog::level::info)
        spdlog::default_logger()->set_level(spdlog::level::info);
}

LogPanel::~LogPanel() {
    static_cast<PanelSink *>(m_sink.get())->detach();
    auto &sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), m_sink), sinks.end());
}

void LogPanel::appendLine(const QString &line, int level) {
    const char *color = level >= spdlog::level::err ? "#b00020" : level == spdlog::level::warn ? "#8a6d00" : "#333333";
    appendHtml(QString("<span style=\"color:%1\">%2</span>").arg(color, line.toHtmlEscaped()));
}

} // namespace lathe
