#pragma once

#include "base/outputfiles.h"
#include "run/compressionspec.h"
#include "run/runresult.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

namespace lathe {

// The folder a job writes (a compression or a training run): its marker, spec.json, run.log (one line per event),
// a JSON-lines file (progress.jsonl, metrics.jsonl) and results.json, beside what the job exports. Thread-safe.
// The log and the JSON lines are appended with checked writes; a failure there (a full disk) is reported once as a
// warning and does not stop the job, whose results and exports are checked where they are written.
class RunFolder {
public:
    // Creates `dir` for a job of `kind` (replacing a previous run there only when the job's checks allowed it,
    // after removing the temporaries killed runs left beside it) or, with `keep`, continues the one there (a
    // resumed run, less its temporaries); writes spec.json with `spec`. `linesFile` names the JSON-lines file.
    RunFolder(const std::string &dir, OutputKind kind, bool keep, const nlohmann::json &spec, const char *linesFile);

    const std::filesystem::path &dir() const { return m_dir; }
    void log(const std::string &line);
    void line(const nlohmann::json &j);
    // Writes results.json atomically; LatheError when it cannot be written (the previous one then stays).
    void results(const nlohmann::json &j);
    // For the failure paths: results.json written if it can be (a failure is said in the log, not thrown over the
    // error being handled), then `logLine` logged.
    void resultsNoThrow(const nlohmann::json &j, const std::string &logLine);

private:
    void append(CheckedFile &f, const std::string &text);
    std::filesystem::path m_dir;
    std::mutex m_mutex;
    std::optional<CheckedFile> m_log, m_lines;
    bool m_warned = false;
};

// A duration for a person: "42s", "3m07s", "1h05m".
std::string formatDuration(double seconds);

// What an interrupted run of `spec` left in its folder and may be kept: the dense evaluation and the finished
// points (a prefix of the sweep) whose exports are in place. nullopt when the folder holds no run to continue.
// LatheError when it holds another job's run (its spec.json differs in more than overwrite, resume and
// checkpoint_seconds).
std::optional<CompressionRunResult> previousRun(const CompressionSpec &spec);

} // namespace lathe
