#pragma once

#include "base/progress.h"
#include "engine/blockhooks.h"
#include "model/tensorrole.h"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lathe {

class Model;
class Transformer;

// Calibration data for data-driven scores and methods (Wanda, SliceGPT): sequences of `seqLen` tokens cut from a
// text that is tokenized once.
struct CalibrationParams {
    int64_t samples = 128;
    int64_t seqLen = 2048;
    uint64_t seed = 42;
    bool gradients = false; // also the Taylor scores (a forward and backward per sequence)
};

struct CalibrationSet {
    std::vector<std::vector<int32_t>> sequences;
    std::vector<int64_t> windows; // per sequence, its window index w: tokens [w * seqLen, (w + 1) * seqLen) of the text
                                  // (makeCalibrationSet; empty in sets built by hand, e.g. bench's random tokens)
    int64_t seqLen = 0;
    int64_t textTokens = 0;
    std::string note; // set when the text allowed fewer sequences than asked
    // Host memory of one fp32 signal of width `width` over all sequences.
    uint64_t signalBytes(int64_t width) const { return uint64_t(sequences.size()) * uint64_t(seqLen) * uint64_t(width) * 4; }
};

// Non-overlapping windows of the token stream, `samples` of them picked at random (seeded) among the
// floor(tokens / seqLen) that fit; fewer, with a note, when the text is shorter. LatheError when not even one fits.
CalibrationSet makeCalibrationSet(const std::vector<int32_t> &tokens, const CalibrationParams &params);

// Per linear weight (by tensor name), the L2 norm over all calibration tokens of each input feature, from one
// dense forward pass per sequence: the inputs of q/k/v (or fused qkv), o, gate/up and down. Wanda's ||X_j||.
struct InputNorms {
    std::map<std::string, std::vector<float>> norms;
    int64_t tokens = 0;
    // Per block linear weight (Hugging Face layout, out x in), the mean over the same sequences of |dL/dW| of each
    // sequence's mean next-token loss, when they were asked for (train/taylor.h). The gradient importances of the
    // views follow from it: Taylor |W| ⊙ this, LoSparse |W - L R| ⊙ this (analysis/importance.h). Not kept in the
    // analysis archive.
    std::map<std::string, std::vector<float>> gradients;
};
InputNorms collectInputNorms(Transformer &engine, const Model &model, const CalibrationSet &set,
                             const ProgressCallback &progress = {});

// The hooked block signal whose rows are the inputs of a linear of this role (q/k/v/qkv: AttnInput, o:
// AttnContext, gate/up: MlpInput, down: MlpHidden); false for other roles.
bool linearInputSignal(TensorRole role, BlockSignal &signal);

// Sums over every row of x_j^2 (fp64) of the four linear-input signals, per block: the accumulator behind
// collectInputNorms and Wanda. Feed it with hooks() while running blocks; norms() gives ||X_j||_2.
class InputSquareSums {
public:
    explicit InputSquareSums(int layers) : m_sums(size_t(layers)) {}
    // Hooks that observe the four signals of any block; valid while this object lives.
    BlockHooks hooks();
    // sqrt of the sums of one signal of one block; empty when it was not observed. Phi-2's MLP reads the
    // attention's input, so MlpInput falls back to AttnInput.
    std::vector<float> norms(int layer, BlockSignal signal) const;
    void clearLayer(int layer);

private:
    std::vector<std::array<std::vector<double>, size_t(BlockSignal::Count)>> m_sums;
};

} // namespace lathe
