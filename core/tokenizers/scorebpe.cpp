#include "tokenizers/scorebpe.h"

#include "base/error.h"
#include "base/mappedfile.h"
#include "base/unicodetext.h"

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <iterator>
#include <queue>

namespace lathe {

namespace {

// BOS/EOS/UNK as SentencePiece and llama2.c's export spell them.
bool isSpecialName(const std::string &p) {
    return p == "<unk>" || p == "\n<s>\n" || p == "\n</s>\n" || p == "<s>" || p == "</s>";
}

} // namespace

int ScoreBpeTokenizer::byteValue(const std::string &p) {
    unsigned byte = 0;
    return p.size() == 6 && std::sscanf(p.c_str(), "<0x%02X>", &byte) == 1 ? int(byte) : -1;
}

ScoreBpeTokenizer::ScoreBpeTokenizer(Spec spec) : m_spec(std::move(spec)) {
    // Only normal and user-defined pieces can be produced by merging; byte, control and unknown pieces cannot
    // (the text "<0x41>" is not the byte piece <0x41>).
    std::fill(std::begin(m_byteIds), std::end(m_byteIds), -1);
    m_index.reserve(m_spec.pieces.size());
    m_decodeAs.resize(m_spec.pieces.size());
    for (size_t i = 0; i < m_spec.pieces.size(); ++i) {
        const std::string &p = m_spec.pieces[i];
        const int byte = byteValue(p);
        const int32_t type = m_spec.types.empty() ? 1 : m_spec.types[i];
        const bool mergeable = m_spec.types.empty() ? byte < 0 && !isSpecialName(p)
                                                    : !(type == 2 || type == 3 || type == 5 || type == 6);
        if (mergeable)
            m_index.emplace(p, int32_t(i)); // first wins for duplicates
        if (byte >= 0 && m_byteIds[byte] < 0) { // byte fallback takes the exact upper-case spelling only
            char canonical[8];
            std::snprintf(canonical, sizeof canonical, "<0x%02X>", unsigned(byte));
            if (p == canonical)
                m_byteIds[byte] = int32_t(i);
        }
        if (type == 2 || type == 3 || (byte < 0 && isSpecialName(p)))
            m_decodeAs[i] = kSkip;
        else
            m_decodeAs[i] = byte >= 0 ? int16_t(byte) : kText;
    }
    m_spec.scores.resize(m_spec.pieces.size(), 0.0f);
    m_cutBeforeSpace = !m_spec.spaceSymbol.empty();
    m_isolateNewline = true;
    for (const auto &[p, id] : m_index) {
        if (m_cutBeforeSpace && p.find(m_spec.spaceSymbol, 1) != std::string::npos)
            m_cutBeforeSpace = false;
        if (p.size() > 1 && p.find('\n') != std::string::npos)
            m_isolateNewline = false;
    }
}

std::string ScoreBpeTokenizer::piece(int32_t id) const {
    return id >= 0 && size_t(id) < m_spec.pieces.size() ? m_spec.pieces[size_t(id)] : std::string();
}

std::vector<int32_t> ScoreBpeTokenizer::encode(std::string_view input) const {
    std::vector<int32_t> out;
    if (input.empty())
        return out;
    std::string text = m_spec.addDummyPrefix ? m_spec.spaceSymbol : std::string();
    for (char c : input) {
        if (c == ' ')
            text += m_spec.spaceSymbol;
        else
            text += c;
    }
    const std::string_view all(text), space(m_spec.spaceSymbol);
    size_t from = 0;
    for (size_t i = 0; i < all.size(); ++i) {
        if (m_isolateNewline && all[i] == '\n') {
            encodeSegment(all.substr(from, i - from), out);
            encodeSegment(all.substr(i, 1), out);
            from = i + 1;
        } else if (m_cutBeforeSpace && i > from && all.compare(i, space.size(), space) == 0) {
            encodeSegment(all.substr(from, i - from), out);
            from = i;
        }
    }
    encodeSegment(all.substr(from), out);
    return out;
}

void ScoreBpeTokenizer::encodeSegment(std::string_view text, std::vector<int32_t> &out) const {
    if (text.empty())
        return;
    // Symbols: byte ranges [start, start+len) of `text` in a doubly linked list.
    struct Sym {
        int32_t prev, next;
        uint32_t start, len;
    };
    std::vector<Sym> sym;
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(size_t(unicode::utf8Length(static_cast<unsigned char>(text[i]))), text.size() - i);
        sym.push_back({int32_t(sym.size()) - 1, int32_t(sym.size()) + 1, uint32_t(i), uint32_t(n)});
        i += n;
    }
    sym.back().next = -1;
    struct Cand {
        float score;
        int32_t left;
        uint32_t len; // combined length when queued; stale if the symbols changed since
        bool operator<(const Cand &o) const { return score < o.score || (score == o.score && left > o.left); }
    };
    std::priority_queue<Cand> queue;
    auto lookup = [&](size_t start, size_t len) { return m_index.find(std::string(text.substr(start, len))); };
    auto consider = [&](int l) {
        if (l < 0 || sym[size_t(l)].next < 0)
            return;
        const Sym &a = sym[size_t(l)], &b = sym[size_t(a.next)];
        auto it = lookup(a.start, a.len + b.len);
        if (it != m_index.end())
            queue.push({m_spec.scores[size_t(it->second)], l, a.len + b.len});
    };
    for (int i = 0; i + 1 < int(sym.size()); ++i)
        consider(i);
    while (!queue.empty()) {
        const Cand c = queue.top();
        queue.pop();
        Sym &a = sym[size_t(c.left)];
        if (a.len == 0 || a.next < 0 || a.len + sym[size_t(a.next)].len != c.len)
            continue; // stale
        Sym &b = sym[size_t(a.next)];
        a.len += b.len;
        b.len = 0;
        a.next = b.next;
        if (a.next >= 0)
            sym[size_t(a.next)].prev = c.left;
        consider(a.prev);
        consider(c.left);
    }
    for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
        const Sym &s = sym[size_t(i)];
        auto it = lookup(s.start, s.len);
        if (it != m_index.end()) {
            out.push_back(it->second);
            continue;
        }
        for (size_t k = 0; k < s.len; ++k) {
            const int32_t id = m_byteIds[static_cast<unsigned char>(text[s.start + k])];
            out.push_back(id >= 0 ? id : m_spec.unk);
            if (id < 0)
                break; // one unknown per character, as SentencePiece without byte fallback
        }
    }
}

std::string ScoreBpeTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (id < 0 || size_t(id) >= m_spec.pieces.size())
            continue;
        const int16_t as = m_decodeAs[size_t(id)];
        if (as == kText)
            out += m_spec.pieces[size_t(id)];
        else if (as >= 0)
            out += char(as);
    }
    std::string text;
    for (size_t i = 0; i < out.size();) {
        if (out.compare(i, m_spec.spaceSymbol.size(), m_spec.spaceSymbol) == 0) {
            text += ' ';
            i += m_spec.spaceSymbol.size();
        } else {
            text += out[i++];
        }
    }
    if (m_spec.addDummyPrefix && !text.empty() && text[0] == ' ')
        text.erase(0, 1);
    return text;
}

ScoreBpeTokenizer::Spec ScoreBpeTokenizer::readLlama2c(const std::string &path, int64_t vocabSize) {
    auto file = MappedFile::open(path);
    const uint8_t *p = file->data();
    const uint64_t size = file->size();
    require(size >= 4, path, "llama2.c tokenizer is too short");
    Spec s;
    s.kind = "llama2.c tokenizer";
    s.spaceSymbol = " ";
    uint64_t at = 4;
    while (at < size && (vocabSize <= 0 || int64_t(s.pieces.size()) < vocabSize)) {
        require(at + 8 <= size, path, "llama2.c tokenizer is truncated at piece " + std::to_string(s.pieces.size()));
        float score;
        int32_t len;
        std::memcpy(&score, p + at, 4);
        std::memcpy(&len, p + at + 4, 4);
        at += 8;
        require(len >= 0 && uint64_t(len) <= size - at, path,
                "piece " + std::to_string(s.pieces.size()) + " has a bad length " + std::to_string(len));
        s.pieces.emplace_back(reinterpret_cast<const char *>(p + at), size_t(len));
        s.scores.push_back(score);
        at += uint64_t(len);
    }
    require(vocabSize <= 0 || int64_t(s.pieces.size()) == vocabSize, path,
            "has " + std::to_string(s.pieces.size()) + " pieces, the model's vocabulary has " +
                std::to_string(vocabSize),
            "the tokenizer does not belong to this model");
    s.unk = 0;
    return s;
}

} // namespace lathe
