#pragma once

#include <cmath>
#include <vector>

namespace lathe {

// Equal-width bins over [lo, hi]; values outside go to the end bins, NaN is skipped. centers[i] is bin i's middle.
struct Histogram {
    double lo = 0, hi = 1;
    std::vector<double> centers;
    std::vector<double> counts;
    double width() const { return centers.size() ? (hi - lo) / double(centers.size()) : 0; }
    double total() const {
        double t = 0;
        for (double c : counts)
            t += c;
        return t;
    }
};

template <class T> Histogram makeHistogram(const std::vector<T> &values, int bins, double lo, double hi) {
    Histogram h;
    h.lo = lo;
    h.hi = hi > lo ? hi : lo + 1;
    h.counts.assign(size_t(bins), 0.0);
    h.centers.resize(size_t(bins));
    const double w = (h.hi - h.lo) / bins;
    for (int i = 0; i < bins; ++i)
        h.centers[size_t(i)] = h.lo + (i + 0.5) * w;
    for (const T &v : values) {
        if (std::isnan(double(v)))
            continue;
        int b = int((double(v) - h.lo) / w);
        b = b < 0 ? 0 : b >= bins ? bins - 1 : b;
        h.counts[size_t(b)] += 1;
    }
    return h;
}

} // namespace lathe
