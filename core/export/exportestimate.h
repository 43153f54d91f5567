#pragma once

#include "analysis/compressionestimate.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class Model;

// What each export of a pruning plan takes on disk and what running it gives (issue 19 item 4: the workbench's
// after-compression summary), from the writers' own storage rules, before anything runs.
struct ExportSize {
    std::string format; // "HF folder bf16"
    uint64_t bytes = 0; // the tensors' data (the writers' headers, config and tokenizer files are not counted)
    std::string runs;   // what running it gives: "dense speed (the zeros are multiplied)"
};

// One row per export Lathe writes for `plan` on `model`:
//   - the Hugging Face folder in bf16 and f32, zeros in place (a low-rank part merged: W = L R + S);
//   - the GGUF in q8_0 for llama.cpp (ggufStorageType's types) when `ggufWritable`: ggufExportBlocker(model)
//     finds nothing. That check reads the tokenizer (10 ms for SmolLM2's), so it is the caller's, once per model,
//     not this function's, which the workbench calls at every move of a slider;
//   - with pruning and no low-rank part, the run archive's compact form (run.h5, archiveMatrixBytes; written
//     beside the folder).
// Pruned weights stored as zeros run at the dense model's speed (measured for transformers and llama.cpp:
// docs/results.md); no runtime runs the archive.
std::vector<ExportSize> estimateExportSizes(const Model &model, const CompressionPlan &plan, bool ggufWritable);

} // namespace lathe
