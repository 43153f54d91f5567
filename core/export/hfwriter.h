#pragma once

#include "base/dtype.h"
#include "base/progress.h"
#include "io/safetensorsfile.h"
#include "model/model.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <utility>
#include <vector>
#include <string>

namespace lathe {

struct HfWriteOptions {
    // Storage type of the written tensors (F32, F16 or BF16). Unset: F32/F16/BF16 tensors keep their type and
    // quantized ones are written as F32.
    std::optional<DType> dtype;
    // Shards are cut once a file would exceed this many bytes (transformers' default is 5 GB); one file when the
    // whole model fits.
    uint64_t maxShardBytes = 5'000'000'000ull;
    bool overwrite = false; // replace an existing folder (never the model's own source)
    // Merged over config.json (RFC 7386 merge patch): auto_map and model_type of remote-code exports.
    nlohmann::json configPatch;
    // Further text files written into the folder before it is renamed into place (remote modelling code).
    std::vector<std::pair<std::string, std::string>> extraFiles;
};

struct HfWriteResult {
    std::vector<std::string> files; // relative names of what was written
    uint64_t bytes = 0;
};

// Writes `model` as a Hugging Face folder: config.json, model.safetensors (or model-0000i-of-0000n.safetensors +
// model.safetensors.index.json) and the tokenizer files the model came with. Everything is written into a
// temporary folder beside `dir`, fsync'ed, and renamed into place, so a crash or a cancel leaves either the old
// state or the complete new folder, never a half-written model. Throws LatheError (CancelledError on cancel).
HfWriteResult writeHfFolder(const Model &model, const std::string &dir, const HfWriteOptions &options = {},
                            const ProgressCallback &progress = {});

} // namespace lathe
