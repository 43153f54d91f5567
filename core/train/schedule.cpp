#include "train/schedule.h"

#include "base/error.h"

#include <algorithm>
#include <cmath>

namespace lathe::train {

LrShape parseLrShape(const std::string &name) {
    if (name == "constant")
        return LrShape::Constant;
    if (name == "linear")
        return LrShape::Linear;
    if (name == "cosine")
        return LrShape::Cosine;
    throw LatheError("unknown learning-rate schedule '" + name + "'", "use constant, linear or cosine");
}

const char *lrShapeName(LrShape s) {
    switch (s) {
    case LrShape::Constant: return "constant";
    case LrShape::Linear: return "linear";
    case LrShape::Cosine: return "cosine";
    }
    return "?";
}

double LrSchedule::at(int64_t step) const {
    if (warmup > 0 && step < warmup)
        return peak * double(step + 1) / double(warmup);
    if (shape == LrShape::Constant)
        return peak;
    const double span = double(std::max<int64_t>(1, total - warmup));
    const double progress = std::clamp(double(step - warmup) / span, 0.0, 1.0);
    const double floor = peak * minRatio;
    if (shape == LrShape::Linear)
        return peak - (peak - floor) * progress;
    return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

template <class T> double clipGradNorm(ParameterSet<T> &params, double maxNorm) {
    double sq = 0;
    for (const Parameter<T> &p : params.all())
        if (p.trainable())
            sq += double(p.grad.squaredNorm());
    const double norm = std::sqrt(sq);
    if (maxNorm > 0 && norm > maxNorm) {
        const T scale = T(maxNorm / (norm + 1e-6));
        for (Parameter<T> &p : params.all())
            if (p.trainable())
                p.grad *= scale;
    }
    return norm;
}

template double clipGradNorm<float>(ParameterSet<float> &, double);
template double clipGradNorm<double>(ParameterSet<double> &, double);

} // namespace lathe::train
