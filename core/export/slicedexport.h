#pragma once

#include "export/hfwriter.h"

#include <string>

namespace lathe {

class Model;


// Writes a SliceGPT-sliced model as a Hugging Face folder: the narrower matrices, the shortcut matrices and the
// untied head under the base family's tensor names, config.json with "lathe_slicing" (widths, norm divisor, which
// shortcuts and biases exist, the module names and the numbers the code needs), and the modelling code (auto_map ->
// LatheSlicedForCausalLM, one file for Llama-family, OPT, GPT-2 and Phi-2 blocks) so that
// AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) runs it, generate() included. RoPE goes in as
// Lathe's inverse frequencies, so every rope scaling Lathe runs loads the same way. Atomic like writeHfFolder.
// LatheError when `model` is not sliced.
HfWriteResult exportSlicedModel(const Model &model, const std::string &dir, HfWriteOptions options = {},
                                     const ProgressCallback &progress = {});

} // namespace lathe
