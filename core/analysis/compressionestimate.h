#pragma once

#include "analysis/sparsitymask.h"

#include <cstdint>

namespace lathe {

class Model;
struct TensorInfo;

// What a compression setting would make of a model, before running anything: the workbench's live "after
// compression" summary. Targets are the 2-D linear weights inside the blocks (q, k, v, o, gate, up, down);
// embeddings, norms, biases and the head are kept dense and counted as they are.
struct CompressionPlan {
    SparsityPattern pattern;  // entries pruned from each target (ratio 0: none)
    double rankRatio = 0;     // rho > 0: a low-rank part of rank losparseRank(rows, cols, rho) is added (LoSparse)
    int bytesPerValue = 2;    // storage of a kept value (bf16)
};

struct CompressionEstimate {
    int64_t targets = 0;           // matrices the plan touches
    int64_t paramsBefore = 0;      // every parameter of the model
    int64_t paramsAfter = 0;       // non-zero parameters plus low-rank factors
    uint64_t bytesBefore = 0;      // dense, bytesPerValue each
    // Compact storage of the targets: unstructured as CSR (values + a 16-bit column index, 32-bit above 65,535
    // columns, + one 64-bit row offset per row); N:M as kept values + ceil(log2 M) bits of position per kept value
    // (NVIDIA's 2:4 layout uses 2); low-rank factors dense. Other tensors dense.
    uint64_t bytesAfter = 0;
    uint64_t bytesAfterDense = 0;  // the same model with zeros in place (an ordinary HF folder)
};

bool isCompressionTarget(const TensorInfo &t);

// Bytes of a pruned (rows x cols) matrix keeping `kept` values in the ideal compact form with `bytesPerValue` per
// value: CSR = values + a 2-byte column index (4 above 65,535 columns) + 8 bytes per row offset; N:M = values +
// ceil(log2 M) bits of position per value.
uint64_t compactMatrixBytes(int64_t rows, int64_t cols, int64_t kept, const SparsityPattern &pattern,
                            int bytesPerValue);

CompressionEstimate estimateCompression(const Model &model, const CompressionPlan &plan);

} // namespace lathe
