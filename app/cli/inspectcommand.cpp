#include "clioptions.h"
#include "enginesetup.h"

#include "analysis/modelsummary.h"
#include "base/error.h"
#include "io/modelloader.h"
#include "numeric/backend.h"
#include "numeric/blas.h"

#include <spdlog/spdlog.h>

#include <cstdio>

namespace lathe::cli {


int runInspect(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"device"}, {"json", "scan"});
    if (!o.ok() || o.positional().size() != 1) {
        std::fprintf(stderr, "usage: lathe-cli inspect MODEL [--json] [--scan] [--device auto|cpu|cuda[:N]]\n%s\n",
                     o.error().c_str());
        return 2;
    }
    auto model = openModel(o.positional()[0]);
    nlohmann::json scan;
    std::string device;
    if (o.flag("scan")) {
        std::string note;
        auto backend = createBackend(parseDevice(o.value("device")), &note);
        if (!note.empty())
            spdlog::info("{}", note);
        device = backend->name();
        scan = nlohmann::json::array();
        for (const auto &r : model->scanNonFinite(backend.get())) {
            spdlog::warn("{}: tensor '{}' has {} NaN and {} Inf values", model->sourcePath, r.tensor, r.nanCount, r.infCount);
            scan.push_back({{"tensor", r.tensor}, {"nan", r.nanCount}, {"inf", r.infCount}});
        }
    }
    nlohmann::json s = summarizeModel(*model);
    if (o.flag("scan"))
        s["scan"] = {{"device", device}, {"non_finite", scan}};
    if (o.flag("json")) {
        std::printf("%s\n", s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("%s", formatSummary(s).c_str());
        if (o.flag("scan"))
            std::printf("Weight scan    %s on %s\n",
                        scan.empty() ? "all values finite" : (std::to_string(scan.size()) + " tensor(s) with NaN/Inf").c_str(),
                        device.c_str());
    }
    return 0;
}

int runDevices(int, char **) {
    std::string note;
    auto backend = createBackend(DevicePreference::Auto, &note);
    const DeviceInfo d = backend->device();
    std::printf("backend  %s\ndevice   %s\n", backend->name().c_str(), d.label().c_str());
    if (d.totalMemory)
        std::printf("memory   %.1f GiB\ncompute  sm_%d%d\n", double(d.totalMemory) / (1 << 30), d.computeMajor,
                    d.computeMinor);
    std::string plugin;
    const bool cuda = gpuBackendCompiled(&plugin);
    std::printf("cuda     %s\n", (cuda ? "backend " + plugin : "no backend: " + plugin).c_str());
    // Every usable GPU, as --device and job specs name them.
    for (const DeviceInfo &g : gpuDevices())
        std::printf("gpu      %s, sm_%d%d\n", g.label().c_str(), g.computeMajor, g.computeMinor);
    const BlasInfo blas = blasInfo();
    std::printf("cpu blas %s (core %s, %d threads)\n", blas.library.c_str(), blas.coreType.c_str(), blas.threads);
    if (!blas.note.empty())
        std::printf("note     %s\n", blas.note.c_str());
    if (!note.empty())
        std::printf("note     %s\n", note.c_str());
    return 0;
}

} // namespace lathe::cli
