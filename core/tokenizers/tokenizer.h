#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lathe {

// Text <-> token ids. Implementations: byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM: tokenizer.json,
// vocab.json + merges.txt, GGUF "gpt2"), SentencePiece-style BPE by piece scores (llama2.c tokenizer.bin, GGUF
// "llama"), the sentencepiece library (tokenizer.model), and WordPiece (BERT). Thread-safe for concurrent encode.
class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    virtual std::string kind() const = 0; // "byte-level BPE (tokenizer.json)", ...
    virtual int64_t vocabSize() const = 0;
    // Ids of the text without the specials a model adds around it (BOS, [CLS]); special tokens written in the text
    // itself are recognised where the format says so (tokenizer.json added tokens, GGUF control tokens).
    virtual std::vector<int32_t> encode(std::string_view text) const = 0;
    virtual std::string decode(std::span<const int32_t> ids) const = 0;
    virtual std::string piece(int32_t id) const = 0; // the vocabulary entry as stored

    // encode() with the model's specials: BOS first when addBos, EOS last when addEos (BERT: [CLS] ... [SEP]).
    std::vector<int32_t> encodeForModel(std::string_view text) const;

    int32_t bos = -1, eos = -1;
    bool addBos = false, addEos = false;
    // BERT's [MASK] and [PAD] (masked-LM training); -1 where the vocabulary has none.
    int32_t mask = -1, pad = -1;
};

// Finding and reading tokenizers (files, a model's own): io/tokenizerloader.h.

} // namespace lathe
