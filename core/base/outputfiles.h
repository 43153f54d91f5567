#pragma once

// Writing outputs without ever losing the user's files.
//
// Every folder Lathe writes (an exported model, a compression run folder) carries a marker file `.lathe-output`
// that names its kind. An existing folder is replaced only when the user allowed overwriting *and* it carries the
// marker of the same kind; a folder that is, contains or lies inside one of the job's inputs (the model, its
// tokenizer, the texts, the job spec) is never written at all. Files are written under a temporary name, every
// write checked, fsync'ed and only then renamed into place; folders are built beside their destination and swapped
// in with one atomic exchange, so a crash, a kill or a full disk leaves the old state or the complete new one.
// Temporaries are named `.NAME.lathe-tmp-PID-RANDOM` (`lathe-old` for a folder moved aside): those of processes
// that no longer run are removed by cleanStaleTemporaries at the next start.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

enum class OutputKind { ModelExport, CompressionRun, TrainingRun };

inline constexpr const char *kOutputMarker = ".lathe-output";
const char *outputKindName(OutputKind kind);

// Throws LatheError (naming the folder, with a hint) unless `dir` may receive an output of `kind`:
//   - it is none of `inputs`, does not lie inside one and contains none (compared both as written, made absolute,
//     and with symbolic links resolved; empty entries are ignored);
//   - it does not exist, is an empty folder, or (only with `overwrite`) is a folder carrying the marker of `kind`;
//   - it is not a symbolic link or a file.
void checkOutputFolder(const std::string &dir, OutputKind kind, bool overwrite, const std::vector<std::string> &inputs);

// The same for a single output file (a GGUF export): it is none of `inputs` and lies inside none of them, is not
// a symbolic link or a folder, and when it exists it is replaced only with `overwrite` and when `isOurs(file)`
// says Lathe wrote it. `what` names the kind of file in messages ("GGUF file").
void checkOutputFile(const std::string &file, bool overwrite, const std::vector<std::string> &inputs,
                     const std::function<bool(const std::filesystem::path &)> &isOurs, const std::string &what);

// Writes the marker of `kind` into the folder `dir`.
void writeOutputMarker(const std::filesystem::path &dir, OutputKind kind);
// The kind named by the marker in `dir`; nullopt when there is none or it cannot be read.
std::optional<OutputKind> outputKindOf(const std::filesystem::path &dir);

// `PARENT/.NAME.TAG-PID-RANDOM` beside `dest` (TAG is "lathe-tmp" or "lathe-old").
std::filesystem::path temporarySibling(const std::filesystem::path &dest, const char *tag);

// Removes the temporaries (`.NAME.lathe-tmp-PID-*`, `.NAME.lathe-old-PID-*`) that processes no longer running
// left in `folder`. A `lathe-old` folder whose NAME no longer exists (a kill between the two renames of a
// file system without atomic exchange) is renamed back to NAME instead. Returns one line per action, each also
// logged as a warning. Never throws: what cannot be removed is left and said.
std::vector<std::string> cleanStaleTemporaries(const std::filesystem::path &folder);

// Puts the complete folder `built` at `dest`: with one atomic exchange when `dest` exists (the old folder is
// removed afterwards), a plain rename otherwise; on file systems without renameat2(RENAME_EXCHANGE), `dest` is
// moved aside, `built` renamed into place and the old folder removed, restoring it if the second rename fails.
// The parent folder is fsync'ed. Throws LatheError; `built` is left for the caller to remove on failure.
void installFolder(const std::filesystem::path &built, const std::filesystem::path &dest);

// A file written with checked POSIX calls: every short write is retried, every failure (full disk, file size
// limit, I/O error) throws a LatheError naming the file with a hint. close() fsyncs. The destructor only closes.
class CheckedFile {
public:
    enum Mode { Truncate, Append };
    explicit CheckedFile(const std::filesystem::path &path, Mode mode = Truncate);
    ~CheckedFile();
    CheckedFile(const CheckedFile &) = delete;
    CheckedFile &operator=(const CheckedFile &) = delete;
    void write(const void *data, size_t n);
    void write(const std::string &s) { write(s.data(), s.size()); }
    void close(); // fsync + close; throws on failure
    const std::filesystem::path &path() const { return m_path; }

private:
    std::filesystem::path m_path;
    int m_fd = -1;
};

// Writes `text` to `path` so that readers see the old file or the complete new one: a temporary file beside it,
// every write checked, fsync, rename, fsync of the folder. On failure the temporary is removed, the old file is
// untouched and a LatheError is thrown.
void writeFileAtomic(const std::filesystem::path &path, const std::string &text);
// The same for content written in pieces by `write` into the temporary file (large binary files).
void writeFileAtomic(const std::filesystem::path &path, const std::function<void(CheckedFile &)> &write);

// Renames the complete, fsync'ed file `tmp` over `dest` and fsyncs the folder; LatheError naming `dest` on failure.
void installFile(const std::filesystem::path &tmp, const std::filesystem::path &dest);

// Refuses with a LatheError and a hint when `bytes` would not fit in a file at `file` (which need not exist yet):
// above the file size limit, or above the free space of its file system.
void checkSpaceFor(const std::filesystem::path &file, uint64_t bytes);

// Makes sure that `bytes` can be written to the existing file `file` from its start without running out of space
// (for writers that cannot recover from a failed write themselves: HDF5 1.10 crashes when it closes a file whose
// flush failed). Refuses as checkSpaceFor does, then allocates the blocks past the end of the file (fallocate with KEEP_SIZE) where the
// file system supports it, so that another process filling the disk meanwhile cannot make the writes fail.
void reserveSpace(const std::filesystem::path &file, uint64_t bytes);

// fsync of a folder (after a rename in it); failures are ignored (some file systems do not support it).
void fsyncFolder(const std::filesystem::path &dir);

} // namespace lathe
