#pragma once

#include "export/hfwriter.h"
#include "train/causallm.h"

#include <string>

namespace lathe {

class Model;

// LoSparse's compact export (issue 18): a Hugging Face folder that transformers loads with trust_remote_code
// (resources/remote-code/modeling_lathe_losparse.py). Each LoSparse linear of `lm` is stored as lowrank_left
// (out x r), lowrank_right (r x in), sparse_rows (the kept rows of S, k x in) and sparse_index (their row numbers,
// int64) under its module path, in the (out x in) layout for every family; every other tensor is the trained
// value under its Hugging Face name. `model` is a fresh copy of the model `lm` was built from (config, tokenizer
// files; opened again for the export, never the source itself): its tensors are replaced. Per linear, the folder
// stores r (out + in) + k in values instead of out x in.
HfWriteResult exportLoSparseCompact(Model &model, const train::CausalLm<float> &lm, const std::string &dir,
                                    HfWriteOptions options, const ProgressCallback &progress = {});

} // namespace lathe
