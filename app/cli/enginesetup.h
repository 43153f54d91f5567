#pragma once

#include "backend.h"
#include "model.h"
#include "tokenizer.h"

#include <memory>
#include <optional>
#include <string>

namespace lathe::cli {

DevicePreference parseDevice(const std::optional<std::string> &v);

// The device a forward-pass command runs on. The engine's forward pass runs on the CPU; --device cuda is refused
// with a clear message until the CUDA forward pass lands, and auto says which device it chose.
std::string chooseForwardDevice(const std::optional<std::string> &device);

// Opens MODEL and its tokenizer (or the one given with --tokenizer) and checks they fit together: a tokenizer with
// more tokens than the model's vocabulary is an error.
struct LoadedModel {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
};
LoadedModel openModelWithTokenizer(const std::string &path, const std::optional<std::string> &tokenizerPath);

} // namespace lathe::cli
