#include "analysis/analysisarchive.h"

#include "base/error.h"
#include "model/model.h"

#ifdef LATHE_HAVE_HDF5
#include "base/h5util.h"
#endif

#include <cstdlib>
#include <filesystem>
#include <unistd.h>


namespace fs = std::filesystem;

namespace lathe {

std::string analysisArchivePath(const Model &model, const std::string &modelHash, bool besideModel) {
    fs::path src(model.sourcePath);
    std::error_code ec;
    const bool folder = fs::is_directory(src, ec);
    const fs::path dir = folder ? src : src.parent_path();
    if (besideModel && !dir.empty() && ::access(dir.c_str(), W_OK) == 0)
        return (folder ? src / "lathe-analysis.h5" : fs::path(src.string() + ".lathe.h5")).string();
    const char *xdg = std::getenv("XDG_CACHE_HOME");
    const char *home = std::getenv("HOME");
    const fs::path cache = xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "/tmp") / ".cache";
    return (cache / "lathe" / "analysis" / (modelHash + ".h5")).string();
}

#ifdef LATHE_HAVE_HDF5

using namespace h5;

bool analysisArchiveAvailable() { return true; }

bool loadAnalysisArchive(const std::string &path, const std::string &expectedHash, AnalysisData &out) {
    out = AnalysisData{};
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        return false;
    H5::Exception::dontPrint();
    if (!LATHE_H5(path, H5::H5File::isHdf5(path)))
        return false;
    return LATHE_H5(path, [&] {
        H5::H5File file(path, H5F_ACC_RDONLY);
        H5::Group root = file.openGroup("/");
        if (readStringAttr(root, "format") != "lathe-analysis" || readStringAttr(root, "model_hash") != expectedHash)
            return false;
        AnalysisData d;
        d.modelHash = expectedHash;
        d.modelPath = readStringAttr(root, "model_path");
        if (file.nameExists("spectra")) {
            H5::Group g = file.openGroup("spectra");
            for (const std::string &key : children(g)) {
                H5::DataSet ds = g.openDataSet(key);
                MatrixSpectrum s;
                s.key = key;
                s.values = readVector<double>(ds, H5::PredType::NATIVE_DOUBLE);
                s.rows = readAttr<int64_t>(ds, "rows");
                s.cols = readAttr<int64_t>(ds, "cols");
                s.method = readStringAttr(ds, "method");
                s.truncated = readAttr<int8_t>(ds, "truncated") != 0;
                s.errorBound = readAttr<double>(ds, "error_bound");
                s.errorEstimate = readAttr<double>(ds, "error_estimate");
                s.seconds = readAttr<double>(ds, "seconds");
                s.stats.sigmaMax = readAttr<double>(ds, "sigma_max");
                s.stats.frobeniusSq = readAttr<double>(ds, "frobenius_sq");
                s.stats.effectiveRank = readAttr<double>(ds, "effective_rank");
                s.stats.stableRank = readAttr<double>(ds, "stable_rank");
                s.stats.alpha = readAttr<double>(ds, "alpha");
                s.stats.alphaXmin = readAttr<double>(ds, "alpha_xmin");
                s.stats.alphaKs = readAttr<double>(ds, "alpha_ks");
                s.stats.alphaTail = readAttr<int64_t>(ds, "alpha_tail");
                d.spectra[key] = std::move(s);
            }
        }
        if (file.nameExists("input_norms")) {
            H5::Group g = file.openGroup("input_norms");
            d.inputNormTokens = readAttr<int64_t>(g, "tokens");
            d.calibration = readStringAttr(g, "calibration");
            for (const std::string &key : children(g))
                d.inputNorms[key] = readVector<float>(g.openDataSet(key), H5::PredType::NATIVE_FLOAT);
        }
        out = std::move(d);
        return true;
    }());
}

void saveAnalysisArchive(const std::string &path, const AnalysisData &data) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    uint64_t bound = 4 * kObjectOverheadBound + data.modelPath.size() + data.calibration.size();
    for (const auto &[key, s] : data.spectra)
        bound += kObjectOverheadBound + key.size() + s.method.size() + s.values.size() * sizeof(double);
    for (const auto &[key, v] : data.inputNorms)
        bound += kObjectOverheadBound + key.size() + v.size() * sizeof(float);
    writeFileAtomically(path, "the archive may be damaged; delete it and it is recomputed", bound,
                        [&](H5::H5File &file) {
            H5::Group root = file.openGroup("/");
            writeStringAttr(root, "format", "lathe-analysis");
            writeAttr<int64_t>(root, "version", 1);
            writeStringAttr(root, "model_hash", data.modelHash);
            writeStringAttr(root, "model_path", data.modelPath);
            H5::Group spectra = file.createGroup("spectra");
            for (const auto &[key, s] : data.spectra) {
                writeVector(spectra, key, s.values, H5::PredType::NATIVE_DOUBLE);
                H5::DataSet ds = spectra.openDataSet(key);
                writeAttr<int64_t>(ds, "rows", s.rows);
                writeAttr<int64_t>(ds, "cols", s.cols);
                writeStringAttr(ds, "method", s.method);
                writeAttr<int8_t>(ds, "truncated", s.truncated ? 1 : 0);
                writeAttr<double>(ds, "error_bound", s.errorBound);
                writeAttr<double>(ds, "error_estimate", s.errorEstimate);
                writeAttr<double>(ds, "seconds", s.seconds);
                writeAttr<double>(ds, "sigma_max", s.stats.sigmaMax);
                writeAttr<double>(ds, "frobenius_sq", s.stats.frobeniusSq);
                writeAttr<double>(ds, "effective_rank", s.stats.effectiveRank);
                writeAttr<double>(ds, "stable_rank", s.stats.stableRank);
                writeAttr<double>(ds, "alpha", s.stats.alpha);
                writeAttr<double>(ds, "alpha_xmin", s.stats.alphaXmin);
                writeAttr<double>(ds, "alpha_ks", s.stats.alphaKs);
                writeAttr<int64_t>(ds, "alpha_tail", s.stats.alphaTail);
            }
            if (!data.inputNorms.empty()) {
                H5::Group norms = file.createGroup("input_norms");
                writeAttr<int64_t>(norms, "tokens", data.inputNormTokens);
                writeStringAttr(norms, "calibration", data.calibration);
                for (const auto &[key, v] : data.inputNorms)
                    writeVector(norms, key, v, H5::PredType::NATIVE_FLOAT);
            }
        });
}

#else

bool analysisArchiveAvailable() { return false; }

bool loadAnalysisArchive(const std::string &, const std::string &, AnalysisData &out) {
    out = AnalysisData{};
    return false;
}

void saveAnalysisArchive(const std::string &path, const AnalysisData &) {
    throw LatheError(path + ": this build has no HDF5 support", "build with libhdf5-dev installed");
}

#endif

} // namespace lathe
