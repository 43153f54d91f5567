#include "analysis/modelanalysis.h"

#include "base/logging.h"
#include "model/contenthash.h"
#include "model/model.h"

#include <spdlog/spdlog.h>

namespace lathe {

AnalyzeResult analyzeModel(const Model &model, std::vector<SpectrumTarget> targets, const AnalyzeParams &params,
                           const ProgressCallback &progress) {
    if (targets.empty())
        targets = weightTargets(model);
    AnalyzeResult r;
    r.data.modelHash = modelContentHash(model);
    r.data.modelPath = model.sourcePath;
    r.archivePath = params.archivePath.empty() ? analysisArchivePath(model, r.data.modelHash, params.besideModel) : params.archivePath;
    if (params.useCache && analysisArchiveAvailable()) {
        try {
            AnalysisData cached;
            if (loadAnalysisArchive(r.archivePath, r.data.modelHash, cached))
                r.data = std::move(cached);
        } catch (const LatheError &e) {
            r.cacheNote = std::string("archive not read: ") + e.what();
            spdlog::warn("{}", r.cacheNote);
        }
    } else if (params.useCache) {
        r.cacheNote = "this build has no HDF5: results are not cached";
    }
    std::vector<SpectrumTarget> missing;
    const bool wantTopK = params.spectra.topK > 0;
    for (const SpectrumTarget &t : targets) {
        auto it = r.data.spectra.find(t.key);
        const bool usable = it != r.data.spectra.end() &&
                            (wantTopK ? int64_t(it->second.values.size()) >= params.spectra.topK : !it->second.truncated);
        if (usable)
            ++r.cached;
        else
            missing.push_back(t);
    }
    if (!missing.empty()) {
        std::vector<MatrixSpectrum> fresh = computeSpectra(model, missing, params.spectra, progress);
        for (MatrixSpectrum &s : fresh)
            r.data.spectra[s.key] = std::move(s);
        r.computed = int(missing.size());
        if (params.useCache && analysisArchiveAvailable()) {
            try {
                saveAnalysisArchive(r.archivePath, r.data);
            } catch (const LatheError &e) {
                r.cacheNote = std::string("archive not written: ") + e.what();
                spdlog::warn("{}", r.cacheNote);
            }
        }
    }
    reportProgress(progress, 1.0, "spectra: done");
    return r;
}

void updateAnalysisArchive(const AnalyzeResult &result) {
    if (analysisArchiveAvailable())
        saveAnalysisArchive(result.archivePath, result.data);
}

} // namespace lathe
