#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace lathe {

// Counter-based random numbers: value i of stream s is a pure function of (s, i), the same on every machine and
// standard library (std::normal_distribution is not), and any element can be drawn in any order or thread.

// SplitMix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mix.
inline uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 random bits: element i of `stream`.
inline double uniform01(uint64_t stream, uint64_t i) {
    return double(splitmix(stream ^ splitmix(i)) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal, element i of `stream` (Box-Muller on two uniforms of the stream).
inline double standardNormal(uint64_t stream, uint64_t i) {
    const double u1 = 1.0 - uniform01(stream, 2 * i), u2 = uniform01(stream, 2 * i + 1); // u1 in (0, 1]
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// The indices of the `keep` largest of `keys` (all when keep exceeds their number), sorted; ties go to the lower
// index.
template <class K> std::vector<int32_t> largestIndices(const std::vector<K> &keys, size_t keep) {
    std::vector<int32_t> idx(keys.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return keys[size_t(a)] > keys[size_t(b)]; });
    idx.resize(std::min(keep, idx.size()));
    std::sort(idx.begin(), idx.end());
    return idx;
}

// `keep` distinct indices of `weights` drawn without replacement, each draw with probability proportional to the
// weights not yet drawn (Gumbel top-k: the largest log w_j + G_j, G_j standard Gumbel from element j of `stream`),
// sorted. A weight <= 0 is drawn only once every positive one is (then lowest index first).
inline std::vector<int32_t> weightedSample(const std::vector<float> &weights, size_t keep, uint64_t stream) {
    std::vector<double> keys(weights.size());
    for (size_t j = 0; j < weights.size(); ++j) {
        const double u = std::max(uniform01(stream, j), 1e-300);
        keys[j] = weights[j] > 0 ? std::log(double(weights[j])) - std::log(-std::log(u))
                                 : -std::numeric_limits<double>::infinity();
    }
    return largestIndices(keys, keep);
}

} // namespace lathe
