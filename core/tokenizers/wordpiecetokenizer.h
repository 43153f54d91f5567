#pragma once

#include "tokenizers/tokenizer.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace lathe {

// BERT's WordPiece: BasicTokenizer (clean control characters, space out CJK characters, lower-case and strip
// accents when uncased, split on whitespace and punctuation), then greedy longest-match-first sub-words with the
// "##" continuation prefix; a word that cannot be covered (or is over 100 characters) becomes [UNK].
class WordPieceTokenizer : public Tokenizer {
public:
    struct Spec {
        std::string kind;
        std::vector<std::string> vocab;
        bool lowercase = true;
        bool stripAccents = true;
        std::string prefix = "##";
        std::string unk = "[UNK]", cls = "[CLS]", sep = "[SEP]", mask = "[MASK]", pad = "[PAD]";
    };
    explicit WordPieceTokenizer(Spec spec);

    std::string kind() const override { return m_spec.kind; }
    int64_t vocabSize() const override { return int64_t(m_spec.vocab.size()); }
    std::vector<int32_t> encode(std::string_view text) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string piece(int32_t id) const override;

private:
    Spec m_spec;
    std::unordered_map<std::string, int32_t> m_index;
    int32_t m_unk = -1;
};

} // namespace lathe
