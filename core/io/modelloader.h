#pragma once

#include "model/model.h"
#include "model/modelcheck.h" // checkModelConsistency, used by every reader

#include <memory>
#include <string>

namespace lathe {

// Opens a model, choosing the reader from what `path` is: a folder (Hugging Face: config.json + safetensors), a
// .safetensors file inside such a folder, a GGUF file (by its magic), or a llama2.c .bin checkpoint. Reads headers
// only; weights stay on disk until Model::loadFloat(). Throws LatheError naming the file and the problem.
std::unique_ptr<Model> openModel(const std::string &path);

// The readers, one per file (hfloader.cpp, ggufloader.cpp, llama2cloader.cpp).
std::unique_ptr<Model> openHfFolder(const std::string &dir);
std::unique_ptr<Model> openGguf(const std::string &file);
std::unique_ptr<Model> openLlama2c(const std::string &file);

} // namespace lathe
