#include "clioptions.h"

#include "analysis/modelsummary.h"
#include "base/error.h"
#include "export/hfwriter.h"
#include "io/modelloader.h"

#include <cstdio>

namespace lathe::cli {

int runConvert(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"dtype", "shard-size"}, {"overwrite"});
    if (!o.ok() || o.positional().size() != 2) {
        std::fprintf(stderr,
                     "usage: lathe-cli convert MODEL OUT_DIR [--dtype f32|f16|bf16] [--shard-size BYTES] [--overwrite]\n%s\n",
                     o.error().c_str());
        return 2;
    }
    HfWriteOptions opts;
    if (auto d = o.value("dtype")) {
        opts.dtype = dtypeFromName(*d);
        if (!opts.dtype)
            throw LatheError("--dtype: unknown type '" + *d + "'", "use f32, f16 or bf16");
    }
    opts.maxShardBytes = uint64_t(o.integer("shard-size", int64_t(opts.maxShardBytes), 1024));
    opts.overwrite = o.flag("overwrite");
    auto model = openModel(o.positional()[0]);
    const HfWriteResult r = writeHfFolder(*model, o.positional()[1], opts, [](const Progress &p) {
        std::fprintf(stderr, "\r[%3.0f%%] %-70.70s", p.fraction * 100.0, p.stage.c_str());
        return true;
    });
    std::fprintf(stderr, "\n");
    std::printf("wrote %s: %zu files, %s of tensors\n", o.positional()[1].c_str(), r.files.size(),
                humanBytes(r.bytes).c_str());
    for (const auto &f : r.files)
        std::printf("  %s\n", f.c_str());
    return 0;
}

} // namespace lathe::cli
