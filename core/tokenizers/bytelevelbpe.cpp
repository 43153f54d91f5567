#include "tokenizers/bytelevelbpe.h"

#include "base/error.h"

#include <algorithm>
#include <climits>

namespace lathe {

const char *ByteLevelBpeTokenizer::gpt2Pattern() {
    return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(Spec spec)
    : m_kind(std::move(spec.kind)), m_tokens(std::move(spec.tokens)), m_added(std::move(spec.addedTokens)),
      m_nfc(spec.nfc), m_ignoreMerges(spec.ignoreMerges), m_merges(spec.merges), m_preSteps(spec.preSteps) {
    m_vocab.reserve(m_tokens.size());
    for (size_t i = 0; i < m_tokens.size(); ++i)
        m_vocab.emplace(m_tokens[i], int32_t(i));
    m_mergeRank.reserve(spec.merges.size());
    for (size_t i = 0; i < spec.merges.size(); ++i)
        m_mergeRank.emplace(spec.merges[i].first + '\x01' + spec.merges[i].second, int32_t(i));
    for (const PreStep &s : spec.preSteps)
        m_steps.push_back(std::make_unique<unicode::RegexSplitter>(s.type == PreStep::Regex ? s.pattern : "\\p{N}"));
    std::stable_sort(m_added.begin(), m_added.end(),
                     [](const auto &a, const auto &b) { return a.first.size() > b.first.size(); });
    for (const auto &a : m_added) {
        if (!a.first.empty())
            m_addedFirstByte[static_cast<unsigned char>(a.first[0])] = true;
        m_addedById.emplace(a.second, a.first); // longest first wins, as the text scan does
    }
    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100 onwards.
    int next = 0;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + next++);
        unicode::appendUtf8(m_byteToUnicode[b], cp);
        m_unicodeToByte[cp] = uint8_t(b);
    }
}

std::string ByteLevelBpeTokenizer::piece(int32_t id) const {
    return id >= 0 && size_t(id) < m_tokens.size() ? m_tokens[size_t(id)] : std::string();
}

void ByteLevelBpeTokenizer::encodePiece(std::string_view piece, std::vector<int32_t> &out) const {
    std::string mapped;
    for (unsigned char c : piece)
        mapped += m_byteToUnicode[c];
    {
        std::lock_guard lock(m_cacheMutex);
        auto it = m_cache.find(mapped);
        if (it != m_cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    auto whole = m_ignoreMerges ? m_vocab.find(mapped) : m_vocab.end();
    if (whole != m_vocab.end()) {
        ids.push_back(whole->second);
    } else {
        // Symbols start as single (mapped) characters; merge the lowest-ranked adjacent pair until none applies.
        std::vector<std::string> sym;
        for (size_t i = 0; i < mapped.size();) {
            const int n = unicode::utf8Length(static_cast<unsigned char>(mapped[i]));
            sym.emplace_back(mapped.substr(i, size_t(n)));
            i += size_t(n);
        }
        while (sym.size() > 1) {
            int best = INT_MAX;
            size_t at = 0;
            for (size_t i = 0; i + 1 < sym.size(); ++i) {
                auto it = m_mergeRank.find(sym[i] + '\x01' + sym[i + 1]);
                if (it != m_mergeRank.end() && it->second < best) {
                    best = it->second;
                    at = i;
                }
            }
            if (best == INT_MAX)
                break;
            // Merge every occurrence of this pair, left to right, as HF does for one merge step.
            const std::string left = sym[at], right = sym[at + 1];
            std::vector<std::string> merged;
            for (size_t i = 0; i < sym.size(); ++i) {
                if (i + 1 < sym.size() && sym[i] == left && sym[i + 1] == right) {
                    merged.push_back(left + right);
                    ++i;
                } else {
                    merged.push_back(std::move(sym[i]));
                }
            }
            sym.swap(merged);
        }
        for (const std::string &s : sym) {
            auto it = m_vocab.find(s);
            if (it != m_vocab.end()) {
                ids.push_back(it->second);
            } else {
                // Not in the vocabulary (an incomplete vocabulary): fall back to its single characters.
                for (size_t i = 0; i < s.size();) {
                    const int n = unicode::utf8Length(static_cast<unsigned char>(s[i]));
                    auto c = m_vocab.find(s.substr(i, size_t(n)));
                    if (c != m_vocab.end())
                        ids.push_back(c->second);
                    i += size_t(n);
                }
            }
        }
    }
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard lock(m_cacheMutex);
    if (m_cache.size() > 200000)
        m_cache.clear();
    m_cache.emplace(std::move(mapped), std::move(ids));
}

std::vector<int32_t> ByteLevelBpeTokenizer::encode(std::string_view input) const {
    const std::string text = m_nfc ? unicode::nfc(input) : std::string(input);
    std::vector<int32_t> out;
    auto encodeSpan = [&](std::string_view span) {
        std::vector<std::string_view> pieces{span}, next;
        for (const auto &splitter : m_steps) {
            next.clear();
            for (std::string_view p : pieces)
                splitter->split(p, next);
            pieces.swap(next);
        }
        for (std::string_view p : pieces)
            if (!p.empty())
                encodePiece(p, out);
    };
    // Added tokens are found first, verbatim, leftmost and longest.
    size_t start = 0, pos = 0;
    while (pos < text.size()) {
        const std::pair<std::string, int32_t> *hit = nullptr;
        if (m_addedFirstByte[static_cast<unsigned char>(text[pos])])
            for (const auto &a : m_added)
            if (!a.first.empty() && text.compare(pos, a.first.size(), a.first) == 0) {
                hit = &a;
                break;
            }
        if (!hit) {
            ++pos;
            continue;
        }
        if (pos > start)
            encodeSpan(std::string_view(text).substr(start, pos - start));
        out.push_back(hit->second);
        pos += hit->first.size();
        start = pos;
    }
    if (start < text.size())
        encodeSpan(std::string_view(text).substr(start));
    return out;
}

std::string ByteLevelBpeTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (id < 0 || size_t(id) >= m_tokens.size())
            continue;
        if (auto added = m_addedById.find(id); added != m_addedById.end()) {
            out += added->second;
            continue;
        }
        for (uint32_t cp : unicode::decodeUtf8(m_tokens[size_t(id)])) {
            auto it = m_unicodeToByte.find(cp);
            if (it != m_unicodeToByte.end())
                out += char(it->second);
            else
                unicode::appendUtf8(out, cp);
        }
    }
    return out;
}

ByteLevelBpeTokenizer::Spec ByteLevelBpeTokenizer::spec() const {
    Spec s;
    s.kind = m_kind;
    s.tokens = m_tokens;
    s.merges = m_merges;
    s.preSteps = m_preSteps;
    s.addedTokens = m_added;
    s.nfc = m_nfc;
    s.ignoreMerges = m_ignoreMerges;
    return s;
}

// The pre-tokenizer of a GGUF byte-level vocabulary, by its tokenizer.ggml.pre name (llama.cpp's names).
void addGgufPreSteps(const std::string &pre, const std::string &file,
                     std::vector<ByteLevelBpeTokenizer::PreStep> &steps) {
    using Step = ByteLevelBpeTokenizer::PreStep;
    const std::string gpt2 = ByteLevelBpeTokenizer::gpt2Pattern();
    const std::string llama3 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    const std::string qwen2 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2") {
        steps.push_back({Step::Regex, gpt2});
    } else if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
        steps.push_back({Step::Digits, {}});
        steps.push_back({Step::Regex, gpt2});
    } else if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3") {
        steps.push_back({Step::Regex, llama3});
    } else if (pre == "qwen2") {
        steps.push_back({Step::Regex, qwen2});
    } else {
        throw LatheError(file + ": GGUF pre-tokenizer '" + pre + "' is not supported",
                         "supported tokenizer.ggml.pre values: default, gpt-2, smollm, llama-bpe, qwen2");
    }
}

} // namespace lathe
