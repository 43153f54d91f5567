#pragma once

#include "methods/pruningtargets.h"

#include <nlohmann/json.hpp>

#include <string>

namespace lathe {

class Model;

// The compact form of a pruned model's matrices in the HDF5 run archive (run.h5), next to the Hugging Face folder
// that holds the same weights with zeros in place. Layout (docs/compression.md):
//   /                     attrs: format "lathe-sparse", version 1, method, pattern, model
//   /matrices/<label>     group per pruned matrix; attrs rows, cols, layer, format ("csr" | "nm"), n, m
//     values              float32, the kept weights in row-major order
//     col_index, row_ptr  CSR: int32 column of each value, int64 offsets (rows + 1)
//     positions           N:M: uint8 position within its group of M of each value (M - N per group)
//     mask                uint8, the keep-mask packed 8 entries per byte, least significant bit first
// Written to a temporary file and renamed into place. LatheError (with file:line of the failing HDF5 call).
bool sparseArchiveAvailable(); // false when built without HDF5
void writeSparseArchive(const std::string &path, const Model &prunedModel, const PruningResult &result,
                        const nlohmann::json &attributes);

// The pruning result of a model whose pruned weights are stored as zeros (a fine-tuning method's export): every
// block linear whose tensor is in `tensors`, its mask = the nonzero entries, with `pattern` as the method applied
// it (weight errors are unknown: 0).
PruningResult pruningFromZeros(const Model &model, const std::vector<std::string> &tensors, const SparsityPattern &pattern);

// Reads one matrix back as dense (rows x cols, zeros where pruned): the check that the compact form is lossless.
std::vector<float> readSparseMatrix(const std::string &path, const std::string &label, int64_t &rows, int64_t &cols);

// Bytes of the compact form with `bytesPerValue` per kept weight (analysis/compressionestimate.h's
// compactMatrixBytes): CSR = values + 2-byte column index (4 above 65,535 columns) + 8 bytes per row; N:M = values
// + ceil(log2 M) bits per value.
uint64_t compactBytes(const PrunedMatrix &m, const SparsityPattern &pattern, int bytesPerValue);

// Bytes of one pruned matrix's datasets as the archive stores them (the layout above, without HDF5's own
// overhead): float32 values, int32 column indices and int64 row offsets (CSR) or uint8 positions (N:M), and the
// packed mask.
uint64_t archiveMatrixBytes(int64_t rows, int64_t cols, int64_t kept, const SparsityPattern &pattern);

} // namespace lathe
