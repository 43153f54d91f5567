#include "tokenizers/wordpiecetokenizer.h"

#include "base/error.h"
#include "base/unicodetext.h"

namespace lathe {

WordPieceTokenizer::WordPieceTokenizer(Spec spec) : m_spec(std::move(spec)) {
    for (size_t i = 0; i < m_spec.vocab.size(); ++i)
        m_index.emplace(m_spec.vocab[i], int32_t(i));
    auto id = [&](const std::string &t) {
        auto it = m_index.find(t);
        return it == m_index.end() ? -1 : it->second;
    };
    m_unk = id(m_spec.unk);
    bos = id(m_spec.cls);
    eos = id(m_spec.sep);
    addBos = bos >= 0;
    addEos = eos >= 0;
    mask = id(m_spec.mask);
    pad = id(m_spec.pad);
}

std::string WordPieceTokenizer::piece(int32_t i) const {
    return i >= 0 && size_t(i) < m_spec.vocab.size() ? m_spec.vocab[size_t(i)] : std::string();
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view input) const {
    std::vector<int32_t> out;
    // Basic tokenization into words (code points), then WordPiece per word.
    std::vector<std::string> words;
    std::string cur;
    auto flush = [&] {
        if (!cur.empty())
            words.push_back(std::move(cur));
        cur.clear();
    };
    std::string text(input);
    if (m_spec.lowercase && m_spec.stripAccents)
        text = unicode::nfd(text);
    for (uint32_t cp : unicode::decodeUtf8(text)) {
        if (cp == 0 || cp == 0xFFFD || unicode::isControl(cp))
            continue;
        if (unicode::isWhitespace(cp)) {
            flush();
            continue;
        }
        if (m_spec.lowercase && m_spec.stripAccents && unicode::isMark(cp))
            continue;
        if (m_spec.lowercase)
            cp = unicode::toLower(cp);
        if (unicode::isPunctuation(cp) || unicode::isCjk(cp)) {
            flush();
            unicode::appendUtf8(cur, cp);
            flush();
            continue;
        }
        unicode::appendUtf8(cur, cp);
    }
    flush();
    for (const std::string &w : words) {
        const std::vector<uint32_t> cps = unicode::decodeUtf8(w);
        if (cps.size() > 100) {
            out.push_back(m_unk);
            continue;
        }
        // byte offsets of each code point
        std::vector<size_t> offs;
        for (size_t i = 0; i < w.size(); i += size_t(unicode::utf8Length(static_cast<unsigned char>(w[i]))))
            offs.push_back(i);
        offs.push_back(w.size());
        std::vector<int32_t> sub;
        size_t start = 0;
        bool bad = false;
        while (start < cps.size()) {
            size_t end = cps.size();
            int32_t found = -1;
            while (end > start) {
                std::string s = w.substr(offs[start], offs[end] - offs[start]);
                if (start > 0)
                    s = m_spec.prefix + s;
                auto it = m_index.find(s);
                if (it != m_index.end()) {
                    found = it->second;
                    break;
                }
                --end;
            }
            if (found < 0) {
                bad = true;
                break;
            }
            sub.push_back(found);
            start = end;
        }
        if (bad)
            out.push_back(m_unk);
        else
            out.insert(out.end(), sub.begin(), sub.end());
    }
    return out;
}

std::string WordPieceTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (id == bos || id == eos)
            continue;
        std::string p = piece(id);
        if (p.rfind(m_spec.prefix, 0) == 0) {
            out += p.substr(m_spec.prefix.size());
        } else {
            if (!out.empty())
                out += ' ';
            out += p;
        }
    }
    return out;
}

} // namespace lathe
