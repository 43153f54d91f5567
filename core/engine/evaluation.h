#pragma once

#include "base/progress.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class DeviceForward;
class Transformer;
class Tokenizer;

// The standard perplexity protocol of SliceGPT / SparseGPT / Wanda: the evaluation text tokenized once, cut into
// non-overlapping windows of `seqLen` tokens, the remainder dropped; within a window every token but the first is
// predicted from those before it; PPL = exp(mean NLL) over all predicted tokens.
struct PerplexityParams {
    int64_t seqLen = 2048;
    int64_t maxTokens = 0; // use at most this many tokens of the text (0 = all), rounded down to whole windows
};

struct PerplexityResult {
    double perplexity = 0;
    double meanNll = 0;         // nats per predicted token
    int64_t textTokens = 0;     // tokens in the whole text
    int64_t windows = 0;
    int64_t predictedTokens = 0; // windows x (seqLen - 1)
    double seconds = 0;
    double tokensPerSecond = 0;  // tokens run through the model (windows x seqLen) per second
};

// LatheError when the text is shorter than one window, the window is longer than the model allows, or the model
// produces non-finite logits (NaN weights). Progress per window; cancellation throws CancelledError.
PerplexityResult evaluatePerplexity(Transformer &model, const std::vector<int32_t> &tokens,
                                    const PerplexityParams &params, const ProgressCallback &progress = {});
// The same protocol on the GPU forward pass (core/deviceforward.h); `maxPositions` is the model's config value.
PerplexityResult evaluatePerplexity(DeviceForward &model, int64_t maxPositions, const std::vector<int32_t> &tokens,
                                    const PerplexityParams &params, const ProgressCallback &progress = {});

// The evaluation text of a line-per-row dataset file (WikiText-2's raw test split as 4,358 lines): rows are the
// lines, as the Hugging Face dataset holds them (a non-empty row keeps its "\n", an empty row is ""), joined with
// "\n\n" as the standard protocol does.
std::string joinDatasetRows(const std::string &fileText);

// The whole file as bytes; LatheError naming the file when it cannot be read.
std::string readTextFile(const std::string &path);

// Greedy decoding without sampling: appends up to `maxNew` tokens, stopping after `stopToken` (>= 0).
std::vector<int32_t> generateGreedy(Transformer &model, std::vector<int32_t> prompt, int64_t maxNew,
                                    int32_t stopToken = -1, const ProgressCallback &progress = {});

} // namespace lathe
