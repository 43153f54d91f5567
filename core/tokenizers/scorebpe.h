#pragma once

#include "tokenizers/tokenizer.h"

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lathe {

// SentencePiece-style BPE driven by piece scores, for vocabularies that come without a sentencepiece model:
// llama2.c's tokenizer.bin (tok512.bin) and GGUF "llama" vocabularies. Spaces become `spaceSymbol` (U+2581 for
// SentencePiece pieces, a plain space in llama2.c's export), a dummy prefix space is added, the text starts as one
// symbol per UTF-8 character (unknown characters fall back to <0xXX> byte pieces), and the adjacent pair whose
// concatenation is the highest-scoring piece is merged until none is left (ties: leftmost). O(n log n).
class ScoreBpeTokenizer : public Tokenizer {
public:
    struct Spec {
        std::string kind;
        std::vector<std::string> pieces;
        std::vector<float> scores;
        std::vector<int32_t> types; // GGUF token types (1 normal, 2 unknown, 3 control, 4 user, 6 byte); may be empty
        std::string spaceSymbol = "\xE2\x96\x81";
        bool addDummyPrefix = true;
        int32_t unk = 0;
    };
    explicit ScoreBpeTokenizer(Spec spec);

    std::string kind() const override { return m_spec.kind; }
    int64_t vocabSize() const override { return int64_t(m_spec.pieces.size()); }
    std::vector<int32_t> encode(std::string_view text) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string piece(int32_t id) const override;
    const Spec &spec() const { return m_spec; }
    // The byte of a "<0xXX>" byte-fallback piece, or -1.
    static int byteValue(const std::string &piece);

    // Reads llama2.c's tokenizer format: int32 max_token_length, then per piece float score, int32 length, bytes.
    static Spec readLlama2c(const std::string &path, int64_t vocabSize);

private:
    // BPE over one stretch of the (space-symbol) text that no merge can cross.
    void encodeSegment(std::string_view text, std::vector<int32_t> &out) const;

    Spec m_spec;
    std::unordered_map<std::string, int32_t> m_index;
    // Where encode() may cut the text into independent stretches without changing the result, found from the
    // vocabulary: before every space symbol when no mergeable piece has one past its first character, and around
    // every newline when no mergeable piece longer than one byte holds one. Bounds the memory of a long text to
    // that of its longest stretch (a 20 MB single-line text took 1 GB in one piece).
    bool m_cutBeforeSpace = false, m_isolateNewline = false;
    int32_t m_byteIds[256];
    // How decode() renders each id: a byte value (0..255), the piece's text, or nothing (control, unknown, BOS/EOS).
    static constexpr int16_t kText = 256, kSkip = -1;
    std::vector<int16_t> m_decodeAs;
};

} // namespace lathe
