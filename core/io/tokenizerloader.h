#pragma once

#include "tokenizers/tokenizer.h"

#include <memory>
#include <string>

namespace lathe {

class Model;

// The tokenizer a model came with (Model::tokenizer); LatheError with a hint when it has none or it is unusable.
std::unique_ptr<Tokenizer> loadTokenizer(const Model &model);
// A tokenizer from a file or folder: tokenizer.json, tokenizer.model, vocab.json (+ merges.txt beside it),
// vocab.txt (WordPiece), a llama2.c tokenizer .bin, a GGUF model's vocabulary, or a folder holding one of these.
std::unique_ptr<Tokenizer> loadTokenizerFile(const std::string &path);

} // namespace lathe
