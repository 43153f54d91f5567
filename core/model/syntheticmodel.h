#pragma once

#include "model/model.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace lathe {

// The shape of a Llama-family model, for benchmarks that need a real model's dimensions but not its weights (a
// Llama-2-7B-shaped pass on the GPU without a 13 GB download).
struct SyntheticShape {
    std::string name;
    int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kvHeads = 0, vocab = 0, maxPositions = 0;
    bool tiedEmbeddings = false;
};

// "llama2-7b", "llama2-13b", "llama3-8b", "smollm2-135m", "tiny" (a few MB, for tests); nullopt otherwise.
std::optional<SyntheticShape> syntheticShape(const std::string &name);
std::string syntheticShapeNames(); // "llama2-7b, llama2-13b, ..." for messages

// The Hugging Face Llama config of the shape (what makeSyntheticModel's model carries), without any weights.
ModelConfig syntheticConfig(const SyntheticShape &shape);

// A model held in memory with bf16 weights drawn uniformly from +-1/sqrt(fan-in) (embeddings +-1, norm weights 1)
// by a counter-based generator: the same seed gives the same weights whatever the thread count. Its sourcePath is
// "synthetic:<name>"; it has no tokenizer.
std::unique_ptr<Model> makeSyntheticModel(const SyntheticShape &shape, uint64_t seed = 42);

} // namespace lathe
