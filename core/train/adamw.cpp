#include "train/adamw.h"

#include "base/error.h"
#include "base/parallel.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>
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
        // Entries [at, at + n), those with keep[j] != 0 only when keep is given.
        const auto update = [&](int64_t at, int64_t n, const T *keep) {
            if constexpr (std::is_same_v<T, float>) {
                const cpu::AdamWConstants k{b1, b2, shrink, stepSize, rootC2, eps};
                if (keep)
                    cpu::cpuKernels().adamwMasked(w + at, mm + at, vv + at, g + at, keep, n, k);
                else
                    cpu::cpuKernels().adamw(w + at, mm + at, vv + at, g + at, n, k);
            } else {
                for (int64_t j = 0; j < n; ++j) {
                    if (keep && keep[j] == T(0))
                        continue;
                    const T gj = g[at + j];
                    T &mj = mm[at + j], &vj = vv[at + j];
                    mj = b1 * mj + (T(1) - b1) * gj;
                    vj = b2 * vj + (T(1) - b2) * (gj * gj);
                    w[at + j] = w[at + j] * shrink - stepSize * mj / (std::sqrt(vj) / rootC2 + eps);
                }
            }
        };
        if (p.activeRows.empty() && p.activeCols.empty()) {
            parallelFor(p.value.size(), 1 << 16, [&](int64_t begin, int64_t end) { update(begin, end - begin, nullptr); },
                        cpuWorkThreads());
        } else if (p.value.rows() == 1 || p.value.cols() == 1) {
            assert(p.activeCols.empty()); // a bias: activeRows lists its entries
            for (const int32_t j : p.activeRows)
                update(j, 1, nullptr);
        } else {
            // Only the active rows (row-major: each one contiguous), and in them only the active columns.
            const int64_t cols = p.value.cols();
            std::vector<T> keep;
            if (!p.activeCols.empty()) {
                keep.assign(size_t(cols), T(0));
                for (const int32_t c : p.activeCols)
                    keep[size_t(c)] = T(1);
            }
            const int64_t rows = p.activeRows.empty() ? p.value.rows() : int64_t(p.activeRows.size());
            parallelFor(rows, std::max<int64_t>(1, (1 << 16) / cols), [&](int64_t begin, int64_t end) {
                for (int64_t i = begin; i < end; ++i) {
                    const int64_t r = p.activeRows.empty() ? i : p.activeRows[size_t(i)];
                    update(r * cols, cols, keep.empty() ? nullptr : keep.data());
                }
            }, cpuWorkThreads());
        }
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
