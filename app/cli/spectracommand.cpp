// lathe-cli analyze (spectra and derived numbers of every weight matrix) and bench spectra.

#include "clioptions.h"
#include "enginesetup.h"
#include "numeric/backend.h"

#include "analysis/modelanalysis.h"
#include "analysis/modelspectra.h"
#include "base/error.h"
#include "base/parallel.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "numeric/blas.h"
#include "numeric/linalg.h"
#include "numeric/spectrum.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

namespace lathe::cli {

namespace {

// --device for the factorizations: the GPU backend (cuSOLVER) when one is asked for, else null (LAPACK on the
// CPU threads). LatheError for --device cuda without a usable GPU.
std::unique_ptr<ComputeBackend> solverDevice(const CliOptions &o) {
    if (!o.value("device") || *o.value("device") == "cpu")
        return nullptr;
    auto device = createBackend(parseDevice(o.value("device")));
    return device->name() == "cpu" ? nullptr : std::move(device);
}

std::string shapeKey(int64_t rows, int64_t cols) { return std::to_string(rows) + " x " + std::to_string(cols); }

} // namespace

int runBenchSpectra(int argc, char **argv) {
    CliOptions o(argc, argv, 3, {"model", "threads", "device"}, {"json", "no-baseline"});
    if (!o.ok() || !o.positional().empty() || !o.value("model")) {
        std::fprintf(stderr,
                     "usage: lathe-cli bench spectra --model MODEL [--threads T] [--device cpu|cuda[:N]] [--no-baseline]\n"
                     "                               [--json]\n"
                     "  full singular-value spectra of every weight matrix (the workbench's analysis), timed, next to\n"
                     "  the LAPACK baseline: one multi-threaded sgesdd per matrix, one matrix after another;\n"
                     "  --device cuda factorizes on the GPU (cuSOLVER sgesvd)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    auto model = openModel(*o.value("model"));
    const std::vector<SpectrumTarget> targets = weightTargets(*model);
    SpectraParams params;
    params.threads = int(o.integer("threads", 0, 0, 1024));
    const int threads = params.threads > 0 ? params.threads : hardwareThreads();
    const std::unique_ptr<ComputeBackend> device = solverDevice(o);
    params.device = device.get();

    // Weights are read (and dequantized) once before timing: both variants then time the factorizations and the
    // copies they need, not the page cache.
    for (const SpectrumTarget &t : targets)
        (void)loadTarget(*model, t);
    const double t0 = steadySeconds();
    const std::vector<MatrixSpectrum> ours = computeSpectra(*model, targets, params);
    const double oursTotal = steadySeconds() - t0;

    struct Group {
        int count = 0;
        double ours = 0, baseline = 0, maxRelDiff = 0;
    };
    std::map<std::pair<int64_t, int64_t>, Group> groups;
    double baselineTotal = 0;
    const bool baseline = !o.flag("no-baseline");
    setBlasThreads(threads);
    for (size_t i = 0; i < targets.size(); ++i) {
        Group &g = groups[{ours[i].rows, ours[i].cols}];
        ++g.count;
        g.ours += ours[i].seconds;
        if (!baseline)
            continue;
        const Mat m = loadTarget(*model, targets[i]);
        const double b0 = steadySeconds();
        const std::vector<double> sv = singularValues(m.data(), m.rows(), m.cols());
        const double dt = steadySeconds() - b0;
        g.baseline += dt;
        baselineTotal += dt;
        for (size_t k = 0; k < sv.size(); ++k)
            g.maxRelDiff = std::max(g.maxRelDiff, std::abs(sv[k] - ours[i].values[k]) / std::max(1e-30, sv.front()));
    }

    nlohmann::json rows = nlohmann::json::array();
    for (const auto &[shape, g] : groups)
        rows.push_back({{"shape", shapeKey(shape.first, shape.second)},
                        {"count", g.count},
                        {"ours_s_per_matrix", g.ours / g.count},
                        {"lapack_s_per_matrix", baseline ? nlohmann::json(g.baseline / g.count) : nlohmann::json()},
                        {"max_rel_diff", g.maxRelDiff}});
    const BlasInfo blas = blasInfo();
    nlohmann::json j = {{"bench", "spectra"},
                        {"model", model->sourcePath},
                        {"device", params.device ? params.device->device().name : std::string("cpu")},
                        {"matrices", targets.size()},
                        {"threads", threads},
                        {"lapack", lapackName()},
                        {"blas_core", blas.coreType},
                        {"total_s", oursTotal},
                        {"lapack_baseline_total_s", baseline ? nlohmann::json(baselineTotal) : nlohmann::json()},
                        {"speedup", baseline ? nlohmann::json(baselineTotal / oursTotal) : nlohmann::json()},
                        {"shapes", rows}};
    if (!o.flag("json")) {
        std::printf("spectra  %s: %zu matrices, %d threads, %s (core %s)\n", model->sourcePath.c_str(),
                    targets.size(), threads, lapackName().c_str(), blas.coreType.c_str());
        std::printf("%-16s %6s %18s %18s %12s\n", "shape", "count", "ours s/matrix*", "LAPACK s/matrix", "max |dσ|/σ1");
        for (const auto &[shape, g] : groups)
            std::printf("%-16s %6d %18.4f %18.4f %12.1e\n", shapeKey(shape.first, shape.second).c_str(), g.count,
                        g.ours / g.count, baseline ? g.baseline / g.count : NAN, g.maxRelDiff);
        if (params.device)
            std::printf("* on %s, one matrix at a time; the baseline runs each sgesdd on %d CPU threads\n",
                        params.device->device().name.c_str(), threads);
        else
            std::printf("* one thread per matrix, %d matrices at a time; the baseline runs each sgesdd on %d threads\n",
                        threads, threads);
        std::printf("%-24s %10.2f s\n", "all spectra (ours)", oursTotal);
        if (baseline)
            std::printf("%-24s %10.2f s  (%.2fx)\n", "LAPACK baseline", baselineTotal, baselineTotal / oursTotal);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

int runAnalyze(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "threads", "top-k", "rho", "heads", "archive", "device"},
                 {"json", "no-cache", "cache-beside", "stacked-qkv"});
    if (!o.ok() || !o.positional().empty() || !o.value("model")) {
        std::fprintf(stderr,
                     "usage: lathe-cli analyze --model MODEL [--top-k K] [--rho R] [--threads T] [--stacked-qkv]\n"
                     "                         [--heads TENSOR] [--no-cache | --cache-beside | --archive FILE.h5]\n"
                     "                         [--device cpu|cuda[:N]] [--json]\n"
                     "  singular-value spectra of every weight matrix and the numbers derived from them: effective\n"
                     "  rank, stable rank, power-law alpha, energy kept by the rank LoSparse picks for --rho (0.05);\n"
                     "  cached in an HDF5 archive in ~/.cache/lathe/analysis (--cache-beside: beside the model, where\n"
                     "  that folder is writable; --no-cache: neither read nor write one)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    auto model = openModel(*o.value("model"));
    std::vector<SpectrumTarget> targets;
    if (o.flag("stacked-qkv"))
        targets = stackedQkvTargets(*model);
    if (auto heads = o.value("heads")) {
        std::vector<SpectrumTarget> h = headTargets(*model, *heads);
        if (h.empty())
            throw LatheError("'" + *heads + "' is not a q, k, v or o weight of this model",
                             "give a tensor name as `lathe-cli inspect` lists it");
        targets.insert(targets.end(), h.begin(), h.end());
    }
    if (targets.empty())
        targets = weightTargets(*model);
    AnalyzeParams params;
    params.spectra.threads = int(o.integer("threads", 0, 0, 1024));
    params.spectra.topK = o.integer("top-k", 0, 0, INT32_MAX);
    const std::unique_ptr<ComputeBackend> device = solverDevice(o);
    params.spectra.device = device.get();
    params.useCache = !o.flag("no-cache");
    params.besideModel = o.flag("cache-beside");
    if (auto a = o.value("archive"))
        params.archivePath = *a;
    const double rho = o.number("rho", 0.05, 0.0, 1.0);
    const double t0 = steadySeconds();
    const AnalyzeResult r = analyzeModel(*model, targets, params);
    const double seconds = steadySeconds() - t0;

    nlohmann::json mats = nlohmann::json::array();
    for (const SpectrumTarget &t : targets) {
        const MatrixSpectrum &s = r.data.spectra.at(t.key);
        const int64_t rank = losparseRank(s.rows, s.cols, rho);
        auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
        mats.push_back({{"key", s.key}, {"rows", s.rows}, {"cols", s.cols}, {"method", s.method},
                        {"sigma_max", s.stats.sigmaMax}, {"effective_rank", s.stats.effectiveRank},
                        {"stable_rank", s.stats.stableRank}, {"alpha", num(s.stats.alpha)},
                        {"losparse_rank", rank}, {"energy_at_rank", energyKept(s.values, rank)},
                        {"truncated", s.truncated}, {"error_bound", s.errorBound}});
    }
    nlohmann::json j = {{"model", model->sourcePath}, {"model_hash", r.data.modelHash},
                        {"archive", params.useCache ? nlohmann::json(r.archivePath) : nlohmann::json()},
                        {"computed", r.computed}, {"cached", r.cached}, {"seconds", seconds}, {"rho", rho},
                        {"matrices", mats}};
    if (!r.cacheNote.empty())
        j["cache_note"] = r.cacheNote;
    if (o.flag("json")) {
        std::printf("%s\n", j.dump(1).c_str());
        return 0;
    }
    std::printf("%-44s %12s %10s %8s %8s %6s %6s %7s\n", "matrix", "shape", "sigma_max", "eff.rank", "st.rank",
                "alpha", "r(rho)", "energy");
    for (const auto &m : mats) {
        const std::string shape = shapeKey(m["rows"].get<int64_t>(), m["cols"].get<int64_t>());
        std::printf("%-44s %12s %10.4g %8.1f %8.2f %6s %6lld %6.1f%%\n", m["key"].get<std::string>().c_str(),
                    shape.c_str(), m["sigma_max"].get<double>(), m["effective_rank"].get<double>(),
                    m["stable_rank"].get<double>(),
                    m["alpha"].is_null() ? "-" : std::to_string(m["alpha"].get<double>()).substr(0, 5).c_str(),
                    (long long)m["losparse_rank"].get<int64_t>(), 100.0 * m["energy_at_rank"].get<double>());
    }
    std::printf("%zu matrices: %d computed, %d from the archive, %.2f s%s%s\n", targets.size(), r.computed, r.cached,
                seconds, params.useCache ? ("; archive " + r.archivePath).c_str() : "",
                r.cacheNote.empty() ? "" : ("\nnote: " + r.cacheNote).c_str());
    return 0;
}

} // namespace lathe::cli
