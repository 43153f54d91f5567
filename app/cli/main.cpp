// lathe-cli: the headless front end of the Lathe engine.

#include "base/memory.h"
#include "clioptions.h"

#include "base/error.h"
#include "base/logging.h"
#include "numeric/backend.h"
#include "numeric/blas.h"


#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: lathe-cli COMMAND [options]\n\n"
                 "commands:\n"
                 "  inspect MODEL [--json] [--scan] [--device auto|cpu|cuda[:N]]\n"
                 "      architecture, parameters by role and layer, dtypes, file size, memory to load;\n"
                 "      --scan reads every weight and reports NaN/Inf values\n"
                 "  export MODEL OUT [--format hf|gguf] [--dtype TYPE] [--shard-size BYTES] [--overwrite]\n"
                 "      writes MODEL as a Hugging Face folder (safetensors + config.json; --dtype f32|f16|bf16) or,\n"
                 "      for OUT ending in .gguf or --format gguf, as one GGUF file llama.cpp runs (--dtype\n"
                 "      f32|f16|q8_0, default f16), atomically; `convert` is the same command\n"
                 "  eval --model MODEL --text FILE [--seq-len N] [--max-tokens K] [--device auto|cpu|cuda[:N]]\n"
                 "       [--precision bf16|fp16|fp32] [--json]\n"
                 "      perplexity by the standard protocol (non-overlapping windows, PPL = exp(mean NLL))\n"
                 "  generate --model MODEL [--prompt TEXT] [--max-new N] [--json]\n"
                 "      greedy continuation of a prompt\n"
                 "  tokenize (--model MODEL | --tokenizer FILE) (--text FILE | --string S) [--rows] [--json]\n"
                 "      token ids of a text with the model's tokenizer\n"
                 "  analyze --model MODEL [--top-k K] [--rho R] [--stacked-qkv] [--heads TENSOR] [--no-cache]\n"
                 "          [--cache-beside] [--json]\n"
                 "      singular-value spectra of every weight matrix, effective/stable rank, power-law alpha\n"
                 "      (cached in an HDF5 archive in ~/.cache/lathe/analysis, or beside the model)\n"
                 "  compress JOB.json [--output DIR] [--overwrite | --resume] [--check] [--json]\n"
                 "      runs a compression job (magnitude, N:M, Wanda, SliceGPT) with evaluation and export\n"
                 "  train JOB.json [--output DIR] [--overwrite] [--dry-run] [--json] | train --resume RUN_DIR\n"
                 "      trains a decoder model: AdamW, schedules, evaluation, checkpoints, export\n"
                 "  grad --model MODEL --text FILE [--seq-len N] [--windows K] [--out GRADS.safetensors] [--json]\n"
                 "      the evaluation loss over the first K windows and every parameter's gradient (norms, or all\n"
                 "      of them as fp32 safetensors in the Hugging Face layout)\n"
                 "  sensitivity --model MODEL --text FILE [--ratio R] [--score wanda|magnitude] [--target S]\n"
                 "              [--lambda L] [--owl-m M] [--eval-windows E] [--seq-len N] [--json]\n"
                 "      perplexity with only one block (or one kind of linear) pruned, OWL outlier ratios, and\n"
                 "      per-block sparsities at a target for a job spec's layer_sparsity\n"
                 "  methods [--json]\n"
                 "      the compression methods, their needs and every parameter (type, default, range, help)\n"
                 "  bench forward (--model MODEL | --shape NAME) [--seq-len N] [--batch B] [--repeat R]\n"
                 "       [--threads T] [--device auto|cpu|cuda[:N]] [--precision bf16|fp16|fp32] [--json]\n"
                 "      forward-pass tokens/s and GFLOP/s next to the GEMM peak measured in the same run\n"
                 "  bench spectra --model MODEL [--threads T] [--device cpu|cuda] [--no-baseline] [--json]\n"
                 "      time of all spectra next to one LAPACK sgesdd per matrix\n"
                 "  check-gpu [--source DIR] [--json]\n"
                 "      every GPU path against its CPU reference on the repository's fixtures\n"
                 "  devices\n"
                 "      the compute device Lathe would use and every usable GPU (cuda:N)\n\n"
                 "MODEL is a Hugging Face folder, a .gguf file or a llama2.c .bin checkpoint.\n"
                 "global options: --verbose, --log-file PATH (default ~/.local/state/lathe/lathe.log)\n");
}

} // namespace

int main(int argc, char **argv) {
    lathe::fixBlasCoreType(argc, argv); // may re-execute with OPENBLAS_CORETYPE set: first thing
    lathe::keepFreedMemory();
    // A file size limit (ulimit -f) then fails the write with EFBIG, which is reported like a full disk, instead of
    // killing the process with SIGXFSZ and leaving a half-written file.
    std::signal(SIGXFSZ, SIG_IGN);
    bool verbose = false;
    std::string logFile;
    // Global options may appear anywhere; strip them before the subcommand parses its own.
    std::vector<char *> args;
    for (int i = 0; i < argc; ++i) {
        if (std::strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else if (std::strcmp(argv[i], "--log-file") == 0 && i + 1 < argc) {
            logFile = argv[++i];
        } else {
            args.push_back(argv[i]);
        }
    }
    lathe::initLogging("lathe-cli", verbose, logFile);
    const int n = int(args.size());
    if (n < 2 || std::strcmp(args[1], "--help") == 0 || std::strcmp(args[1], "-h") == 0 ||
        std::strcmp(args[1], "help") == 0) {
        usage(n < 2 ? stderr : stdout);
        return n < 2 ? 2 : 0;
    }
    const std::string cmd = args[1];
    try {
        if (cmd == "inspect")
            return lathe::cli::runInspect(n, args.data());
        if (cmd == "export" || cmd == "convert")
            return lathe::cli::runConvert(n, args.data());
        if (cmd == "devices")
            return lathe::cli::runDevices(n, args.data());
        if (cmd == "eval")
            return lathe::cli::runEval(n, args.data());
        if (cmd == "generate")
            return lathe::cli::runGenerate(n, args.data());
        if (cmd == "tokenize")
            return lathe::cli::runTokenize(n, args.data());
        if (cmd == "analyze")
            return lathe::cli::runAnalyze(n, args.data());
        if (cmd == "compress")
            return lathe::cli::runCompress(n, args.data());
        if (cmd == "train")
            return lathe::cli::runTrain(n, args.data());
        if (cmd == "sensitivity")
            return lathe::cli::runSensitivity(n, args.data());
        if (cmd == "grad")
            return lathe::cli::runGrad(n, args.data());
        if (cmd == "methods")
            return lathe::cli::runMethods(n, args.data());
        if (cmd == "bench")
            return lathe::cli::runBench(n, args.data());
        if (cmd == "check-gpu")
            return lathe::cli::runCheckGpu(n, args.data());
    } catch (const lathe::LatheError &e) {
        spdlog::default_logger()->flush();
        std::fprintf(stderr, "error: %s\n", e.what());
        if (!e.hint().empty())
            std::fprintf(stderr, "hint: %s\n", e.hint().c_str());
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "lathe-cli: unknown command '%s'\n\n", cmd.c_str());
    usage(stderr);
    return 2;
}
