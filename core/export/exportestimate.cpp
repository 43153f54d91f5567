#include "export/exportestimate.h"

#include "base/dtype.h"
#include "export/ggufwriter.h"
#include "export/sparsearchive.h"
#include "model/model.h"

namespace lathe {

std::vector<ExportSize> estimateExportSizes(const Model &model, const CompressionPlan &plan, bool ggufWritable) {
    uint64_t bf16 = 0, f32 = 0, q8 = 0, archive = 0;
    int64_t pruned = 0;
    for (const TensorInfo &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        const auto n = uint64_t(t.numel());
        // A float tensor takes the folder's type; an integer buffer-like tensor keeps its own (none in practice).
        const bool floats = dtypeInfo(t.dtype).floatConvertible;
        bf16 += floats ? n * 2 : t.nbytes;
        f32 += floats ? n * 4 : t.nbytes;
        q8 += dtypeBytes(ggufStorageType(t, DType::Q8_0), n).value_or(n * 2);
        if (isCompressionTarget(t)) {
            const int64_t rows = t.shape[0], cols = t.shape[1];
            const int64_t p = prunedCount(plan.pattern, rows, cols);
            pruned += p;
            if (p > 0)
                archive += archiveMatrixBytes(rows, cols, rows * cols - p, plan.pattern);
        }
    }
    const bool lowRank = plan.rankRatio > 0;
    const std::string zeros = lowRank ? "dense speed (L R + S merged)"
                              : pruned > 0 ? "dense speed (the zeros are multiplied)"
                                           : "dense speed";
    std::vector<ExportSize> out;
    out.push_back({"HF folder bf16", bf16, zeros});
    out.push_back({"HF folder f32", f32, zeros});
    if (ggufWritable)
        out.push_back({"GGUF q8_0", q8, zeros});
    if (pruned > 0 && !lowRank)
        out.push_back({"run.h5 archive", archive,
                       plan.pattern.isNm() && plan.pattern.n == 2 && plan.pattern.m == 4
                           ? "storage only (2:4 suits sparse tensor cores; no runtime here uses them)"
                           : "storage only (no runtime runs it)"});
    return out;
}

} // namespace lathe
