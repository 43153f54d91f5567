#include "base/outputfiles.h"

#include "base/error.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <random>
#include <unistd.h>

namespace lathe {

namespace fs = std::filesystem;

namespace {

const char *const kTempTags[] = {"lathe-tmp", "lathe-old"};

// Absolute and lexically normal, without a trailing separator ("out/" and "out" are the same folder).
fs::path absoluteNormal(const fs::path &p) {
    std::error_code ec;
    fs::path a = fs::absolute(p, ec);
    if (ec)
        a = p;
    a = a.lexically_normal();
    if (a.filename().empty() && a.has_relative_path())
        a = a.parent_path();
    return a;
}

// The forms a path is compared in: as written (made absolute) and with every symbolic link resolved.
std::vector<fs::path> pathForms(const std::string &p) {
    std::vector<fs::path> forms{absoluteNormal(p)};
    std::error_code ec;
    const fs::path c = fs::weakly_canonical(forms[0], ec);
    if (!ec && c != forms[0])
        forms.push_back(absoluteNormal(c));
    return forms;
}

// True when `inner` is `outer` or lies below it (both absolute and normal).
bool within(const fs::path &inner, const fs::path &outer) {
    auto o = outer.begin(), i = inner.begin();
    for (; o != outer.end(); ++o, ++i)
        if (i == inner.end() || *i != *o)
            return false;
    return true;
}

std::string writeHint(int err) {
    switch (err) {
    case ENOSPC: return "the disk is full: free some space or choose a folder on another disk";
    case EDQUOT: return "the disk quota is exhausted: free some space or choose a folder on another disk";
    case EFBIG: return "the file size limit was reached (ulimit -f)";
    case EROFS: return "the file system is read-only: choose another folder";
    case EACCES:
    case EPERM: return "check that the folder is writable";
    default: return {};
    }
}

bool processRunning(long pid) {
    if (pid <= 0)
        return true; // not a PID we wrote: leave it alone
    if (pid == long(::getpid()))
        return true;
    return ::kill(pid_t(pid), 0) == 0 || errno == EPERM;
}

// Parses `.NAME.TAG-PID-RANDOM`; false when `name` is not one of ours.
bool parseTemporary(const std::string &name, std::string &base, std::string &tag, long &pid) {
    if (name.size() < 2 || name[0] != '.')
        return false;
    for (const char *t : kTempTags) {
        const std::string key = std::string(".") + t + "-";
        const size_t at = name.rfind(key);
        if (at == std::string::npos || at < 2)
            continue;
        const std::string rest = name.substr(at + key.size());
        const size_t dash = rest.find('-');
        if (dash == 0 || dash == std::string::npos || dash + 1 == rest.size())
            continue;
        const std::string pidText = rest.substr(0, dash), randText = rest.substr(dash + 1);
        if (!std::all_of(pidText.begin(), pidText.end(), ::isdigit) ||
            !std::all_of(randText.begin(), randText.end(), ::isdigit) || pidText.size() > 9)
            continue;
        base = name.substr(1, at - 1);
        tag = t;
        pid = std::stol(pidText);
        return true;
    }
    return false;
}

} // namespace

const char *outputKindName(OutputKind kind) {
    switch (kind) {
    case OutputKind::ModelExport: return "model-export";
    case OutputKind::CompressionRun: return "compression-run";
    case OutputKind::TrainingRun: return "training-run";
    }
    return "?";
}

void writeOutputMarker(const fs::path &dir, OutputKind kind) {
    const nlohmann::json j = {{"writer", "lathe"},
                              {"kind", outputKindName(kind)},
                              {"note", "written by Lathe; lathe may replace this folder when asked to overwrite it"}};
    writeFileAtomic(dir / kOutputMarker, j.dump(2) + "\n");
}

std::optional<OutputKind> outputKindOf(const fs::path &dir) {
    std::error_code ec;
    const fs::path marker = dir / kOutputMarker;
    if (!fs::is_regular_file(fs::symlink_status(marker, ec)) || fs::file_size(marker, ec) > 4096)
        return std::nullopt;
    std::FILE *f = std::fopen(marker.c_str(), "rb");
    if (!f)
        return std::nullopt;
    std::string text(4096, '\0');
    text.resize(std::fread(text.data(), 1, text.size(), f));
    std::fclose(f);
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || j.value("writer", "") != "lathe")
        return std::nullopt;
    const std::string kind = j.value("kind", "");
    for (OutputKind k : {OutputKind::ModelExport, OutputKind::CompressionRun, OutputKind::TrainingRun})
        if (kind == outputKindName(k))
            return k;
    return std::nullopt;
}

void checkOutputFolder(const std::string &dir, OutputKind kind, bool overwrite, const std::vector<std::string> &inputs) {
    if (dir.empty())
        throw LatheError("no output folder given");
    const std::vector<fs::path> dirForms = pathForms(dir);
    for (const std::string &input : inputs) {
        if (input.empty())
            continue;
        for (const fs::path &d : dirForms)
            for (const fs::path &in : pathForms(input)) {
                if (within(in, d))
                    throw LatheError(dir + ": " + (in == d ? "is the input '" + input + "' itself"
                                                             : "contains the input '" + input + "'") +
                                         "; refusing to write there",
                                     "choose an output folder outside the folders of the model, tokenizer, texts "
                                     "and job spec");
                if (within(d, in))
                    throw LatheError(dir + ": lies inside the input '" + input + "'; refusing to write there",
                                     "choose an output folder outside the model's folder");
            }
    }
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(dirForms[0], ec);
    if (!fs::exists(st))
        return;
    if (fs::is_symlink(st))
        throw LatheError(dir + ": is a symbolic link", "give the folder it points to, or a new folder");
    if (!fs::is_directory(st))
        throw LatheError(dir + ": exists and is not a folder", "choose a new folder");
    if (fs::is_empty(dirForms[0], ec) && !ec)
        return;
    if (!overwrite)
        throw LatheError(dir + ": exists and is not empty",
                         "choose a new folder, or allow overwriting (--overwrite; output.overwrite in a job spec) to "
                         "replace a previous Lathe output there");
    const std::optional<OutputKind> found = outputKindOf(dirForms[0]);
    if (!found)
        throw LatheError(dir + ": exists and is not a folder Lathe wrote (no " + kOutputMarker +
                             " marker); refusing to replace it",
                         "choose a new folder, or remove this one yourself if you are sure it can go");
    if (*found != kind)
        throw LatheError(dir + ": is a Lathe " + outputKindName(*found) + " folder, not a " + outputKindName(kind) +
                             " folder; refusing to replace it",
                         "choose a new folder");
}

void checkOutputFile(const std::string &file, bool overwrite, const std::vector<std::string> &inputs,
                     const std::function<bool(const fs::path &)> &isOurs, const std::string &what) {
    if (file.empty())
        throw LatheError("no output file given");
    const std::vector<fs::path> forms = pathForms(file);
    for (const std::string &input : inputs) {
        if (input.empty())
            continue;
        for (const fs::path &f : forms)
            for (const fs::path &in : pathForms(input))
                if (within(f, in) && (f == in || fs::is_directory(in)))
                    throw LatheError(file + ": " + (f == in ? "is the input '" + input + "' itself"
                                                            : "lies inside the input '" + input + "'") +
                                         "; refusing to write there",
                                     "choose an output file outside the model's folder and apart from its files");
    }
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(forms[0], ec);
    if (!fs::exists(st))
        return;
    if (fs::is_symlink(st))
        throw LatheError(file + ": is a symbolic link", "give the file it points to, or a new file name");
    if (!fs::is_regular_file(st))
        throw LatheError(file + ": exists and is not a file", "choose a new file name");
    if (!overwrite)
        throw LatheError(file + ": exists", "choose a new file name, or allow overwriting (--overwrite) to replace a " +
                                                what + " Lathe wrote");
    if (!isOurs(forms[0]))
        throw LatheError(file + ": exists and is not a " + what + " Lathe wrote; refusing to replace it",
                         "choose a new file name, or remove this one yourself if you are sure it can go");
}

fs::path temporarySibling(const fs::path &dest, const char *tag) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    const fs::path d = absoluteNormal(dest);
    return d.parent_path() /
           ("." + d.filename().string() + "." + tag + "-" + std::to_string(::getpid()) + "-" +
            std::to_string(rng() % 1000000000ull));
}

std::vector<std::string> cleanStaleTemporaries(const fs::path &folder) {
    std::vector<std::string> said;
    std::error_code ec;
    std::vector<fs::path> stale;
    for (fs::directory_iterator it(folder.empty() ? fs::path(".") : folder, ec), end; !ec && it != end;
         it.increment(ec)) {
        std::string base, tag;
        long pid = 0;
        if (parseTemporary(it->path().filename().string(), base, tag, pid) && !processRunning(pid))
            stale.push_back(it->path());
    }
    for (const fs::path &p : stale) {
        std::string base, tag;
        long pid = 0;
        parseTemporary(p.filename().string(), base, tag, pid);
        const fs::path original = p.parent_path() / base;
        std::string line;
        if (tag == "lathe-old" && !fs::exists(fs::symlink_status(original, ec))) {
            fs::rename(p, original, ec);
            line = ec ? "could not restore " + original.string() + " from " + p.string() + ": " + ec.message()
                      : "restored " + original.string() + ", which an interrupted process (PID " +
                            std::to_string(pid) + ") had moved aside";
        } else {
            const uintmax_t n = fs::remove_all(p, ec);
            line = ec ? "could not remove the stale temporary " + p.string() + ": " + ec.message()
                      : "removed the stale temporary " + p.string() + " (" + std::to_string(n) +
                            " entries) left by an interrupted process (PID " + std::to_string(pid) + ")";
        }
        spdlog::warn("{}", line);
        said.push_back(std::move(line));
    }
    return said;
}

namespace {

std::string megabytes(uint64_t b) {
    char t[32];
    std::snprintf(t, sizeof t, "%.1f MB", double(b) / 1e6);
    return t;
}

} // namespace

void checkSpaceFor(const fs::path &file, uint64_t bytes) {
    const auto human = megabytes;
    rlimit lim{};
    if (::getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && bytes > lim.rlim_cur)
        throw LatheError(file.string() + ": needs up to " + human(bytes) + ", above the file size limit of " +
                             human(lim.rlim_cur),
                         writeHint(EFBIG));
    struct statvfs vfs {};
    if (::statvfs(absoluteNormal(file).parent_path().c_str(), &vfs) == 0) {
        const uint64_t avail = uint64_t(vfs.f_bavail) * uint64_t(vfs.f_frsize);
        if (bytes > avail)
            throw LatheError(file.string() + ": needs up to " + human(bytes) + " but the disk has " + human(avail) +
                                 " free",
                             writeHint(ENOSPC));
    }
}

void reserveSpace(const fs::path &file, uint64_t bytes) {
    checkSpaceFor(file, bytes);
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        throw LatheError(file.string() + ": cannot open: " + std::strerror(err), writeHint(err));
    }
    int err = 0;
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, off_t(bytes)) != 0)
        err = errno;
    ::close(fd);
    if (err == ENOSPC || err == EDQUOT || err == EFBIG)
        throw LatheError(file.string() + ": cannot reserve " + megabytes(bytes) + ": " + std::strerror(err),
                         writeHint(err));
    // Other failures (EOPNOTSUPP on file systems without fallocate) leave the free-space check above.
}

void fsyncFolder(const fs::path &dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

void installFolder(const fs::path &built, const fs::path &dest) {
    const fs::path parent = absoluteNormal(dest).parent_path();
    std::error_code ec;
    auto fail = [&](const std::string &what, int err) {
        throw LatheError(dest.string() + ": " + what + ": " + std::strerror(err), writeHint(err));
    };
    if (!fs::exists(fs::symlink_status(dest, ec))) {
        if (::rename(built.c_str(), dest.c_str()) != 0)
            fail("cannot move the new folder into place", errno);
        fsyncFolder(parent);
        return;
    }
#ifdef RENAME_EXCHANGE
    if (::renameat2(AT_FDCWD, built.c_str(), AT_FDCWD, dest.c_str(), RENAME_EXCHANGE) == 0) {
        fsyncFolder(parent);
        fs::remove_all(built, ec); // now the old folder
        if (ec)
            spdlog::warn("{}: the replaced folder was left at {}: {}", dest.string(), built.string(), ec.message());
        return;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        fail("cannot swap the new folder into place", errno);
#endif
    // No atomic exchange on this file system: move the old folder aside, then the new one in.
    const fs::path old = temporarySibling(dest, "lathe-old");
    if (::rename(dest.c_str(), old.c_str()) != 0)
        fail("cannot move the old folder aside", errno);
    if (::rename(built.c_str(), dest.c_str()) != 0) {
        const int err = errno;
        ::rename(old.c_str(), dest.c_str());
        fail("cannot move the new folder into place", err);
    }
    fsyncFolder(parent);
    fs::remove_all(old, ec);
    if (ec)
        spdlog::warn("{}: the replaced folder was left at {}: {}", dest.string(), old.string(), ec.message());
}

CheckedFile::CheckedFile(const fs::path &path, Mode mode) : m_path(path) {
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Append ? O_APPEND : O_TRUNC);
    m_fd = ::open(path.c_str(), flags, 0644);
    if (m_fd < 0) {
        const int err = errno;
        throw LatheError(path.string() + ": cannot create: " + std::strerror(err), writeHint(err));
    }
}

CheckedFile::~CheckedFile() {
    if (m_fd >= 0)
        ::close(m_fd);
}

void CheckedFile::write(const void *data, size_t n) {
    if (m_fd < 0)
        throw LatheError(m_path.string() + ": write after close");
    const auto *p = static_cast<const uint8_t *>(data);
    while (n > 0) {
        const ssize_t w = ::write(m_fd, p, std::min<size_t>(n, size_t(1) << 30));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            const int err = w < 0 ? errno : ENOSPC;
            throw LatheError(m_path.string() + ": write failed: " + std::strerror(err), writeHint(err));
        }
        p += w;
        n -= size_t(w);
    }
}

void CheckedFile::close() {
    if (m_fd < 0)
        return;
    const int fd = m_fd;
    m_fd = -1;
    if (::fsync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        throw LatheError(m_path.string() + ": cannot flush to disk: " + std::strerror(err), writeHint(err));
    }
    if (::close(fd) != 0) {
        const int err = errno;
        throw LatheError(m_path.string() + ": cannot close: " + std::strerror(err), writeHint(err));
    }
}

void writeFileAtomic(const fs::path &path, const std::string &text) {
    writeFileAtomic(path, [&](CheckedFile &f) { f.write(text); });
}

void writeFileAtomic(const fs::path &path, const std::function<void(CheckedFile &)> &write) {
    const fs::path tmp = temporarySibling(path, "lathe-tmp");
    try {
        CheckedFile f(tmp);
        write(f);
        f.close();
        installFile(tmp, path);
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
}

void installFile(const fs::path &tmp, const fs::path &dest) {
    if (::rename(tmp.c_str(), dest.c_str()) != 0) {
        const int err = errno;
        throw LatheError(dest.string() + ": cannot replace: " + std::strerror(err), writeHint(err));
    }
    fsyncFolder(absoluteNormal(dest).parent_path());
}

} // namespace lathe
