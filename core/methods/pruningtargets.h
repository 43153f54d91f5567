#pragma once

#include "analysis/sparsitymask.h"
#include "model/layerweights.h"
#include "model/tensorrole.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lathe {

class Model;

// Which matrices a pruning run touches and how hard: the block linears whose tensor name matches `targets` (a
// PCRE2 regular expression searched anywhere in the name, bounded in size and nesting: unicode::NamePattern), each
// pruned with `pattern`, and per-block overrides of the ratio for unstructured patterns.
struct PruningSelection {
    SparsityPattern pattern;
    std::string targets = ".*";
    std::map<int, double> layerRatio; // block -> ratio (unstructured patterns only)
};

// One linear of a block that a selection may prune. `part` names the slice of a fused q|k|v tensor ("q", "k",
// "v") or is empty.
struct PruningTarget {
    int layer = 0;
    std::string tensor; // the tensor it is stored in (what `targets` is matched against)
    std::string part;
    TensorRole role = TensorRole::Unknown;
    LinearWeights BlockWeights::*member = nullptr;
    int64_t rows = 0, cols = 0;
    std::string label() const { return part.empty() ? tensor : tensor + "[" + part + "]"; }
};

// Every block linear of `model` (q, k, v, o, gate, up, down), whether selected or not.
std::vector<PruningTarget> blockLinears(const Model &model);

// The targets the selection picks, with every check made before any work: a bad regex, a regex that matches no
// linear (the hint lists a few names), ratios outside [0, 1), N:M patterns that do not divide a row, per-layer
// entries for blocks the model does not have. LatheError with a hint.
std::vector<PruningTarget> selectTargets(const Model &model, const PruningSelection &selection);

// The pattern for one target: the selection's, with the block's ratio override.
SparsityPattern patternFor(const PruningSelection &selection, int layer);

// Parses per-layer ratios: a JSON array (one per block) or an object whose keys are "i" or "i-j" (inclusive).
std::map<int, double> parseLayerRatios(const nlohmann::json &j, int layers);

// Parses "unstructured", "per-row" or "N:M" (with the ratio for unstructured); LatheError with a hint.
SparsityPattern parsePattern(const std::string &text, double ratio);

// The outcome for one pruned matrix.
struct PrunedMatrix {
    std::string label;
    int layer = 0;
    LinearWeights BlockWeights::*member = nullptr; // where it lives in the block (to read the pruned weights back)
    int64_t rows = 0, cols = 0;
    int64_t pruned = 0;
    double weightError = 0;       // ||W - W_pruned||_F / ||W||_F
    std::vector<uint8_t> maskBits; // kept = 1, row-major, packed little-endian within each byte (numpy packbits
                                   // with bitorder="little")
};

struct PrunedLayer {
    int layer = 0;
    // ||Y_pruned - Y_dense||_F / ||Y_dense||_F of the block's output on the calibration data, both computed from
    // the same (already pruned upstream) input; NaN when the method ran without calibration data.
    double outputError = std::nan("");
    double seconds = 0;
};

struct PruningResult {
    SparsityPattern pattern; // as the method applied it (Wanda: unstructured becomes per row); per-layer ratios aside
    std::vector<PrunedMatrix> matrices;
    std::vector<PrunedLayer> layers;
    int64_t pruned = 0;        // entries zeroed
    int64_t targetEntries = 0; // entries of the matrices touched
    uint64_t calibrationBytes = 0;
    double seconds = 0;
};

// Zeroes the entries the mask prunes in `w` and reports them (`mask`: 1 = kept, one byte per entry).
PrunedMatrix applyMask(const PruningTarget &t, Mat &w, const std::vector<uint8_t> &mask);

std::vector<uint8_t> packBits(const std::vector<uint8_t> &mask);
std::vector<uint8_t> unpackBits(const std::vector<uint8_t> &bits, int64_t count);

} // namespace lathe
