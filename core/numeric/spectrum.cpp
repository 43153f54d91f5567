#include "numeric/spectrum.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace lathe {

namespace {

// Power-law fit of the tail of `ev` (ascending, all > 0). For each candidate xmin = ev[i] (leaving at least
// kMinTail points) the MLE alpha and the KS distance are computed; the fit with the smallest distance wins.
// O(n^2) in the number of eigenvalues, which is at most the matrix's smaller side.
void fitPowerLaw(const std::vector<double> &ev, SpectrumStats &st) {
    const int64_t n = int64_t(ev.size());
    st.alpha = std::numeric_limits<double>::quiet_NaN();
    if (n < kMinTail)
        return;
    std::vector<double> logs(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        logs[size_t(i)] = std::log(ev[size_t(i)]);
    // suffix[i] = sum of logs[i..n)
    std::vector<double> suffix(size_t(n + 1), 0.0);
    for (int64_t i = n - 1; i >= 0; --i)
        suffix[size_t(i)] = suffix[size_t(i + 1)] + logs[size_t(i)];
    double bestKs = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i + kMinTail <= n; ++i) {
        if (i > 0 && ev[size_t(i)] == ev[size_t(i - 1)])
            continue; // same xmin as before
        const int64_t m = n - i;
        const double sumLog = suffix[size_t(i)] - double(m) * logs[size_t(i)];
        if (sumLog <= 0)
            continue; // all tail values equal: no fit
        const double alpha = 1.0 + double(m) / sumLog;
        // KS distance between the empirical CDF of the tail and 1 - (x/xmin)^(1-alpha), both sides of each step.
        double ks = 0;
        for (int64_t j = 0; j < m; ++j) {
            const double fit = 1.0 - std::exp((1.0 - alpha) * (logs[size_t(i + j)] - logs[size_t(i)]));
            ks = std::max({ks, std::abs(double(j + 1) / double(m) - fit), std::abs(double(j) / double(m) - fit)});
        }
        if (ks < bestKs) {
            bestKs = ks;
            st.alpha = alpha;
            st.alphaXmin = ev[size_t(i)];
            st.alphaKs = ks;
            st.alphaTail = m;
        }
    }
}

} // namespace

SpectrumStats spectrumStats(const std::vector<double> &sv) {
    SpectrumStats st;
    if (sv.empty())
        return st;
    st.sigmaMax = sv.front();
    double sum = 0;
    for (double s : sv) {
        st.frobeniusSq += s * s;
        sum += s;
    }
    if (sum > 0) {
        double entropy = 0;
        for (double s : sv) {
            const double p = s / sum;
            if (p > 0)
                entropy -= p * std::log(p);
        }
        st.effectiveRank = std::exp(entropy);
    }
    st.stableRank = st.sigmaMax > 0 ? st.frobeniusSq / (st.sigmaMax * st.sigmaMax) : 0;
    // Eigenvalues of W^T W, ascending, without the numerically zero ones of a rank-deficient matrix.
    std::vector<double> ev;
    ev.reserve(sv.size());
    const double floor = st.sigmaMax * st.sigmaMax * 1e-12;
    for (auto it = sv.rbegin(); it != sv.rend(); ++it)
        if (*it * *it > floor)
            ev.push_back(*it * *it);
    fitPowerLaw(ev, st);
    return st;
}

double energyKept(const std::vector<double> &sv, int64_t r) {
    double total = 0, kept = 0;
    for (size_t i = 0; i < sv.size(); ++i) {
        total += sv[i] * sv[i];
        if (int64_t(i) < r)
            kept += sv[i] * sv[i];
    }
    return total > 0 ? kept / total : 0.0;
}

std::vector<double> cumulativeEnergy(const std::vector<double> &sv) {
    std::vector<double> out(sv.size());
    double acc = 0;
    for (size_t i = 0; i < sv.size(); ++i)
        out[i] = acc += sv[i] * sv[i];
    if (acc > 0)
        for (double &v : out)
            v /= acc;
    return out;
}

int64_t rankForEnergy(const std::vector<double> &sv, double fraction) {
    const std::vector<double> cum = cumulativeEnergy(sv);
    for (size_t i = 0; i < cum.size(); ++i)
        if (cum[i] >= fraction)
            return int64_t(i + 1);
    return int64_t(cum.size());
}

int64_t losparseRank(int64_t rows, int64_t cols, double rho) {
    if (rows <= 0 || cols <= 0 || rho <= 0)
        return 0;
    const double r = std::ceil(rho * double(rows) * double(cols) / double(rows + cols) - 1e-9);
    return std::min<int64_t>(int64_t(r), std::min(rows, cols));
}

} // namespace lathe
