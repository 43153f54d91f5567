#pragma once

#include "base/outputfiles.h"
#include "run/compressionspec.h"
#include "run/runresult.h"

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

namespace lathe {

// The folder a compression job writes: its marker (a run folder, outputfiles.h), spec.json, run.log (one line per
// event), progress.jsonl (one JSON line per stage) and results.json, beside the points' exports. Thread-safe. The
// log and progress lines are appended with checked writes; a failure there (a full disk) is reported once as a
// warning and does not stop the run, whose results and exports are checked where they are written.
class RunFolder {
public:
    // Creates the folder for `spec` (replacing a previous run there only when validateSpec allowed it, after
    // removing the temporaries killed runs left beside it) or, with `keep`, continues the one there (a resumed
    // run); writes spec.json.
    RunFolder(const CompressionSpec &spec, bool keep);

    void log(const std::string &line);
    void progress(double fraction, const std::string &stage, double eta);
    // Throws LatheError when results.json cannot be written; the previous one then stays as it was.
    void results(const CompressionRunResult &r);
    // For the failure paths: a results.json that cannot be written is said in the log, not thrown over the error.
    void resultsNoThrow(const CompressionRunResult &r);

private:
    void append(CheckedFile &f, const std::string &text);
    std::filesystem::path m_dir;
    std::mutex m_mutex;
    std::optional<CheckedFile> m_log, m_progress;
    bool m_warned = false;
};

// What an interrupted run of `spec` left in its folder and may be kept: the dense evaluation and the finished
// points (a prefix of the sweep) whose exports are in place. nullopt when the folder holds no run to continue.
// LatheError when it holds another job's run (its spec.json differs in more than overwrite/resume).
std::optional<CompressionRunResult> previousRun(const CompressionSpec &spec);

} // namespace lathe
