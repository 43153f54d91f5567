#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lathe {

class Model;

// Hugging Face tokenizer files for a model whose tokenizer has no such files of its own: a GGUF's embedded
// byte-level BPE vocabulary becomes tokenizer.json (BPE model, the pre-tokenizer llama.cpp's tokenizer.ggml.pre
// names, control tokens as special added tokens, BOS by a template post-processor when the GGUF adds it) and
// tokenizer_config.json (PreTrainedTokenizerFast, bos/eos, model_max_length, the chat template), so that
// transformers' AutoTokenizer loads an exported folder and encodes as Lathe does.
struct HfTokenizerFiles {
    std::vector<std::pair<std::string, std::string>> files; // (name, text); empty when not convertible
    std::string note; // why nothing was written (SentencePiece-style GGUF vocabularies, llama2.c tokenizers)
};
HfTokenizerFiles hfTokenizerFiles(const Model &model);

} // namespace lathe
