#pragma once

#include "base/progress.h"

#include <map>
#include <string>
#include <vector>

namespace lathe {

class Model;
struct CalibrationSet;

namespace train {

// The gradients behind the first-order importances of issue 18: per weight of every block linear (by tensor name,
// Hugging Face layout out x in) the mean over the calibration sequences of |∂L/∂W_ij|, L the sequence's mean
// next-token loss. Since the weights are fixed, the mean of |X ⊙ ∂L_k/∂W| over sequences k is |X| ⊙ this for any
// fixed X: the Taylor score (Molchanov et al., CVPR 2019) with X = W, LoSparse's |S ⊙ ∂L/∂S| with X = S = W - L R
// (∂L/∂S = ∂L/∂W). One forward and backward of the training engine (fp32, CPU) per sequence; cancellation
// between them.
std::map<std::string, std::vector<float>> collectGradientMagnitudes(const Model &model, const CalibrationSet &set,
                                                                    const ProgressCallback &progress = {});

} // namespace train
} // namespace lathe
