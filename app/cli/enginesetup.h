#pragma once

#include "engine/deviceforward.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "tokenizers/tokenizer.h"

#include <memory>
#include <optional>
#include <string>

namespace lathe::cli {

// --device: auto (default), cpu, cuda, cuda:N; LatheError naming the accepted forms.
DeviceChoice parseDevice(const std::optional<std::string> &v);

// The device a forward-pass command runs on: the CPU, or a GPU whose backend runs the forward pass. --device cuda[:N]
// needs a build with CUDA and that usable device (LatheError with the reason otherwise); auto takes GPU 0 when
// there is one and says which it chose.
std::unique_ptr<ComputeBackend> chooseForwardDevice(const std::optional<std::string> &device);
// --precision for the GPU pass: fp32, bf16 (default) or fp16.
DeviceForwardOptions forwardOptions(const std::optional<std::string> &precision);

// Opens MODEL and its tokenizer (or the one given with --tokenizer) and checks they fit together: a tokenizer with
// more tokens than the model's vocabulary is an error.
struct LoadedModel {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
};
LoadedModel openModelWithTokenizer(const std::string &path, const std::optional<std::string> &tokenizerPath);

} // namespace lathe::cli
