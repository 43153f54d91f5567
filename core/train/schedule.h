#pragma once

#include "train/causallm.h"

#include <cstdint>
#include <string>

namespace lathe::train {

// Learning-rate schedules (issue 17 item 5): a linear warmup from 0 over `warmup` steps, then constant, linear
// decay or cosine decay to minRatio x peak at step `total`. Steps count from 0.
enum class LrShape { Constant, Linear, Cosine };
LrShape parseLrShape(const std::string &name); // "constant", "linear", "cosine"; LatheError otherwise
const char *lrShapeName(LrShape s);

struct LrSchedule {
    double peak = 3e-4;
    LrShape shape = LrShape::Cosine;
    int64_t warmup = 0;
    int64_t total = 1;
    double minRatio = 0.1;
    double at(int64_t step) const;
};

// The L2 norm of every trainable gradient together; when above maxNorm (> 0), every gradient is scaled by
// maxNorm / norm (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
template <class T> double clipGradNorm(ParameterSet<T> &params, double maxNorm);

} // namespace lathe::train
