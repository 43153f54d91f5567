#pragma once

#include "tokenizers/tokenizer.h"

#include <memory>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace lathe {

// A SentencePiece model (tokenizer.model of Llama-2, Mistral, T5...) through Google's sentencepiece library.
class SentencePieceTokenizer : public Tokenizer {
public:
    explicit SentencePieceTokenizer(const std::string &modelFile); // LatheError when unreadable
    ~SentencePieceTokenizer() override;

    std::string kind() const override { return "SentencePiece (tokenizer.model)"; }
    int64_t vocabSize() const override;
    std::vector<int32_t> encode(std::string_view text) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string piece(int32_t id) const override;

    static bool available(); // the build has the sentencepiece library
    // Every piece with its score and GGUF token type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    // 6 byte), by id.
    void vocabulary(std::vector<std::string> &pieces, std::vector<float> &scores, std::vector<int32_t> &types) const;

private:
    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_sp;
};

} // namespace lathe
