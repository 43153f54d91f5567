#pragma once

#include "base/progress.h"

#include <map>
#include <string>
#include <vector>

namespace lathe {

class Model;
struct CalibrationSet;

namespace train {

// First-order Taylor importance (Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019;
// the "taylor" score of issue 18): per weight |W_ij · ∂L/∂W_ij| of the mean next-token loss of each calibration
// sequence, averaged over the sequences, for every block linear's weight (by tensor name, Hugging Face layout
// out x in). One forward and backward of the training engine (fp32, CPU) per sequence; cancellation between them.
std::map<std::string, std::vector<float>> collectTaylorScores(const Model &model, const CalibrationSet &set,
                                                              const ProgressCallback &progress = {});

} // namespace train
} // namespace lathe
