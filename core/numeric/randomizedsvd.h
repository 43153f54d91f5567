#pragma once

#include "numeric/mat.h"

#include <cstdint>
#include <vector>

namespace lathe {

// Top-k singular values (and vectors) of a large matrix by randomized subspace iteration (Halko, Martinsson &
// Tropp 2011, Algorithm 4.4): Q = orth((A A^T)^q A Omega) with l = k + oversample Gaussian probes, then the SVD of
// the small B = Q^T A. Cost O(rows * cols * l * (2q + 2)) instead of a full SVD's O(rows * cols * min).
struct RandomizedSvdParams {
    int64_t rank = 64;         // k: values wanted
    int64_t oversample = 10;   // p: extra probes (Halko: 5-10 suffice)
    int powerIterations = 2;   // q: sharpens a slowly decaying spectrum
    uint64_t seed = 42;
    bool wantVectors = false;  // fill u and vt (else values only)
};

struct RandomizedSvdResult {
    std::vector<double> values; // the top k, descending
    Mat u;                      // rows x k (when asked)
    Mat vt;                     // k x cols (when asked)
    // A posteriori bound on ||A - Q Q^T A||_2 from 10 extra Gaussian probes (Halko eq. 4.3: holds with probability
    // >= 1 - 1e-10). By Weyl's inequality every returned value is within this distance of the true one, from
    // below. `relativeError` is the bound divided by the largest value.
    double errorBound = 0;
    double relativeError = 0;
    // ||A - Q Q^T A||_2 itself, estimated by 20 power iterations on that residual: a lower estimate of the distance
    // the bound caps, usually within a few percent of it, and much tighter than the bound. The workbench shows this.
    double errorEstimate = 0;
};

RandomizedSvdResult randomizedSvd(const Mat &a, const RandomizedSvdParams &params);

} // namespace lathe
