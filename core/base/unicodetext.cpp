#include "base/unicodetext.h"

#include "base/error.h"

#ifdef LATHE_HAVE_UNICODE
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <mutex>

namespace lathe::unicode {

int utf8Length(unsigned char lead) {
    if (lead < 0x80)
        return 1;
    if ((lead >> 5) == 0x6)
        return 2;
    if ((lead >> 4) == 0xE)
        return 3;
    if ((lead >> 3) == 0x1E)
        return 4;
    return 1;
}

void appendUtf8(std::string &out, uint32_t cp) {
    utf8proc_uint8_t buf[4];
    const auto n = utf8proc_encode_char(utf8proc_int32_t(cp), buf);
    out.append(reinterpret_cast<const char *>(buf), size_t(n));
}

std::vector<uint32_t> decodeUtf8(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    auto p = reinterpret_cast<const utf8proc_uint8_t *>(s.data());
    utf8proc_ssize_t left = utf8proc_ssize_t(s.size());
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
        if (n <= 0) {
            cp = 0xFFFD;
            n = 1;
        }
        out.push_back(uint32_t(cp));
        p += n;
        left -= n;
    }
    return out;
}

bool isWhitespace(uint32_t cp) {
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r')
        return true;
    return utf8proc_category(utf8proc_int32_t(cp)) == UTF8PROC_CATEGORY_ZS;
}

bool isControl(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r')
        return false;
    const auto c = utf8proc_category(utf8proc_int32_t(cp));
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF;
}

bool isPunctuation(uint32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    const auto c = utf8proc_category(utf8proc_int32_t(cp));
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool isCjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool isMark(uint32_t cp) { return utf8proc_category(utf8proc_int32_t(cp)) == UTF8PROC_CATEGORY_MN; }

uint32_t toLower(uint32_t cp) { return uint32_t(utf8proc_tolower(utf8proc_int32_t(cp))); }

namespace {

std::string normalise(std::string_view s, utf8proc_option_t options) {
    utf8proc_uint8_t *out = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(s.data()), utf8proc_ssize_t(s.size()),
                                &out, utf8proc_option_t(options | UTF8PROC_STABLE));
    if (n < 0) // invalid UTF-8: leave the text as it is
        return std::string(s);
    std::string r(reinterpret_cast<const char *>(out), size_t(n));
    std::free(out);
    return r;
}

} // namespace

std::string nfc(std::string_view s) { return normalise(s, UTF8PROC_COMPOSE); }
std::string nfd(std::string_view s) { return normalise(s, UTF8PROC_DECOMPOSE); }

struct RegexSplitter::Impl {
    pcre2_code *code = nullptr;
};

RegexSplitter::RegexSplitter(const std::string &pattern) : m_impl(std::make_unique<Impl>()) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    m_impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
    if (!m_impl->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw LatheError("invalid pre-tokenizer pattern at offset " + std::to_string(offset) + ": " +
                         reinterpret_cast<const char *>(msg));
    }
    pcre2_jit_compile(m_impl->code, PCRE2_JIT_COMPLETE); // optional speed-up; falls back to the interpreter
}

RegexSplitter::~RegexSplitter() {
    if (m_impl && m_impl->code)
        pcre2_code_free(m_impl->code);
}

void RegexSplitter::split(std::string_view text, std::vector<std::string_view> &pieces) const {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(m_impl->code, nullptr);
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0, last = 0;
    while (pos <= text.size()) {
        const int rc = pcre2_match(m_impl->code, subject, text.size(), pos, 0, md, nullptr);
        if (rc < 0)
            break;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t b = ov[0], e = ov[1];
        if (e == b) { // empty match: step over one character
            pos = b + size_t(utf8Length(static_cast<unsigned char>(b < text.size() ? text[b] : 0)));
            if (b >= text.size())
                break;
            continue;
        }
        if (b > last)
            pieces.push_back(text.substr(last, b - last));
        pieces.push_back(text.substr(b, e - b));
        last = pos = e;
    }
    if (last < text.size())
        pieces.push_back(text.substr(last));
    pcre2_match_data_free(md);
}

struct NamePattern::Impl {
    std::string pattern;
    pcre2_code *code = nullptr;
    pcre2_match_context *match = nullptr;
};

NamePattern::NamePattern(const std::string &pattern) : m_impl(std::make_unique<Impl>()) {
    m_impl->pattern = pattern;
    if (pattern.size() > kMaxLength)
        throw LatheError("the pattern is " + std::to_string(pattern.size()) + " characters long, above the limit of " +
                             std::to_string(kMaxLength),
                         "tensor names are short: a pattern such as \"mlp|self_attn\" selects by part");
    pcre2_compile_context *cc = pcre2_compile_context_create(nullptr);
    pcre2_set_parens_nest_limit(cc, kMaxNesting);
    pcre2_set_max_pattern_length(cc, kMaxLength);
    int err = 0;
    PCRE2_SIZE offset = 0;
    m_impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                 PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &offset, cc);
    pcre2_compile_context_free(cc);
    if (!m_impl->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw LatheError("'" + pattern + "' is not a valid regular expression (at offset " + std::to_string(offset) +
                         ": " + reinterpret_cast<const char *>(msg) + ")");
    }
    m_impl->match = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(m_impl->match, 1000000);
    pcre2_set_depth_limit(m_impl->match, 10000);
    pcre2_set_heap_limit(m_impl->match, 64 * 1024); // KiB
}

NamePattern::~NamePattern() {
    if (m_impl) {
        pcre2_match_context_free(m_impl->match);
        pcre2_code_free(m_impl->code);
    }
}

bool NamePattern::search(std::string_view name) const {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(m_impl->code, nullptr);
    const int rc = pcre2_match(m_impl->code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0, md,
                               m_impl->match);
    pcre2_match_data_free(md);
    if (rc >= 0)
        return true;
    if (rc == PCRE2_ERROR_NOMATCH)
        return false;
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw LatheError("the pattern '" + m_impl->pattern + "' could not be matched against '" + std::string(name) +
                         "': " + reinterpret_cast<const char *>(msg),
                     "simplify the pattern");
}

} // namespace lathe::unicode

#else // built without PCRE2 / utf8proc (the engine-only build): tokenizers refuse to run

namespace lathe::unicode {

namespace {
[[noreturn]] void missing() {
    throw LatheError("this build of Lathe cannot tokenize text: it was built without PCRE2 and utf8proc",
                     "install libpcre2-dev and libutf8proc-dev and rebuild");
}
} // namespace

int utf8Length(unsigned char lead) {
    return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
}
void appendUtf8(std::string &, uint32_t) { missing(); }
std::vector<uint32_t> decodeUtf8(std::string_view) { missing(); }
bool isWhitespace(uint32_t) { missing(); }
bool isControl(uint32_t) { missing(); }
bool isPunctuation(uint32_t) { missing(); }
bool isCjk(uint32_t) { missing(); }
bool isMark(uint32_t) { missing(); }
uint32_t toLower(uint32_t) { missing(); }
std::string nfc(std::string_view) { missing(); }
std::string nfd(std::string_view) { missing(); }
struct RegexSplitter::Impl {};
RegexSplitter::RegexSplitter(const std::string &) { missing(); }
RegexSplitter::~RegexSplitter() = default;
void RegexSplitter::split(std::string_view, std::vector<std::string_view> &) const { missing(); }
struct NamePattern::Impl {};
NamePattern::NamePattern(const std::string &pattern) {
    if (pattern != ".*")
        throw LatheError("this build of Lathe matches no target pattern but \".*\": it was built without PCRE2",
                         "install libpcre2-dev and rebuild, or select every linear");
}
NamePattern::~NamePattern() = default;
bool NamePattern::search(std::string_view) const { return true; }

} // namespace lathe::unicode

#endif
