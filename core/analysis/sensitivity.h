#pragma once

#include "base/progress.h"
#include "model/tensorrole.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// Which layers can take more pruning, before choosing a plan (issue 19 item 2):
//  * sensitivity: the perplexity when only one part of the model is pruned at `ratio` (each block on its own, and
//    each kind of linear - q, k, v, o, gate, up, down - in every block at once), the rest dense;
//  * OWL outlier ratios (Yin et al. 2024, "Outlier Weighed Layerwise Sparsity"): per block, the share of its Wanda
//    scores |W_ij| * ||X_j|| (all its linears together) above `owlM` times their mean;
//  * per-block sparsities at a global target proposed from either (proposeLayerSparsity).
// Scores come from one dense calibration pass: pruning a single block leaves its inputs dense, so a block's result
// is exactly what Wanda gives when it prunes only that block. A kind spans every block: its scores are the dense
// pass's too, where Wanda proper recomputes each block's inputs after pruning the blocks before it (on the demo
// model, down_proj in every block: within 5% of Wanda's perplexity; tst_methods).
struct SensitivityParams {
    double ratio = 0.5;             // fraction pruned in the probed part
    bool wanda = true;              // Wanda scores (per output row) or magnitude (per matrix)
    int64_t calibrationWindows = 8; // of seqLen tokens, random (seed 42), for the input norms
    int64_t evalWindows = 4;        // the first windows of the text, for every perplexity
    int64_t seqLen = 256;
    double owlM = 5.0;
};

struct SensitivityUnit {
    std::string name;       // "block 3", "q_proj"
    int layer = -1;         // blocks: the block; kinds: -1
    TensorRole kind = TensorRole::Unknown; // kinds: the role; blocks: Unknown
    double perplexity = 0;  // with only this part pruned
    double outlierRatio = 0; // blocks: OWL's share of outlier scores (0..1); kinds: 0
    int64_t parameters = 0; // in the pruned matrices
};

struct SensitivityResult {
    double densePerplexity = 0;
    std::vector<SensitivityUnit> blocks, kinds;
    int64_t calibrationTokens = 0, evalTokens = 0;
    std::string note; // when the text allowed fewer windows than asked
    double seconds = 0;
};

// {"dense_perplexity", "eval_tokens", "calibration_tokens", "seconds", "note", "blocks": [{"block", "perplexity",
// "outlier_ratio", "parameters"}], "kinds": [{"kind", "perplexity", "parameters"}]} and back (a saved session, the
// CLI's --json); LatheError for a malformed object.
nlohmann::json sensitivityToJson(const SensitivityResult &r);
SensitivityResult sensitivityFromJson(const nlohmann::json &j);

// Runs the sweep on the model at `modelPath` (opened privately; the file is only read) with the token ids of a
// text (its first evalWindows windows are evaluated; calibration windows are drawn from all of it). LatheError
// when the text is too short, a bad parameter, a model without block linears; CancelledError on cancel.
SensitivityResult sensitivitySweep(const std::string &modelPath, const std::vector<int32_t> &ids,
                                   const SensitivityParams &params, const ProgressCallback &progress = {});

// Per-block sparsities whose mean is `target`, spread by `scores` (higher = more important: keep more) as OWL
// assigns them: scores scaled to [0, 2 lambda], each block's sparsity = target - (its scaled score - their mean),
// clamped to [0, 0.99]. Equal scores give `target` everywhere. LatheError for target outside [0, 1) or lambda < 0.
std::vector<double> proposeLayerSparsity(const std::vector<double> &scores, double target, double lambda);

// The scores proposeLayerSparsity takes from a sweep: OWL outlier ratios, or the sensitivities
// log(perplexity with the block pruned / dense perplexity).
std::vector<double> outlierScores(const SensitivityResult &r);
std::vector<double> sensitivityScores(const SensitivityResult &r);

} // namespace lathe
