#pragma once

#include <string>

namespace lathe {

// Sets up the default spdlog logger: warnings and above to stderr (everything with `verbose`), everything to a
// rotating log file. An empty `logFile` picks $LATHE_LOG_FILE, else $XDG_STATE_HOME/lathe/lathe.log, else
// ~/.local/state/lathe/lathe.log. A log file that cannot be opened is reported on stderr and skipped.
// Returns the path of the log file in use (empty if none).
std::string initLogging(const std::string &appName, bool verbose = false, const std::string &logFile = {});

} // namespace lathe
