#pragma once

#include "hfwriter.h"

#include <string>

namespace lathe {

class Model;

struct SlicedExportResult {
    HfWriteResult write;
    bool remoteCode = false; // the folder carries modelling code for transformers (trust_remote_code=True)
    std::string note;        // why not, when it does not
};

// Writes a SliceGPT-sliced model as a Hugging Face folder: the narrower matrices, the shortcut matrices and the
// untied head under the base family's tensor names, config.json with "lathe_slicing" (widths, norm divisor, which
// shortcuts and biases exist, the module names and the numbers the code needs), and the modelling code (auto_map ->
// LatheSlicedForCausalLM, one file for Llama-family, OPT, GPT-2 and Phi-2 blocks) so that
// AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) runs it. Models with a non-default RoPE scaling
// are written for Lathe only (the note says so). Atomic like writeHfFolder. LatheError when `model` is not sliced.
SlicedExportResult exportSlicedModel(const Model &model, const std::string &dir, HfWriteOptions options = {},
                                     const ProgressCallback &progress = {});

} // namespace lathe
