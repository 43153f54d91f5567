#include "clioptions.h"
#include "enginesetup.h"

#include "blas.h"
#include "error.h"
#include "mat.h"
#include "modelloader.h"
#include "transformer.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

namespace lathe::cli {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Best of `repeat` runs of a (n x n) * (n x n)^T sgemm, the layout of the engine's linear layers.
double measureSgemmGflops(int64_t n, int repeat) {
    Mat a = Mat::Random(n, n), b = Mat::Random(n, n), c(n, n);
    sgemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); // warm-up
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
        const double t0 = now();
        sgemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        best = std::min(best, now() - t0);
    }
    return 2.0 * double(n) * double(n) * double(n) / best / 1e9;
}

int64_t parseInt(const CliOptions &o, const char *name, int64_t fallback) {
    auto v = o.value(name);
    if (!v)
        return fallback;
    try {
        return std::stoll(*v);
    } catch (const std::exception &) {
        throw LatheError(std::string("--") + name + " must be an integer, not '" + *v + "'");
    }
}

} // namespace

int runBench(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "seq-len", "batch", "repeat", "threads", "device"}, {"json"});
    if (!o.ok() || o.positional().size() != 1 || o.positional()[0] != "forward" || !o.value("model")) {
        std::fprintf(stderr,
                     "usage: lathe-cli bench forward --model MODEL [--seq-len N] [--batch B] [--repeat R]\n"
                     "                               [--threads T] [--json]\n"
                     "  times the full forward pass (embedding to logits) on random token ids and prints tokens/s\n"
                     "  and GFLOP/s next to the sgemm peak measured in the same run\n%s\n",
                     o.error().c_str());
        return 2;
    }
    const std::string device = chooseForwardDevice(o.value("device"));
    if (o.value("threads"))
        setBlasThreads(int(parseInt(o, "threads", 0)));
    const int64_t seq = parseInt(o, "seq-len", 512), batch = parseInt(o, "batch", 1);
    const int repeat = int(std::max<int64_t>(1, parseInt(o, "repeat", 3)));
    auto model = openModel(*o.value("model"));
    const BlasInfo blas = blasInfo();
    if (!blas.note.empty())
        spdlog::info("{}", blas.note);

    spdlog::info("measuring the sgemm peak (2048^3)...");
    const double peak = measureSgemmGflops(2048, repeat);

    Transformer t(*model);
    TokenBatch b;
    b.batch = batch;
    b.seq = seq;
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> pick(0, int32_t(model->config.vocabSize - 1));
    for (int64_t i = 0; i < batch * seq; ++i)
        b.tokens.push_back(pick(rng));
    spdlog::info("warm-up pass (loads the weights)...");
    t.forward(b);
    std::vector<double> times;
    for (int r = 0; r < repeat; ++r) {
        const double t0 = now();
        t.forward(b);
        times.push_back(now() - t0);
    }
    std::sort(times.begin(), times.end());
    const double best = times.front(), median = times[times.size() / 2];
    const double flops = t.flopsPerSequence(seq) * double(batch);
    const double gflops = flops / best / 1e9;
    const double tokens = double(batch * seq);
    const double ceilingTokens = tokens / (flops / (peak * 1e9));
    nlohmann::json j = {{"bench", "forward"},
                        {"model", model->sourcePath},
                        {"device", device},
                        {"blas", blas.library},
                        {"blas_core", blas.coreType},
                        {"threads", blas.threads},
                        {"batch", batch},
                        {"seq_len", seq},
                        {"repeat", repeat},
                        {"best_s", best},
                        {"median_s", median},
                        {"tokens_per_s", tokens / best},
                        {"gflop_per_pass", flops / 1e9},
                        {"gflops", gflops},
                        {"sgemm_peak_gflops", peak},
                        {"fraction_of_peak", gflops / peak},
                        {"ceiling_tokens_per_s", ceilingTokens}};
    if (!o.flag("json")) {
        std::printf("forward pass  %s, batch %lld x seq %lld, %s (%s, core %s, %d threads)\n",
                    model->sourcePath.c_str(), (long long)batch, (long long)seq, device.c_str(),
                    blas.library.substr(0, blas.library.find(' ', 9)).c_str(), blas.coreType.c_str(), blas.threads);
        std::printf("%-28s %12s\n", "metric", "value");
        std::printf("%-28s %12.3f\n", "best time (s)", best);
        std::printf("%-28s %12.3f\n", "median time (s)", median);
        std::printf("%-28s %12.1f\n", "tokens/s", tokens / best);
        std::printf("%-28s %12.2f\n", "GFLOP per pass", flops / 1e9);
        std::printf("%-28s %12.1f\n", "achieved GFLOP/s", gflops);
        std::printf("%-28s %12.1f\n", "sgemm peak GFLOP/s", peak);
        std::printf("%-28s %11.1f%%\n", "of the GEMM-bound ceiling", 100.0 * gflops / peak);
        std::printf("%-28s %12.1f\n", "ceiling tokens/s", ceilingTokens);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

} // namespace lathe::cli
