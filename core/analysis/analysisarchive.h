#pragma once

#include "analysis/modelspectra.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lathe {

class Model;

// Analysis results of one model, cached in an HDF5 file so that reopening the model shows them at once. The file
// is keyed by the model's content hash (modelContentHash) and readable with h5py. Layout (version 1):
//
//   /                      attributes: format = "lathe-analysis", version = 1, model_hash (16 hex digits),
//                          model_path (where it was computed from)
//   /spectra/<key>         float64 [n]: singular values, descending. <key> is the tensor name
//                          ("model.layers.3.mlp.down_proj.weight"), "model.layers.3.qkv_stacked" or
//                          "<tensor>#head<h>". Attributes: rows, cols (int64), method ("gesdd", "gram-syevd",
//                          "randomized"), truncated (int8), error_bound, error_estimate, sigma_max, frobenius_sq, effective_rank,
//                          stable_rank, alpha, alpha_xmin, alpha_ks (float64), alpha_tail (int64), seconds (float64)
//   /input_norms/<tensor>  float32 [in]: ||X_j||_2 of each input feature over the calibration tokens (Wanda).
//                          Group attributes: tokens (int64), calibration (string: text, samples x length, seed)
//
// Files are written to a temporary name and renamed, so a crash never leaves a half-written archive.
struct AnalysisData {
    std::string modelHash;
    std::string modelPath;
    std::map<std::string, MatrixSpectrum> spectra;            // by key
    std::map<std::string, std::vector<float>> inputNorms;     // by tensor name
    int64_t inputNormTokens = 0;
    std::string calibration;                                  // how the norms were computed
};

bool analysisArchiveAvailable(); // the build has HDF5

// Where the archive of `model` lives. By default in the per-user cache, "$XDG_CACHE_HOME/lathe/analysis/<hash>.h5"
// (~/.cache/...), keyed by the model's content hash: nothing is written beside the user's model (a checkout, an
// exported folder, a package's files). With `besideModel` (the user's choice: `lathe-cli analyze --cache-beside`,
// the GUI's Analysis > Keep Analysis Beside the Model) beside it, "<file>.lathe.h5" for a single-file model or
// "<folder>/lathe-analysis.h5" for a folder, when that directory is writable; the per-user cache otherwise.
std::string analysisArchivePath(const Model &model, const std::string &modelHash, bool besideModel = false);

// Reads an archive. Returns false (and leaves `out` empty) when the file does not exist, is not an analysis
// archive or belongs to another model (a different hash); throws LatheError when it is damaged.
bool loadAnalysisArchive(const std::string &path, const std::string &expectedHash, AnalysisData &out);

// Writes `data` to `path` atomically. LatheError (with the path) on failure.
void saveAnalysisArchive(const std::string &path, const AnalysisData &data);

} // namespace lathe
