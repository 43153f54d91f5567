#include "train/adamw.h"

#include "base/error.h"
#include "base/parallel.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"

#include <cmath>
#include <type_traits>

namespace lathe::train {

template <class T> void AdamW<T>::step(ParameterSet<T> &params, double lr) {
    ParameterSet<T> &all = params.all();
    if (m_m.empty()) {
        m_m.resize(all.size());
        m_v.resize(all.size());
    }
    require(m_m.size() == all.size(), "AdamW", "the parameter set changed between steps");
    ++m_steps;
    const double c1 = 1.0 - std::pow(m_options.beta1, double(m_steps));
    const double c2 = 1.0 - std::pow(m_options.beta2, double(m_steps));
    const T b1 = T(m_options.beta1), b2 = T(m_options.beta2), stepSize = T(lr / c1), rootC2 = T(std::sqrt(c2)),
            eps = T(m_options.eps);
    for (size_t i = 0; i < all.size(); ++i) {
        Parameter<T> &p = all[i];
        if (!p.trainable())
            continue;
        Matrix<T> &m = m_m[i], &v = m_v[i];
        if (m.size() != p.value.size()) {
            m = Matrix<T>::Zero(p.value.rows(), p.value.cols());
            v = Matrix<T>::Zero(p.value.rows(), p.value.cols());
        }
        const bool decay = p.decay && p.value.cols() > 1 && p.value.rows() > 1; // 2-D weights only
        const T shrink = decay && m_options.weightDecay > 0 ? T(1.0 - lr * m_options.weightDecay) : T(1);
        // One pass over value, gradient and both moments, split over the cores: the update is memory-bound
        // (16 bytes read and 12 written per weight) once vectorized, which fp32 is by the CPU kernels.
        T *w = p.value.data(), *mm = m.data(), *vv = v.data();
        const T *g = p.grad.data();
        parallelFor(p.value.size(), 1 << 16, [&](int64_t begin, int64_t end) {
            if constexpr (std::is_same_v<T, float>) {
                cpu::cpuKernels().adamw(w + begin, mm + begin, vv + begin, g + begin, end - begin,
                                        {b1, b2, shrink, stepSize, rootC2, eps});
            } else {
                for (int64_t j = begin; j < end; ++j) {
                    const T gj = g[j];
                    mm[j] = b1 * mm[j] + (T(1) - b1) * gj;
                    vv[j] = b2 * vv[j] + (T(1) - b2) * (gj * gj);
                    w[j] = w[j] * shrink - stepSize * mm[j] / (std::sqrt(vv[j]) / rootC2 + eps);
                }
            }
        }, cpuWorkThreads());
    }
}

template <class T> uint64_t AdamW<T>::stateBytes() const {
    uint64_t n = 0;
    for (size_t i = 0; i < m_m.size(); ++i)
        n += uint64_t(m_m[i].size() + m_v[i].size()) * sizeof(T);
    return n;
}

template class AdamW<float>;
template class AdamW<double>;

} // namespace lathe::train
