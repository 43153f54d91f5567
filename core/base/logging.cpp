#include "base/logging.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;

std::string initLogging(const std::string &appName, bool verbose, const std::string &logFile) {
    std::string path = logFile;
    if (path.empty()) {
        if (const char *e = std::getenv("LATHE_LOG_FILE"))
            path = e;
        else if (const char *x = std::getenv("XDG_STATE_HOME"))
            path = (fs::path(x) / "lathe" / "lathe.log").string();
        else if (const char *h = std::getenv("HOME"))
            path = (fs::path(h) / ".local" / "state" / "lathe" / "lathe.log").string();
    }
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_level(verbose ? spdlog::level::debug : spdlog::level::warn);
    console->set_pattern("%^%l%$: %v");
    std::vector<spdlog::sink_ptr> sinks{console};
    if (!path.empty()) {
        try {
            std::error_code ec;
            fs::create_directories(fs::path(path).parent_path(), ec);
            auto file = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(path, 5 * 1024 * 1024, 3);
            file->set_level(spdlog::level::debug);
            file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [" + appName + "] [%l] %v");
            sinks.push_back(file);
        } catch (const spdlog::spdlog_ex &e) {
            console->log(spdlog::details::log_msg("lathe", spdlog::level::warn,
                                                  std::string("cannot open log file ") + path + ": " + e.what()));
            path.clear();
        }
    }
    auto logger = std::make_shared<spdlog::logger>(appName, sinks.begin(), sinks.end());
    logger->set_level(spdlog::level::debug);
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    return path;
}

} // namespace lathe
