#include "run/runfolder.h"

#include "base/error.h"
#include "engine/evaluation.h"
#include "export/sparsearchive.h"
#include "methods/method.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <ctime>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

RunFolder::RunFolder(const std::string &dirName, OutputKind kind, bool keep, const json &spec,
                     const char *linesFile)
    : m_dir(dirName) {
    std::error_code ec;
    cleanStaleTemporaries(fs::absolute(m_dir, ec).parent_path());
    if (keep) {
        cleanStaleTemporaries(m_dir);
    } else {
        if (fs::exists(m_dir, ec) && !fs::is_empty(m_dir, ec)) {
            const fs::path old = temporarySibling(m_dir, "lathe-old");
            fs::rename(m_dir, old);
            fs::remove_all(old, ec);
            if (ec)
                spdlog::warn("{}: the previous run was left at {}: {}", dirName, old.string(), ec.message());
        }
        // The folder appears with its marker or not at all: built as a temporary sibling and renamed into place,
        // so a kill in between leaves only a temporary (removed by the next run), never a folder without a marker
        // that a resumed or overwriting run would have to refuse.
        const fs::path tmp = temporarySibling(m_dir, "lathe-tmp");
        fs::create_directories(tmp);
        writeOutputMarker(tmp, kind);
        fs::rename(tmp, m_dir);
        fsyncFolder(fs::absolute(m_dir, ec).parent_path());
    }
    m_log.emplace(m_dir / "run.log", CheckedFile::Append);
    m_lines.emplace(m_dir / linesFile, CheckedFile::Append);
    writeFileAtomic(m_dir / "spec.json", spec.dump(2) + "\n");
}

void RunFolder::log(const std::string &line) {
    std::lock_guard<std::mutex> lock(m_mutex);
    std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
    append(*m_log, std::string(stamp) + "  " + line + "\n");
    spdlog::info("{}", line);
}

void RunFolder::line(const json &j) {
    std::lock_guard<std::mutex> lock(m_mutex);
    append(*m_lines, j.dump() + "\n");
}

void RunFolder::results(const json &j) { writeFileAtomic(m_dir / "results.json", j.dump(2) + "\n"); }

void RunFolder::resultsNoThrow(const json &j, const std::string &logLine) {
    try {
        results(j);
    } catch (const LatheError &e) {
        spdlog::warn("{}", e.fullMessage());
    }
    log(logLine);
}

void RunFolder::append(CheckedFile &f, const std::string &text) {
    try {
        f.write(text);
    } catch (const LatheError &e) {
        if (!m_warned)
            spdlog::warn("{} (further log lines may be lost)", e.fullMessage());
        m_warned = true;
    }
}

std::string formatDuration(double s) {
    char b[32];
    if (s >= 3600)
        std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60)
        std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else
        std::snprintf(b, sizeof b, "%.0fs", s);
    return b;
}

std::optional<CompressionRunResult> previousRun(const CompressionSpec &spec) {
    const fs::path dir(spec.outputDir);
    std::error_code ec;
    if (!fs::exists(dir / "spec.json", ec) || !fs::exists(dir / "results.json", ec))
        return std::nullopt;
    json before, now;
    try {
        // Read back through the spec, so that a file written by another version compares by its meaning.
        before = CompressionSpec::fromJson(json::parse(readTextFile((dir / "spec.json").string()))).toJson();
    } catch (const std::exception &e) {
        throw LatheError((dir / "spec.json").string() + ": " + e.what(), "the run folder is damaged: use --overwrite");
    }
    now = spec.toJson();
    for (json *j : {&before, &now}) {
        (*j)["output"].erase("overwrite");
        (*j)["output"].erase("resume");
        (*j)["output"].erase("checkpoint_seconds");
    }
    if (before != now) {
        std::string key;
        for (const auto &[k, v] : now.items())
            if (!before.contains(k) || before[k] != v)
                key += (key.empty() ? "" : ", ") + k;
        throw LatheError("--resume: the run folder " + spec.outputDir + " holds another job (" +
                             (key.empty() ? std::string("keys") : key) + " differ)",
                         "resume with the job spec the run was started with, or start afresh with --overwrite");
    }
    CompressionRunResult r;
    try {
        r = CompressionRunResult::fromJson(json::parse(readTextFile((dir / "results.json").string())));
    } catch (const json::exception &e) {
        throw LatheError((dir / "results.json").string() + ": " + e.what(), "the run folder is damaged: use --overwrite");
    }
    // Keep the finished points whose outputs are all there (results.json is written after them).
    const size_t n = spec.sparsities.size();
    const bool archive = spec.method->info().exportKind == ExportKind::PrunedDense && sparseArchiveAvailable();
    size_t kept = 0;
    for (; kept < r.runs.size() && kept < n; ++kept) {
        const CompressionRunRecord &rec = r.runs[kept];
        const fs::path runDir = pointFolder(spec, kept);
        const bool complete = rec.sparsity == spec.sparsities[kept] &&
                              (!spec.exportModel || outputKindOf(runDir / "model") == OutputKind::ModelExport) &&
                              (!spec.exportModel || !archive || fs::exists(runDir / "run.h5", ec));
        if (!complete)
            break;
    }
    r.runs.resize(kept);
    return r;
}

} // namespace lathe
