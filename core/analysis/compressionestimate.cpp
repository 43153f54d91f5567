#include "analysis/compressionestimate.h"

#include "model/model.h"
#include "numeric/spectrum.h"

#include <algorithm>
#include <cmath>

namespace lathe {

bool isCompressionTarget(const TensorInfo &t) {
    return t.layer >= 0 && !t.isBias && t.shape.size() == 2 && isLinearRole(t.role);
}

uint64_t compactMatrixBytes(int64_t rows, int64_t cols, int64_t kept, const SparsityPattern &pattern,
                            int bytesPerValue) {
    const auto bpv = uint64_t(bytesPerValue);
    if (pattern.isNm()) {
        const int bits = int(std::ceil(std::log2(double(std::max(2, pattern.m)))));
        return uint64_t(kept) * bpv + (uint64_t(kept) * uint64_t(bits) + 7) / 8;
    }
    const uint64_t index = cols > 65535 ? 4 : 2;
    return uint64_t(kept) * (bpv + index) + uint64_t(rows + 1) * 8;
}

CompressionEstimate estimateCompression(const Model &model, const CompressionPlan &plan) {
    CompressionEstimate e;
    const auto bpv = uint64_t(plan.bytesPerValue);
    for (const TensorInfo &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        const int64_t n = t.numel();
        e.paramsBefore += n;
        e.bytesBefore += uint64_t(n) * bpv;
        if (!isCompressionTarget(t)) {
            e.paramsAfter += n;
            e.bytesAfter += uint64_t(n) * bpv;
            e.bytesAfterDense += uint64_t(n) * bpv;
            continue;
        }
        ++e.targets;
        const int64_t rows = t.shape[0], cols = t.shape[1];
        const int64_t pruned = prunedCount(plan.pattern, rows, cols);
        const int64_t kept = n - pruned;
        const int64_t rank = plan.rankRatio > 0 ? losparseRank(rows, cols, plan.rankRatio) : 0;
        const int64_t lowRank = rank * (rows + cols);
        e.paramsAfter += kept + lowRank;
        e.bytesAfterDense += uint64_t(n + lowRank) * bpv;
        const uint64_t stored = pruned == 0 ? uint64_t(n) * bpv // an unpruned target stays dense
                                            : compactMatrixBytes(rows, cols, kept, plan.pattern, plan.bytesPerValue);
        e.bytesAfter += stored + uint64_t(lowRank) * bpv;
    }
    return e;
}

} // namespace lathe
