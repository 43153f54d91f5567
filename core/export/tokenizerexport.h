#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace lathe {

class Model;

// Hugging Face tokenizer files for a model whose tokenizer has no such files of its own, so that transformers'
// AutoTokenizer loads an exported folder and encodes as Lathe does:
//  * a GGUF's byte-level BPE vocabulary ("gpt2") becomes tokenizer.json with a BPE model, the pre-tokenizer
//    llama.cpp's tokenizer.ggml.pre names, control tokens as special added tokens;
//  * a SentencePiece-style vocabulary (GGUF "llama", llama2.c's tokenizer.bin) becomes the tokenizer.json
//    transformers' own converters write for Llama tokenizers: Prepend/Replace "▁" normalizer, BPE with byte
//    fallback, merges from the piece scores (every split of a piece into two pieces, by the piece's score), and
//    the matching decoder. llama2.c's plain spaces and "\n<s>\n" names go back to "▁" and "<s>".
// Both add BOS through a template post-processor when the model adds it, and tokenizer_config.json
// (PreTrainedTokenizerFast, bos/eos, model_max_length, the chat template).
struct HfTokenizerFiles {
    std::vector<std::pair<std::string, std::string>> files; // (name, text); empty when not convertible
    std::string note; // why nothing was written
};
HfTokenizerFiles hfTokenizerFiles(const Model &model);

// The tokenizer.* metadata llama.cpp needs in a GGUF of `model`:
//  * a GGUF source's own tokenizer.* keys, unchanged;
//  * a byte-level BPE (tokenizer.json, vocab.json + merges.txt): model "gpt2", the tokenizer.ggml.pre name whose
//    pre-tokenizer equals the tokenizer's (refused when none does: llama.cpp would split text differently), the
//    merges, added tokens as control tokens;
//  * a SentencePiece-style vocabulary (llama2.c's tokenizer.bin, tokenizer.json of a Llama tokenizer,
//    tokenizer.model): model "llama" with the pieces in SentencePiece's spelling, scores and token types.
// The token list is padded to the model's vocabulary size with unused "[PADn]" entries, as llama.cpp's converter
// does. Values are JSON (strings, integers, floats, bools, arrays of them); the GGUF writer gives them llama.cpp's
// value types. `note` says why there are none.
struct GgufTokenizerMetadata {
    nlohmann::json keys = nlohmann::json::object();
    std::string note;
};
GgufTokenizerMetadata ggufTokenizerMetadata(const Model &model);

} // namespace lathe
