#include "train/adamw.h"

#include "base/error.h"

#include <cmath>

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
        if (decay && m_options.weightDecay > 0)
            p.value *= T(1.0 - lr * m_options.weightDecay);
        m = b1 * m + (T(1) - b1) * p.grad;
        v = b2 * v + (T(1) - b2) * p.grad.cwiseProduct(p.grad);
        p.value.array() -= stepSize * m.array() / (v.array().sqrt() / rootC2 + eps);
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
