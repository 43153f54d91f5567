#include "clioptions.h"

#include "base/error.h"
#include "numeric/backend.h"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace lathe::cli {

// Runs the GPU-vs-CPU checks of gpu/gpuselfcheck.h (the same list as the Qt test tst_gpu) and prints a table and a
// JSON line; exit status 1 when one fails. For machines without Qt, such as the lent GPU machine.
int runCheckGpu(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"source"}, {"json"});
    if (!o.ok() || !o.positional().empty()) {
        std::fprintf(stderr, "usage: lathe-cli check-gpu [--source DIR] [--json]\n"
                             "  compares every GPU path with its CPU reference on the repository's fixtures\n"
                             "  (DIR: the source tree, default the current folder)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    const auto checks = runGpuSelfChecks(o.value("source").value_or(".")); // the plugin's; LatheError without it
    nlohmann::json rows = nlohmann::json::array();
    int failed = 0;
    for (const auto &c : checks) {
        failed += !c.passed;
        rows.push_back({{"name", c.name}, {"passed", c.passed}, {"error", c.error}, {"tolerance", c.tolerance},
                        {"detail", c.detail}});
        if (!o.flag("json"))
            std::printf("%-28s %-4s error %-10.3g tolerance %-8.3g %s\n", c.name.c_str(), c.passed ? "ok" : "FAIL",
                        c.error, c.tolerance, c.detail.c_str());
    }
    std::printf("%s\n", nlohmann::json({{"check", "gpu"}, {"failed", failed}, {"checks", rows}}).dump().c_str());
    return failed ? 1 : 0;
}

} // namespace lathe::cli
