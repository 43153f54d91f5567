#pragma once

#include "analysis/analysisarchive.h"
#include "base/progress.h"

#include <string>
#include <vector>

namespace lathe {

class Model;

// The analysis of a model as the workbench and `lathe-cli analyze` need it: spectra of the requested targets,
// served from the model's HDF5 archive when it already holds them, computed (and added to the archive) otherwise.
struct AnalyzeParams {
    SpectraParams spectra;
    bool useCache = true;   // read and update the archive
    std::string archivePath; // empty: analysisArchivePath(model, hash, besideModel)
    bool besideModel = false; // the archive beside the model instead of the per-user cache
};

struct AnalyzeResult {
    AnalysisData data;
    std::string archivePath;
    int computed = 0;       // spectra computed in this call
    int cached = 0;         // spectra read from the archive
    std::string cacheNote;  // why the archive was not used or not written, when so
};

// `targets` empty = weightTargets(model). Cached spectra count only when they were computed the same way (full
// vs. top-k). Progress and cancellation as computeSpectra; a cancelled run writes nothing.
AnalyzeResult analyzeModel(const Model &model, std::vector<SpectrumTarget> targets, const AnalyzeParams &params,
                           const ProgressCallback &progress = {});

// Rewrites the archive of `result` with its current data (after the caller added input norms or per-head spectra).
void updateAnalysisArchive(const AnalyzeResult &result);

} // namespace lathe
