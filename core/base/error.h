#pragma once

#include <stdexcept>
#include <string>

namespace lathe {

// An expected failure the user must see: a bad file, an unsupported architecture, a missing shard, out of memory.
// `what()` names the thing and the problem; `hint()` says what the user can do about it (may be empty).
// Programmer errors use assert instead; this type is for input the program does not control.
class LatheError : public std::runtime_error {
public:
    explicit LatheError(const std::string &message, std::string hint = {})
        : std::runtime_error(message), m_hint(std::move(hint)) {}

    const std::string &hint() const { return m_hint; }

    // "message (hint: ...)" for one-line display in logs and the CLI.
    std::string fullMessage() const { return m_hint.empty() ? what() : std::string(what()) + " (hint: " + m_hint + ")"; }

private:
    std::string m_hint;
};

// Throws a LatheError prefixed with the file name when `ok` is false. Used by the readers so that every message
// names the file it is about.
inline void require(bool ok, const std::string &file, const std::string &problem, const std::string &hint = {}) {
    if (!ok)
        throw LatheError(file + ": " + problem, hint);
}

} // namespace lathe
