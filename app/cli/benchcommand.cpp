#include "clioptions.h"
#include "enginesetup.h"

#include "base/error.h"
#include "engine/calibration.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "methods/slicegpt.h"
#include "model/syntheticmodel.h"
#include "numeric/backend.h"
#include "numeric/blas.h"
#include "numeric/mat.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
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

// One warm-up step, then `repeat` timed steps, each right after a measurement of the GEMM peak (the machines are
// shared and drift: each step is compared with a peak of its moment); the medians of both.
struct StepTimes {
    double median = 0, peak = 0;
};
StepTimes timeSteps(int repeat, const std::function<void()> &step, const std::function<double()> &peakGflops) {
    spdlog::info("warm-up step...");
    step();
    std::vector<double> times, peaks;
    for (int r = 0; r < repeat; ++r) {
        peaks.push_back(peakGflops());
        const double t0 = steadySeconds();
        step();
        times.push_back(steadySeconds() - t0);
    }
    std::sort(times.begin(), times.end());
    std::sort(peaks.begin(), peaks.end());
    return {times[times.size() / 2], peaks[peaks.size() / 2]};
}

// The rates of a timed training step, in the JSON line and in the table: median time, tokens/s, GFLOP per step,
// achieved GFLOP/s, the GEMM peak and the fraction of it.
void addStepRates(nlohmann::json &j, const StepTimes &t, double tokens, double flops) {
    j["median_s"] = t.median;
    j["tokens_per_s"] = tokens / t.median;
    j["gflop_per_step"] = flops / 1e9;
    j["gflops"] = flops / t.median / 1e9;
    j["gemm_peak_gflops"] = t.peak;
    j["fraction_of_peak"] = flops / t.median / 1e9 / t.peak;
}
void printStepRates(const StepTimes &t, double tokens, double flops, const char *peakName) {
    std::printf("%-28s %12s\n", "metric", "value");
    std::printf("%-28s %12.4f\n", "median step (s)", t.median);
    std::printf("%-28s %12.1f\n", "tokens/s", tokens / t.median);
    std::printf("%-28s %12.1f\n", "GFLOP per step", flops / 1e9);
    std::printf("%-28s %12.1f\n", "achieved GFLOP/s", flops / t.median / 1e9);
    std::printf("%-28s %12.1f\n", peakName, t.peak);
    std::printf("%-28s %12.3f\n", "fraction of peak", flops / t.median / 1e9 / t.peak);
}

} // namespace

int runBenchForward(int argc, char **argv);
int runBenchSpectra(int argc, char **argv);
int runBenchSliceGpt(int argc, char **argv);
int runBenchTrain(int argc, char **argv);

// `lathe-cli bench WHAT ...`: the benchmark named by its first word (each checks its own arguments); the forward
// pass for any other word, whose usage then names it.
int runBench(int argc, char **argv) {
    struct Bench {
        const char *word;
        int (*run)(int, char **);
    };
    static constexpr Bench kBenches[] = {
        {"train", runBenchTrain}, {"spectra", runBenchSpectra}, {"slicegpt", runBenchSliceGpt}};
    const std::string what = argc > 2 ? argv[2] : "";
    for (const Bench &b : kBenches)
        if (what == b.word)
            return b.run(argc, argv);
    return runBenchForward(argc, argv);
}

namespace {

// --model or --shape (a synthetic Llama-family model with random bf16 weights).
std::unique_ptr<Model> benchModel(const CliOptions &o) {
    if (o.value("shape")) {
        const auto shape = syntheticShape(*o.value("shape"));
        if (!shape)
            throw LatheError("unknown --shape '" + *o.value("shape") + "'", "use one of: " + syntheticShapeNames());
        spdlog::info("building a {} model with random bf16 weights...", shape->name);
        return makeSyntheticModel(*shape);
    }
    return openModel(*o.value("model"));
}

} // namespace

// SliceGPT end to end (norm fusion, calibration signals, every PCA, rotation and shortcut) on random calibration
// tokens, timed; the target: a Llama-2-7B-shaped model with 1024 x 2048 samples in <= 5 min on one H100
// (the SliceGPT paper reports 44 min for this on one H100).
int runBenchSliceGpt(int argc, char **argv) {
    CliOptions o(argc, argv, 2,
                 {"model", "shape", "samples", "seq-len", "sparsity", "device", "precision", "rows-per-chunk",
                  "threads"},
                 {"json"});
    if (!o.ok() || o.positional().size() != 1 || // the one positional word is "slicegpt": runBench's choice
        !o.value("model") == !o.value("shape")) {
        std::fprintf(stderr,
                     "usage: lathe-cli bench slicegpt (--model MODEL | --shape NAME) [--samples N] [--seq-len L]\n"
                     "                                [--sparsity S] [--device auto|cpu|cuda[:N]] [--precision bf16|fp16|fp32]\n"
                     "                                [--rows-per-chunk R] [--threads T] [--json]\n"
                     "  SliceGPT end to end on N random calibration sequences of L tokens (default 1024 x 2048,\n"
                     "  slicing 0.25), timed; --shape: %s\n%s\n",
                     syntheticShapeNames().c_str(), o.error().c_str());
        return 2;
    }
    const std::unique_ptr<ComputeBackend> backend = chooseForwardDevice(o.value("device"));
    const std::string device = backend->name();
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    std::unique_ptr<Model> model = benchModel(o);
    const int64_t samples = o.integer("samples", 1024, 1, 1 << 20), seq = o.integer("seq-len", 2048, 2, 1 << 20);
    SliceGptParams p;
    p.sparsity = o.number("sparsity", 0.25, 0.0, 0.99);
    p.rowsPerChunk = o.integer("rows-per-chunk", 8192, 1, INT32_MAX);
    p.gpu = hasDeviceForward(*backend);
    p.precision = forwardOptions(o.value("precision")).precision;
    p.solver = backend.get();
    sliceGptWidths(model->config.hiddenSize, model->config.numLayers, p); // bad sparsity: before any work

    CalibrationSet cal;
    cal.seqLen = seq;
    const TokenBatch ids = TokenBatch::random(model->config.vocabSize, samples, seq, 42);
    for (int64_t i = 0; i < samples; ++i)
        cal.sequences.emplace_back(ids.tokens.begin() + i * seq, ids.tokens.begin() + (i + 1) * seq);
    spdlog::info("SliceGPT {:.2f} on {}: {} x {} calibration tokens, {:.1f} GiB of signals, on {}", p.sparsity,
                 model->sourcePath, samples, seq, double(cal.signalBytes(model->config.hiddenSize)) / (1u << 30),
                 device);
    int lastTenth = -1;
    const double t0 = steadySeconds();
    const SliceGptResult r = sliceGpt(*model, cal, p, [&](const Progress &pr) {
        const int tenth = int(pr.fraction * 10);
        if (tenth != lastTenth) {
            spdlog::info("{:3.0f}% {} ({:.0f} s)", pr.fraction * 100, pr.stage, steadySeconds() - t0);
            lastTenth = tenth;
        }
        return true;
    });
    const double seconds = steadySeconds() - t0;
    double layerSeconds = 0;
    for (const auto &l : r.layers)
        layerSeconds += l.seconds;
    const nlohmann::json j = {{"bench", "slicegpt"},
                              {"model", model->sourcePath},
                              {"device", device},
                              {"precision", p.gpu ? precisionName(p.precision) : "fp32"},
                              {"samples", samples},
                              {"seq_len", seq},
                              {"sparsity", p.sparsity},
                              {"seconds", seconds},
                              {"blocks_seconds", layerSeconds},
                              {"mean_block_seconds", r.layers.empty() ? 0.0 : layerSeconds / double(r.layers.size())},
                              {"signal_bytes", r.calibrationBytes},
                              {"params_before", r.paramsBefore},
                              {"params_after", r.paramsAfter}};
    if (!o.flag("json")) {
        std::printf("SliceGPT %.2f  %s, %lld x %lld calibration tokens, %s\n", p.sparsity, model->sourcePath.c_str(),
                    (long long)samples, (long long)seq, device.c_str());
        std::printf("%-34s %12.2f\n", "end to end (s)", seconds);
        std::printf("%-34s %12.2f\n", "blocks (s)", layerSeconds);
        std::printf("%-34s %12.2f\n", "per block (s)", r.layers.empty() ? 0.0 : layerSeconds / double(r.layers.size()));
        std::printf("%-34s %12.2f\n", "signals (GiB)", double(r.calibrationBytes) / (1u << 30));
        std::printf("%-34s %12lld\n", "parameters before", (long long)r.paramsBefore);
        std::printf("%-34s %12lld\n", "parameters after", (long long)r.paramsAfter);
        std::printf("reference: the SliceGPT paper's 44 min on one H100 for Llama-2-7B at 1024 x 2048\n");
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

int runBenchForward(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "shape", "seq-len", "batch", "repeat", "threads", "device", "precision"},
                 {"json"});
    if (!o.ok() || o.positional().size() != 1 || o.positional()[0] != "forward" ||
        !o.value("model") == !o.value("shape")) {
        std::fprintf(stderr,
                     "usage: lathe-cli bench forward (--model MODEL | --shape NAME) [--seq-len N] [--batch B]\n"
                     "                               [--repeat R] [--threads T] [--device auto|cpu|cuda[:N]]\n"
                     "                               [--precision bf16|fp16|fp32] [--json]\n"
                     "  times the full forward pass (embedding to logits) on random token ids and prints tokens/s\n"
                     "  and GFLOP/s next to the GEMM peak measured in the same run (CPU: fp32 sgemm 2048^3;\n"
                     "  GPU: an 8192^3 GEMM in the compute precision). --shape builds a Llama-family model with\n"
                     "  random bf16 weights in memory: %s\n%s\n",
                     syntheticShapeNames().c_str(), o.error().c_str());
        return 2;
    }
    const std::unique_ptr<ComputeBackend> backend = chooseForwardDevice(o.value("device"));
    const std::string device = backend->name();
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    const int64_t seq = o.integer("seq-len", 512, 1, 1 << 20), batch = o.integer("batch", 1, 1, 4096);
    const int repeat = int(o.integer("repeat", 3, 1, 1000));
    std::unique_ptr<Model> model = benchModel(o);
    const BlasInfo blas = blasInfo();
    if (!blas.note.empty() && device == "cpu")
        spdlog::info("{}", blas.note);

    // One timed pass and one peak measurement, on the chosen device.
    std::function<void(const TokenBatch &)> pass;
    std::function<double()> peakGflops;
    std::unique_ptr<Transformer> cpuPass;
    std::unique_ptr<DeviceForward> gpuPass;
    std::unique_ptr<SgemmProbe> probe;
    Mat logits; // reused across passes, as evaluation does
    std::string precision = "fp32", deviceName;
    if (hasDeviceForward(*backend)) {
        const DeviceForwardOptions options = forwardOptions(o.value("precision"));
        precision = precisionName(options.precision);
        spdlog::info("uploading the weights to the GPU...");
        gpuPass = createDeviceForward(*backend, *model, options);
        deviceName = gpuPass->describe();
        pass = [&](const TokenBatch &b) { gpuPass->run(b); };
        peakGflops = [&] { return gpuPass->gemmPeakGflops(8192); };
    } else {
        probe = std::make_unique<SgemmProbe>(2048);
        probe->gflops(1); // warm-up
        cpuPass = std::make_unique<Transformer>(*model);
        deviceName = "CPU, " + blas.library.substr(0, blas.library.find(' ', 9)) + ", core " + blas.coreType + ", " +
                     std::to_string(blas.threads) + " threads";
        pass = [&](const TokenBatch &b) { cpuPass->logits(cpuPass->finalHidden(cpuPass->hiddenStates(b)), logits); };
        peakGflops = [&] { return probe->gflops(2); };
    }

    const TokenBatch b = TokenBatch::random(model->config.vocabSize, batch, seq, 42);
    spdlog::info("warm-up pass (loads the weights)...");
    pass(b);
    // The GEMM peak is measured right before each timed pass and each pass is compared with its own peak: on a
    // shared machine whose speed drifts, a ratio taken at one moment is what means something.
    const double flops = forwardFlops(model->config, seq) * double(batch);
    std::vector<double> times, fractions, peaks;
    for (int r = 0; r < repeat; ++r) {
        peaks.push_back(peakGflops());
        const double t0 = steadySeconds();
        pass(b);
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
                        {"device_detail", deviceName},
                        {"precision", precision},
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
                        {"gemm_peak_gflops", peak},
                        {"fraction_of_peak", fraction},
                        {"ceiling_tokens_per_s", ceilingTokens}};
    if (!o.flag("json")) {
        std::printf("forward pass  %s, batch %lld x seq %lld, %s (%s), %s\n", model->sourcePath.c_str(),
                    (long long)batch, (long long)seq, device.c_str(), deviceName.c_str(), precision.c_str());
        std::printf("%-28s %12s\n", "metric", "value");
        std::printf("%-28s %12.3f\n", "best time (s)", best);
        std::printf("%-28s %12.3f\n", "median time (s)", medianTime);
        std::printf("%-28s %12.1f\n", "tokens/s", tokens / best);
        std::printf("%-28s %12.2f\n", "GFLOP per pass", flops / 1e9);
        std::printf("%-28s %12.1f\n", "achieved GFLOP/s", gflops);
        std::printf("%-28s %12.1f\n", "GEMM peak GFLOP/s (median)", peak);
        std::printf("%-28s %11.1f%%\n", "of the GEMM-bound ceiling", 100.0 * fraction);
        std::printf("%-28s %12.1f\n", "ceiling tokens/s", ceilingTokens);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

// One training step (forward, backward, AdamW) of the CPU training engine, timed (issue 17's speed target), next to
// the sgemm peak measured right before each step: the step's FLOPs are 3 x the forward pass's (forward, and the
// two GEMMs per linear of backward).
// The same step on a GPU (--device cuda): the GPU trainer (core/train/devicetraining.h), its tokens/s and GFLOP/s
// beside the GEMM peak of the same precision measured in the same run (the forward pass's 8192^3 probe), so the
// fraction is a model-FLOPs utilisation against the device's achieved GEMM ceiling, not its datasheet peak.
// --omit and --recompute as on the CPU: the trainer reads lm's selections and recomputation setting.
int benchTrainOnDevice(const CliOptions &o, ComputeBackend &backend, const Model &model, train::CausalLm<float> &lm,
                       double omit, int64_t batch, int64_t seq, int repeat) {
    auto *service = deviceService<train::DeviceTrainingService>(backend);
    if (!service)
        throw LatheError("this device does not train", "leave out --device to train on the CPU");
    const DeviceForwardOptions options = forwardOptions(o.value("precision"));
    spdlog::info("uploading the parameters to the GPU...");
    std::unique_ptr<train::DeviceTrainer> trainer = service->create(lm, train::AdamW<float>(), options.precision);
    // The GEMM peak probe is a forward pass's, whose 8192^3 product does not depend on its model: it is built on the
    // tiny synthetic Llama, so that it holds no second copy of the trained model and serves BERT too (the GPU
    // forward pass runs decoders only).
    const std::unique_ptr<Model> probeModel = makeSyntheticModel(*syntheticShape("tiny"));
    std::unique_ptr<DeviceForward> probe = createDeviceForward(backend, *probeModel, options);
    const TokenBatch b = TokenBatch::random(model.config.vocabSize, batch, seq, 42);
    // The first step's loss, before any update: the same for every trainer of the same model and batch (to its
    // precision's rounding), so two runs that differ only in their kernels can be compared by it.
    double firstLoss = NAN;
    auto step = [&] {
        trainer->zeroGradients();
        const float loss = trainer->forwardBackward(b);
        if (std::isnan(firstLoss))
            firstLoss = loss;
        trainer->step(1e-4, 1.0);
        trainer->synchronize();
    };
    const double flops = 3.0 * forwardFlops(model.config, seq) * double(batch);
    const StepTimes times = timeSteps(repeat, step, [&] { return probe->gemmPeakGflops(8192); });
    const double tokens = double(batch * seq);
    nlohmann::json j = {{"bench", "train"},
                        {"model", model.sourcePath},
                        {"device", backend.device().label()},
                        {"precision", precisionName(options.precision)},
                        {"trainer", trainer->describe()},
                        {"batch", batch},
                        {"seq_len", seq},
                        {"recompute", lm.recompute()},
                        {"omit", omit},
                        {"repeat", repeat},
                        {"device_bytes", trainer->deviceBytes()},
                        {"first_loss", firstLoss}};
    addStepRates(j, times, tokens, flops);
    // --profile: one more step with every op timed on the device (events; what is left of the step's wall time is
    // the host's share: launches, uploads of token ids, the loss's copy back).
    std::vector<train::OpTime> ops;
    double profiledSeconds = 0;
    if (o.flag("profile")) {
        trainer->profileOps(true);
        const auto t0 = std::chrono::steady_clock::now();
        step();
        profiledSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        trainer->profileOps(false);
        ops = trainer->opTimes();
        nlohmann::json list = nlohmann::json::array();
        for (const train::OpTime &t : ops)
            list.push_back({{"op", t.op}, {"seconds", t.seconds}, {"calls", t.calls}, {"nested", t.nested}});
        j["profile"] = {{"step_s", profiledSeconds}, {"ops", list}};
    }
    if (!o.flag("json")) {
        std::printf("training step  %s, batch %lld x seq %lld%s, %s\n", model.sourcePath.c_str(), (long long)batch,
                    (long long)seq, lm.recompute() ? ", recomputing blocks" : omit > 0 ? ", channels omitted" : "",
                    trainer->describe().c_str());
        printStepRates(times, tokens, flops, "GEMM peak GFLOP/s");
        std::printf("%-28s %12.1f\n", "device memory (MB)", double(trainer->deviceBytes()) / 1048576.0);
        std::printf("%-28s %12.6f\n", "first step's loss", firstLoss);
        if (!ops.empty()) {
            std::printf("\nprofiled step %.4f s wall\n%-24s %10s %8s %7s\n", profiledSeconds, "op", "ms", "share",
                        "calls");
            double timed = 0;
            const auto row = [&](const train::OpTime &t, const char *indent) {
                std::printf("%s%-*s %10.3f %7.1f%% %7lld\n", indent, 24 - int(std::strlen(indent)), t.op.c_str(),
                            1e3 * t.seconds, 100.0 * t.seconds / profiledSeconds, (long long)t.calls);
            };
            for (const train::OpTime &t : ops)
                if (!t.nested) {
                    row(t, "");
                    timed += t.seconds;
                }
            std::printf("%-24s %10.3f %7.1f%%\n", "(not in an op)", 1e3 * (profiledSeconds - timed),
                        100.0 * (profiledSeconds - timed) / profiledSeconds);
            if (std::any_of(ops.begin(), ops.end(), [](const train::OpTime &t) { return t.nested; }))
                std::printf("of which, inside the ops above:\n");
            for (const train::OpTime &t : ops)
                if (t.nested)
                    row(t, "  ");
        }
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

int runBenchTrain(int argc, char **argv) {
    CliOptions o(argc, argv, 3, {"model", "shape", "seq-len", "batch", "repeat", "threads", "omit", "device", "precision"},
                 {"json", "recompute", "profile"});
    if (!o.ok() || (!o.value("model") && !o.value("shape")) || !o.positional().empty()) {
        std::fprintf(stderr,
                     "usage: lathe-cli bench train (--model MODEL | --shape NAME) [--seq-len N] [--batch B] [--repeat R]\n"
                     "                             [--threads T] [--recompute] [--omit W]\n"
                     "                             [--device cpu|cuda[:N] [--precision bf16|fp32] [--profile]] [--json]\n"
                     "  tokens/s of forward + backward + AdamW on random tokens, the achieved GFLOP/s beside the\n"
                     "  sgemm peak measured in the same run, and the peak memory; --recompute keeps block inputs\n"
                     "  only and runs each block's forward again in backward; --omit W skips the fraction W of every\n"
                     "  block's MLP channels and floor(W KV) of its key/value groups, as SAT's gathered steps do;\n"
                     "  --device cuda runs the GPU trainer (every family) instead of the CPU engine (the default),\n"
                     "  with --recompute and --omit too; --profile then times one more step op by op on the device\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    const int64_t seq = o.integer("seq-len", 512, 2, 1 << 20), batch = o.integer("batch", 1, 1, 4096);
    const int repeat = int(o.integer("repeat", 3, 1, 1000));
    std::unique_ptr<Model> model = benchModel(o);
    train::CausalLm<float> lm(*model);
    lm.setRecompute(o.flag("recompute"));
    if (lm.maskedLm()) { // random tokens: any id serves as [MASK]; the work is the same
        train::MlmMasking masking;
        masking.maskId = 0;
        lm.setMasking(masking);
    }
    const double omit = o.number("omit", 0.0, 0.0, 0.95);
    if (omit > 0) {
        // The first channels and groups: which ones does not change the work.
        const ModelConfig &c = model->config;
        train::BlockSelection sel;
        for (int32_t j = 0; j < int32_t(std::llround(double(c.intermediateSize) * (1 - omit))); ++j)
            sel.mlpChannels.push_back(j);
        const int64_t drop = std::min<int64_t>(int64_t(std::floor(omit * double(c.numKvHeads))), c.numKvHeads - 1);
        for (int32_t g = 0; drop > 0 && g < int32_t(c.numKvHeads - drop); ++g)
            sel.kvGroups.push_back(g);
        for (int l = 0; l < int(c.numLayers); ++l)
            lm.setSelection(l, sel);
    }
    if (o.value("device") && *o.value("device") != "cpu") {
        const std::unique_ptr<ComputeBackend> backend = chooseForwardDevice(o.value("device"));
        if (backend->name() != "cpu")
            return benchTrainOnDevice(o, *backend, *model, lm, omit, batch, seq, repeat);
    }
    if (o.flag("profile"))
        spdlog::warn("--profile times the GPU trainer's ops; this run is on the CPU and is not profiled");
    train::AdamW<float> adam;
    const TokenBatch b = TokenBatch::random(model->config.vocabSize, batch, seq, 42);
    SgemmProbe probe(2048);
    probe.gflops(1);
    auto step = [&] {
        lm.parameters().zeroGrad();
        lm.forward(b);
        lm.backward();
        adam.step(lm.parameters(), 1e-4);
    };
    const double flops = 3.0 * forwardFlops(model->config, seq) * double(batch);
    const StepTimes times = timeSteps(repeat, step, [&] { return probe.gflops(2); });
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double peakMb = double(ru.ru_maxrss) / 1024.0;
    const BlasInfo blas = blasInfo();
    const double tokens = double(batch * seq);
    nlohmann::json j = {{"bench", "train"},
                        {"model", model->sourcePath},
                        {"batch", batch},
                        {"seq_len", seq},
                        {"recompute", lm.recompute()},
                        {"omit", omit},
                        {"activation_bytes",
                         train::CausalLm<float>::activationBytes(model->config, batch, seq, 4096, lm.recompute())},
                        {"repeat", repeat},
                        {"blas", blas.library},
                        {"blas_core", blas.coreType},
                        {"threads", blas.threads},
                        {"peak_rss_mb", peakMb}};
    addStepRates(j, times, tokens, flops);
    if (!o.flag("json")) {
        std::printf("training step  %s, batch %lld x seq %lld%s, CPU fp32 (%s, core %s, %d threads)\n",
                    model->sourcePath.c_str(), (long long)batch, (long long)seq,
                    lm.recompute() ? ", recomputing blocks" : omit > 0 ? ", channels omitted" : "",
                    blas.library.c_str(), blas.coreType.c_str(), blas.threads);
        printStepRates(times, tokens, flops, "sgemm peak GFLOP/s");
        std::printf("%-28s %12.1f\n", "peak memory (MB)", peakMb);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

} // namespace lathe::cli
