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

// GFLOP/s of one (n x n) * (n x n)^T sgemm, the layout of the engine's linear layers; best of `repeat`.
struct SgemmProbe {
    int64_t n;
    Mat a, b, c;
    explicit SgemmProbe(int64_t size) : n(size), a(Mat::Random(size, size)), b(Mat::Random(size, size)), c(size, size) {}
    double gflops(int repeat) {
        double best = 1e30;
        for (int r = 0; r < repeat; ++r) {
            const double t0 = steadySeconds();
            sgemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
            best = std::min(best, steadySeconds() - t0);
        }
        return 2.0 * double(n) * double(n) * double(n) / best / 1e9;
    }
};

} // namespace

int runBenchForward(int argc, char **argv);
int runBenchSpectra(int argc, char **argv);

int runBench(int argc, char **argv) {
    const std::string what = argc > 2 ? argv[2] : "";
    if (what == "spectra")
        return runBenchSpectra(argc, argv);
    return runBenchForward(argc, argv);
}

int runBenchForward(int argc, char **argv) {
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
        setBlasThreads(int(o.integer("threads", 0)));
    const int64_t seq = o.integer("seq-len", 512), batch = o.integer("batch", 1);
    const int repeat = int(std::max<int64_t>(1, o.integer("repeat", 3)));
    auto model = openModel(*o.value("model"));
    const BlasInfo blas = blasInfo();
    if (!blas.note.empty())
        spdlog::info("{}", blas.note);

    SgemmProbe probe(2048);
    probe.gflops(1); // warm-up

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
    // The sgemm peak is measured right before each timed pass and each pass is compared with its own peak: on a
    // shared machine whose speed drifts, a ratio taken at one moment is what means something.
    const double flops = t.flopsPerSequence(seq) * double(batch);
    std::vector<double> times, fractions, peaks;
    for (int r = 0; r < repeat; ++r) {
        peaks.push_back(probe.gflops(2));
        const double t0 = steadySeconds();
        t.forward(b);
        times.push_back(steadySeconds() - t0);
        fractions.push_back(flops / times.back() / 1e9 / peaks.back());
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const double best = *std::min_element(times.begin(), times.end());
    const double medianTime = median(times);
    const double peak = median(peaks);
    const double fraction = median(fractions);
    const double gflops = flops / best / 1e9;
    const double tokens = double(batch * seq);
    const double ceilingTokens = tokens / (flops / (peak * 1e9)); // at the median peak
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
                        {"median_s", medianTime},
                        {"tokens_per_s", tokens / best},
                        {"gflop_per_pass", flops / 1e9},
                        {"gflops", gflops},
                        {"sgemm_peak_gflops", peak},
                        {"fraction_of_peak", fraction},
                        {"ceiling_tokens_per_s", ceilingTokens}};
    if (!o.flag("json")) {
        std::printf("forward pass  %s, batch %lld x seq %lld, %s (%s, core %s, %d threads)\n",
                    model->sourcePath.c_str(), (long long)batch, (long long)seq, device.c_str(),
                    blas.library.substr(0, blas.library.find(' ', 9)).c_str(), blas.coreType.c_str(), blas.threads);
        std::printf("%-28s %12s\n", "metric", "value");
        std::printf("%-28s %12.3f\n", "best time (s)", best);
        std::printf("%-28s %12.3f\n", "median time (s)", medianTime);
        std::printf("%-28s %12.1f\n", "tokens/s", tokens / best);
        std::printf("%-28s %12.2f\n", "GFLOP per pass", flops / 1e9);
        std::printf("%-28s %12.1f\n", "achieved GFLOP/s", gflops);
        std::printf("%-28s %12.1f\n", "sgemm peak GFLOP/s (median)", peak);
        std::printf("%-28s %11.1f%%\n", "of the GEMM-bound ceiling", 100.0 * fraction);
        std::printf("%-28s %12.1f\n", "ceiling tokens/s", ceilingTokens);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

} // namespace lathe::cli
