#include "clioptions.h"

#include "analysis/modelsummary.h"
#include "base/error.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"
#include "io/modelloader.h"

#include <cstdio>

namespace lathe::cli {

// `export` (and its older name `convert`): a model as a Hugging Face folder or a llama.cpp GGUF file.
int runConvert(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"format", "dtype", "shard-size"}, {"overwrite"});
    if (!o.ok() || o.positional().size() != 2) {
        std::fprintf(stderr,
                     "usage: lathe-cli export MODEL OUT [--format hf|gguf] [--dtype TYPE] [--shard-size BYTES] "
                     "[--overwrite]\n"
                     "  hf (the default unless OUT ends in .gguf): a folder; --dtype f32|f16|bf16 (default: as stored,\n"
                     "  quantized tensors as f32); gguf: one file for llama.cpp; --dtype f32|f16|q8_0 (default f16)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    const std::string out = o.positional()[1];
    const bool endsGguf = out.size() > 5 && out.substr(out.size() - 5) == ".gguf";
    const std::string format = o.value("format").value_or(endsGguf ? "gguf" : "hf");
    if (format != "hf" && format != "gguf")
        throw LatheError("--format: unknown format '" + format + "'", "use hf (a Hugging Face folder) or gguf");
    std::optional<DType> dtype;
    if (auto d = o.value("dtype")) {
        dtype = dtypeFromName(*d);
        if (!dtype)
            throw LatheError("--dtype: unknown type '" + *d + "'",
                             format == "gguf" ? "use f32, f16 or q8_0" : "use f32, f16 or bf16");
    }
    const auto bar = [](const Progress &p) {
        std::fprintf(stderr, "\r[%3.0f%%] %-70.70s", p.fraction * 100.0, p.stage.c_str());
        return true;
    };
    if (format == "gguf") {
        if (o.value("shard-size"))
            throw LatheError("--shard-size: a GGUF export is one file", "leave out --shard-size");
        GgufWriteOptions opts;
        opts.dtype = dtype.value_or(DType::F16);
        opts.overwrite = o.flag("overwrite");
        auto model = openModel(o.positional()[0]);
        const GgufWriteResult r = writeGgufFile(*model, out, opts, bar);
        std::fprintf(stderr, "\n");
        std::printf("wrote %s: GGUF (%s), %lld tensors, weights %s, %s\n", out.c_str(), r.architecture.c_str(),
                    (long long)r.tensors, dtypeName(opts.dtype), humanBytes(r.bytes).c_str());
        for (const auto &n : r.notes)
            std::printf("  note: %s\n", n.c_str());
        return 0;
    }
    HfWriteOptions opts;
    opts.dtype = dtype;
    opts.maxShardBytes = uint64_t(o.integer("shard-size", int64_t(opts.maxShardBytes), 1024));
    opts.overwrite = o.flag("overwrite");
    auto model = openModel(o.positional()[0]);
    const HfWriteResult r = writeHfFolder(*model, out, opts, bar);
    std::fprintf(stderr, "\n");
    std::printf("wrote %s: %zu files, %s of tensors\n", out.c_str(), r.files.size(), humanBytes(r.bytes).c_str());
    for (const auto &f : r.files)
        std::printf("  %s\n", f.c_str());
    return 0;
}

} // namespace lathe::cli
