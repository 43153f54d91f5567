#pragma once

#include "base/unicodetext.h"
#include "tokenizers/tokenizer.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace lathe {

// Byte-level BPE (GPT-2, OPT, Llama-3, Qwen2, SmolLM). Text is normalised (optionally NFC), split around added /
// special tokens, pre-tokenized by a sequence of steps (regex splits in "Isolated" mode, single digits), each
// piece's bytes are mapped to GPT-2's printable byte alphabet, then merged by merge rank (lowest first) and looked
// up in the vocabulary.
class ByteLevelBpeTokenizer : public Tokenizer {
public:
    struct PreStep {
        // Digits: every Unicode number character (\p{N}: Nd, Nl, No, e.g. "½", "٣", "Ⅻ") is a piece of its own,
        // as Hugging Face's Digits(individual_digits) (Rust's char::is_numeric) and llama.cpp's \p{N} split.
        enum Type { Regex, Digits } type = Regex;
        std::string pattern; // Regex
    };
    struct Spec {
        std::string kind;
        std::vector<std::string> tokens;                         // id -> byte-level token text
        std::vector<std::pair<std::string, std::string>> merges; // in rank order
        std::vector<PreStep> preSteps;
        std::vector<std::pair<std::string, int32_t>> addedTokens; // matched verbatim in the text, before splitting
        bool nfc = false;
        bool ignoreMerges = false; // a whole piece found in the vocabulary is taken as is (Llama-3)
    };
    explicit ByteLevelBpeTokenizer(Spec spec);

    // The GPT-2 pre-tokenizer pattern (ByteLevel with use_regex).
    static const char *gpt2Pattern();

    std::string kind() const override { return m_kind; }
    int64_t vocabSize() const override { return int64_t(m_tokens.size()); }
    std::vector<int32_t> encode(std::string_view text) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string piece(int32_t id) const override;
    // The specification it was built from (for writers that describe the tokenizer in another format).
    Spec spec() const;

private:
    void encodePiece(std::string_view piece, std::vector<int32_t> &out) const;

    std::string m_kind;
    std::vector<std::string> m_tokens;
    std::unordered_map<std::string, int32_t> m_vocab;
    std::unordered_map<std::string, int32_t> m_mergeRank; // "left\x01right" -> rank
    std::vector<std::unique_ptr<unicode::RegexSplitter>> m_steps; // one per pre-tokenizer step
    std::vector<std::pair<std::string, int32_t>> m_added; // longest first
    bool m_addedFirstByte[256] = {};
    std::unordered_map<int32_t, std::string> m_addedById; // decode() writes added tokens verbatim
    bool m_nfc = false;
    bool m_ignoreMerges = false;
    std::vector<std::pair<std::string, std::string>> m_merges; // for spec()
    std::vector<PreStep> m_preSteps;
    std::string m_byteToUnicode[256];
    std::unordered_map<uint32_t, uint8_t> m_unicodeToByte;
    mutable std::mutex m_cacheMutex;
    mutable std::unordered_map<std::string, std::vector<int32_t>> m_cache;
};

// llama.cpp's pre-tokenizer for a GGUF's tokenizer.ggml.pre ("gpt-2", "smollm", "llama-bpe", "qwen2", ...) as
// pre-tokenizer steps appended to `steps`; LatheError naming `file` for unknown values.
void addGgufPreSteps(const std::string &pre, const std::string &file, std::vector<ByteLevelBpeTokenizer::PreStep> &steps);

} // namespace lathe
