#pragma once

#include "train/causallm.h"

#include <cstdint>
#include <vector>

namespace lathe::train {

// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) as torch.optim.AdamW computes it:
// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
// p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Weight decay applies to 2-D weights only (not to norm weights, biases or pruning scores: Parameter::decay), as is
// usual for transformers. A parameter that lists active rows or columns (Parameter::activeRows: a SAT step) is
// updated there only. The moments are kept in the parameters' type (fp32 when training), only for trainable parameters.
struct AdamWOptions {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.1;
};

template <class T> class AdamW {
public:
    explicit AdamW(const AdamWOptions &options = {}) : m_options(options) {}
    // One step at learning rate `lr` over every trainable parameter of `params` (whose gradients hold the step's
    // gradient). The parameter set must be the same at every step.
    void step(ParameterSet<T> &params, double lr);
    int64_t steps() const { return m_steps; }
    const AdamWOptions &options() const { return m_options; }
    // The moments per parameter (empty for frozen ones and before the first step) and the step count, which a
    // checkpoint saves and a resumed run restores.
    std::vector<Matrix<T>> &firstMoments() { return m_m; }
    std::vector<Matrix<T>> &secondMoments() { return m_v; }
    const std::vector<Matrix<T>> &firstMoments() const { return m_m; }
    const std::vector<Matrix<T>> &secondMoments() const { return m_v; }
    void setSteps(int64_t steps) { m_steps = steps; }
    uint64_t stateBytes() const; // both moments

private:
    AdamWOptions m_options;
    int64_t m_steps = 0;
    std::vector<Matrix<T>> m_m, m_v; // per parameter, empty for frozen ones
};

} // namespace lathe::train
