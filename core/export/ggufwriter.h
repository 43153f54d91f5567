#pragma once

#include "base/dtype.h"
#include "base/progress.h"
#include "model/model.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace lathe {

struct GgufWriteOptions {
    // Storage type of the 2-D weights: F32, F16 or Q8_0. 1-D tensors (norms, biases) are always F32, as llama.cpp's
    // converter writes them; a matrix whose rows are not a multiple of 32 cannot be Q8_0 and is written as F16.
    DType dtype = DType::F16;
    bool overwrite = false; // replace an existing file only when Lathe wrote it (never the model's own source)
    std::string name;       // general.name; empty: the source's name, else its file or folder name
    // Further string metadata under "lathe." (the method and spec of a compression run, say).
    std::vector<std::pair<std::string, std::string>> notes;
};

struct GgufWriteResult {
    std::string architecture;     // general.architecture written: "llama", "qwen2", "gpt2", "phi2"
    uint64_t bytes = 0;           // size of the file
    int64_t tensors = 0;
    std::vector<std::string> notes; // tensors kept at another type than asked, and why
};

// Why `model` cannot be written as a GGUF that llama.cpp runs, or nullopt when it can. Refused: sliced models
// (SliceGPT's residual widths differ from the embedding width and its residual connections carry shortcut
// matrices; llama.cpp's graphs have neither), OPT (no llama.cpp architecture), BERT (llama.cpp runs it as an
// embedding model only), Llama-layout models with partial rotary or a RoPE scaling other than linear, tensors
// outside the family's layout, and tokenizers without a llama.cpp form.
std::optional<std::string> ggufExportBlocker(const Model &model);

// Writes `model` as one GGUF v3 file at `path` in llama.cpp's layout: general.* and <arch>.* hyperparameters,
// the tokenizer.* vocabulary (export/tokenizerexport.h), llama.cpp's tensor names, the q/k rows of arch "llama"
// permuted to its interleaved RoPE order (the inverse of what the GGUF reader undoes), data 32-byte aligned.
// "lathe.writer" marks the file so that --overwrite may replace it later. The space is checked first and the
// file is written under a temporary name, fsync'ed and renamed, so a failure leaves the old state. Throws
// LatheError (the blocker's reason, a bad option, a refused path, a full disk), CancelledError on cancel.
GgufWriteResult writeGgufFile(const Model &model, const std::string &path, const GgufWriteOptions &options = {},
                              const ProgressCallback &progress = {});

// The type writeGgufFile stores tensor `t` as when asked for `requested` (GgufWriteOptions::dtype): 1-D tensors
// F32, a matrix F16 where Q8_0 is asked and its rows are not a multiple of 32, else `requested`.
DType ggufStorageType(const TensorInfo &t, DType requested);

// True when `path` is a GGUF file that Lathe wrote (its metadata has lathe.writer).
bool isLatheGguf(const std::string &path);

} // namespace lathe
