#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lathe::unicode {

// Length in bytes of the UTF-8 sequence starting with `lead` (1 for invalid lead bytes, so that scanning always
// advances).
int utf8Length(unsigned char lead);
void appendUtf8(std::string &out, uint32_t codepoint);
// Decodes into code points; invalid bytes become U+FFFD.
std::vector<uint32_t> decodeUtf8(std::string_view s);

// Unicode properties and normalisation (utf8proc).
bool isWhitespace(uint32_t cp);   // Zs, \t \n \r
bool isControl(uint32_t cp);      // Cc/Cf other than \t \n \r
bool isPunctuation(uint32_t cp);  // ASCII symbols or any P* category, as BERT's BasicTokenizer
bool isCjk(uint32_t cp);
bool isMark(uint32_t cp);         // Mn
uint32_t toLower(uint32_t cp);
std::string nfc(std::string_view s);
std::string nfd(std::string_view s);

// A compiled PCRE2 pattern (UTF, Unicode properties) that splits text as Hugging Face's Split pre-tokenizer with
// behavior "Isolated": each match is a piece, and so is each stretch between matches.
class RegexSplitter {
public:
    explicit RegexSplitter(const std::string &pattern); // throws LatheError for invalid patterns
    ~RegexSplitter();
    RegexSplitter(const RegexSplitter &) = delete;
    RegexSplitter &operator=(const RegexSplitter &) = delete;
    void split(std::string_view text, std::vector<std::string_view> &pieces) const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// A compiled PCRE2 pattern searched anywhere in a short name (tensor names, as the pruning `targets`). Bounded so
// that a hostile pattern gets a LatheError instead of a stack overflow, a runaway match or a huge allocation: at
// most kMaxLength bytes, parentheses nested at most kMaxNesting deep, PCRE2's heap and match limits. PCRE2 matches
// without recursion on the machine stack. Built without PCRE2, only the match-all pattern ".*" is accepted.
class NamePattern {
public:
    static constexpr size_t kMaxLength = 1000;
    static constexpr uint32_t kMaxNesting = 32;
    explicit NamePattern(const std::string &pattern);
    ~NamePattern();
    NamePattern(const NamePattern &) = delete;
    NamePattern &operator=(const NamePattern &) = delete;
    // True when the pattern matches somewhere in `name`; LatheError when the match limit is hit.
    bool search(std::string_view name) const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace lathe::unicode
