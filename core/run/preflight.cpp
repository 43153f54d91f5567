#include "run/preflight.h"

#include "analysis/modelsummary.h"
#include "base/clock.h"
#include "base/error.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "run/compressionrun.h"
#include "methods/method.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "run/runfolder.h"
#include "run/speckeys.h"
#include "run/trainingrun.h"
#include "tokenizers/tokenizer.h"
#include "train/opsmemory.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace lathe {

namespace fs = std::filesystem;

namespace {


constexpr double kExportBytesPerSecond = 300e6; // assumed write rate of a local disk
// Reading, scoring and rewriting every target weight, in forward passes of 256-token windows (magnitude pruning of
// SmolLM2-135M on 2 cores: 2.8 s, 6.5 such windows).
constexpr double kRewriteWindows = 6.5;

// Bytes per parameter of a GGUF export (`output.gguf`), 0 when none is written (Q8_0: about one).
uint64_t ggufBytesPerParam(const std::string &gguf) {
    const std::optional<DType> g = ggufExportDType(gguf);
    return !g ? 0 : *g == DType::F32 ? 4 : *g == DType::F16 ? 2 : 1;
}

} // namespace

uint64_t memAvailable() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kb = 0;
    std::string unit;
    while (in >> key >> kb >> unit)
        if (key == "MemAvailable:")
            return kb * 1024;
    return 0;
}

uint64_t diskFreeFor(const std::string &dir) {
    std::error_code ec;
    fs::path p = fs::absolute(fs::path(dir), ec);
    while (!p.empty() && !fs::exists(p, ec))
        p = p.parent_path();
    const fs::space_info si = fs::space(p.empty() ? fs::path(".") : p, ec);
    return ec ? 0 : si.available;
}

ForwardProbe probeForward(const Model &model, int64_t seqLen) {
    ForwardProbe p;
    p.seqLen = std::max<int64_t>(2, std::min<int64_t>(seqLen, model.config.maxPositions > 0 ? model.config.maxPositions : seqLen));
    double t0 = steadySeconds();
    Transformer engine(model);
    p.buildSeconds = steadySeconds() - t0;
    const TokenBatch batch = TokenBatch::random(model.config.vocabSize, 1, p.seqLen, 7);
    (void)engine.forward(batch); // the first pass pays for allocations and thread start-up: not timed
    t0 = steadySeconds();
    (void)engine.forward(batch);
    p.forwardSeconds = steadySeconds() - t0;
    return p;
}

void probeDeviceForward(ForwardProbe &p, const Model &model, std::shared_ptr<ComputeBackend> gpu,
                        ComputePrecision precision) {
    if (!gpu || !hasDeviceForward(*gpu) || model.config.family == ArchFamily::Bert) // BERT: no perplexity
        return;
    DeviceForwardOptions o;
    o.precision = precision;
    double t0 = steadySeconds();
    const std::unique_ptr<DeviceForward> pass = createDeviceForward(*gpu, model, o);
    p.deviceBuildSeconds = steadySeconds() - t0;
    const TokenBatch batch = TokenBatch::random(model.config.vocabSize, 1, std::max<int64_t>(p.seqLen, 2), 7);
    int64_t count = 0;
    (void)pass->sumNextTokenNll(batch, &count); // the first pass pays for allocations: not timed
    t0 = steadySeconds();
    (void)pass->sumNextTokenNll(batch, &count);
    p.deviceForwardSeconds = steadySeconds() - t0;
    p.device = pass->describe();
    p.devicePrecision = precision;
    p.gpu = std::move(gpu);
}

uint64_t compressionDeviceBytes(const Model &model, int64_t seqLen, ComputePrecision precision, uint64_t signalBytes) {
    const int64_t seq = std::max<int64_t>(seqLen, 1);
    return deviceForwardMemory(model, seq, seq, precision).total() + signalBytes + (uint64_t(512) << 20);
}

int64_t estimateTextTokens(const Tokenizer &tokenizer, const std::string &path) {
    std::error_code ec;
    const uint64_t size = fs::file_size(path, ec);
    if (ec || size == 0)
        return 0;
    constexpr uint64_t kSample = 64 * 1024;
    std::ifstream in(path, std::ios::binary);
    std::string head(size_t(std::min(size, kSample)), '\0');
    in.read(head.data(), std::streamsize(head.size()));
    head.resize(size_t(in.gcount()));
    const double tokens = double(tokenizer.encodeForModel(joinDatasetRows(head)).size());
    return size <= kSample ? int64_t(tokens) : int64_t(tokens * double(size) / double(head.size()));
}

RunEstimate estimateCompressionRun(const CompressionSpec &spec, const Model &model, const ForwardProbe &probe,
                                   int64_t calibrationTextTokens, int64_t evalTextTokens) {
    RunEstimate e;
    const ModelConfig &c = model.config;
    const MethodInfo &info = spec.method->info();
    const double probeFlops = std::max(forwardFlops(c, std::max<int64_t>(probe.seqLen, 1)), 1.0);
    const auto windowSeconds = [&](int64_t seq) { return probe.forwardSeconds * forwardFlops(c, seq) / probeFlops; };
    // Where the evaluations and the method's passes run: the GPU probed, unless the spec asks for the CPU.
    const bool evalOnGpu = probe.gpu && !probe.device.empty() &&
                           DeviceChoice::parse(spec.device).preference != DevicePreference::Cpu;
    const bool methodOnGpu = evalOnGpu && spec.method->runsOnDevice(*probe.gpu);
    const auto gpuWindowSeconds = [&](int64_t seq) {
        return probe.deviceForwardSeconds * forwardFlops(c, seq) / probeFlops;
    };
    const double evalBuild = evalOnGpu ? probe.deviceBuildSeconds : probe.buildSeconds;
    const auto evalWindow = [&](int64_t seq) { return evalOnGpu ? gpuWindowSeconds(seq) : windowSeconds(seq); };
    const int64_t points = std::max<int64_t>(int64_t(spec.sparsities.size()), 1);
    // The calibration windows the text allows (makeCalibrationSet takes fewer when it is short).
    int64_t samples = 0;
    if (info.needsCalibration) {
        const int64_t fit = calibrationTextTokens / std::max<int64_t>(spec.calibrationSeqLen, 1);
        samples = std::min<int64_t>(spec.calibrationSamples, std::max<int64_t>(fit, 0));
    }
    if (!spec.evalText.empty() && evalTextTokens > 0) {
        int64_t tokens = evalTextTokens;
        if (spec.evalMaxTokens > 0)
            tokens = std::min(tokens, spec.evalMaxTokens);
        const int64_t windows = tokens / std::max<int64_t>(spec.evalSeqLen, 1);
        const double eval = evalBuild + double(windows) * evalWindow(spec.evalSeqLen);
        if (spec.evalDense)
            e.addPhase("dense evaluation", eval);
        e.addPhase("evaluation", eval, points);
    }
    if (info.needsCalibration) {
        // A method on the GPU reads and rewrites the weights on the host as any other, and runs its passes there.
        const double passes = double(samples) * info.calibrationPasses *
                              (methodOnGpu ? gpuWindowSeconds(spec.calibrationSeqLen)
                                           : windowSeconds(spec.calibrationSeqLen));
        e.addPhase(info.name + " on the calibration windows" + (methodOnGpu ? " (GPU)" : ""),
                   probe.buildSeconds + kRewriteWindows * windowSeconds(256) + passes, points);
    } else {
        e.addPhase(info.name, probe.buildSeconds + kRewriteWindows * windowSeconds(256), points);
    }

    // Sizes: every parameter in the export's type; a pruned run also writes its archive and maybe a GGUF.
    const int64_t params = model.parameterCount();
    const uint32_t bytesPerValue = dtypeInfo(exportDType(spec.dtype)).blockBytes;
    if (spec.exportModel) {
        uint64_t perPoint = uint64_t(params) * uint64_t(bytesPerValue);
        if (info.exportKind == ExportKind::PrunedDense) {
            perPoint += uint64_t(params) * 6 / 2; // run.h5 at 50%: a value (f32) and a 2-byte index per kept weight
            perPoint += uint64_t(params) * ggufBytesPerParam(spec.gguf);
        }
        e.exportBytes = perPoint * uint64_t(points);
        e.addPhase("export", double(perPoint) / kExportBytesPerSecond, points);
    }

    // Peak host memory: the program, the engine's fp32 weights, the method's fp32 copy of what it changes, one
    // window's logits and activations, the calibration signals it keeps.
    const int64_t seq = std::max(spec.evalText.empty() ? 0 : spec.evalSeqLen,
                                 info.needsCalibration ? spec.calibrationSeqLen : int64_t(0));
    const uint64_t weights = uint64_t(params) * 4;
    const uint64_t window = uint64_t(std::max<int64_t>(seq, 1)) *
                            uint64_t(c.vocabSize + 4 * std::max(c.intermediateSize, 3 * c.hiddenSize)) * 4;
    uint64_t signals = 0;
    if (info.needsCalibration) {
        signals = uint64_t(samples) * uint64_t(spec.calibrationSeqLen) * uint64_t(c.hiddenSize) * 4 *
                  uint64_t(std::max(info.calibrationCopies, 1));
    }
    if (evalOnGpu) {
        e.device = probe.device;
        e.deviceBytes = compressionDeviceBytes(model, seq, probe.devicePrecision, methodOnGpu ? signals : 0);
        e.deviceAvailable = probe.gpu->device().totalMemory;
        if (methodOnGpu)
            signals = 0;
    }
    e.hostBytes = kProcessBytes + 2 * weights + window + signals;
    e.hostAvailable = memAvailable();
    e.diskAvailable = diskFreeFor(spec.outputDir);
    if (e.hostAvailable > 0 && e.hostBytes > e.hostAvailable)
        e.refusal = "needs about " + humanBytes(e.hostBytes) + " of memory and " + humanBytes(e.hostAvailable) +
                    " is available: fewer calibration samples or shorter windows, or close other programs";
    else if (e.diskAvailable > 0 && e.exportBytes > e.diskAvailable)
        e.refusal = "its exports take about " + humanBytes(e.exportBytes) + " and " + humanBytes(e.diskAvailable) +
                    " is free where the run folder goes: choose another folder, or do not export";
    return e;
}

Preflight preflightCompression(const CompressionSpec &spec) {
    checkCompressionSpec(spec);
    std::unique_ptr<Model> model = openModel(spec.model);
    Preflight p;
    if (spec.needsCalibration() || !spec.evalText.empty()) {
        const std::unique_ptr<Tokenizer> tok =
            spec.tokenizer.empty() ? loadTokenizer(*model) : loadTokenizerFile(spec.tokenizer);
        if (spec.needsCalibration())
            p.calibrationTokens = estimateTextTokens(*tok, spec.calibrationText);
        if (!spec.evalText.empty())
            p.evalTokens = estimateTextTokens(*tok, spec.evalText);
    }
    const int64_t seq = !spec.evalText.empty() ? spec.evalSeqLen : spec.calibrationSeqLen;
    p.probe = probeForward(*model, std::min<int64_t>(seq, 512));
    // The run's own device: a GPU is probed where the run would take one (createBackend's choice and refusals).
    if (const DeviceChoice choice = DeviceChoice::parse(spec.device); choice.preference != DevicePreference::Cpu)
        probeDeviceForward(p.probe, *model, createBackend(choice), parsePrecision(spec.evalPrecision));
    p.estimate = estimateCompressionRun(spec, *model, p.probe, p.calibrationTokens, p.evalTokens);
    return p;
}

RunEstimate estimateTrainingRun(const TrainingSpec &spec, const Model &model, const TrainingPlan &plan,
                                const TrainingProbe &probe) {
    RunEstimate e;
    // A window of the job's length against the probe's: backward does about twice forward's work at any length.
    const double scale = probe.seqLen > 0 ? forwardFlops(model.config, spec.seqLen) /
                                                std::max(forwardFlops(model.config, probe.seqLen), 1.0)
                                          : 0.0;
    e.addPhase("setup (weights, method)", probe.setupSeconds);
    const double micro = double(spec.batch) / double(std::max<int64_t>(probe.batch, 1)) * scale *
                         (probe.forwardSeconds + probe.backwardSeconds);
    e.addPhase("training steps of " + std::to_string(spec.batch * spec.accumulate) + " x " +
                   std::to_string(spec.seqLen) + " tokens",
               double(spec.accumulate) * micro + probe.fixedSeconds, spec.steps);
    if (plan.evalWindows > 0) {
        int64_t evals = 1 + (spec.evalEvery > 0 ? spec.steps / spec.evalEvery : 0);
        if (spec.evalEvery <= 0 || spec.steps % spec.evalEvery != 0)
            ++evals; // the last step's
        e.addPhase("evaluation on " + std::to_string(plan.evalWindows) + " windows",
                   double(plan.evalWindows) / double(std::max<int64_t>(probe.batch, 1)) * scale *
                       probe.forwardSeconds,
                   evals);
    }
    const uint64_t checkpointBytes = plan.weightBytes + plan.optimizerBytes;
    const int64_t checkpoints = spec.checkpointEvery > 0 ? (spec.steps - 1) / spec.checkpointEvery : 0;
    e.addPhase("checkpoint", double(checkpointBytes) / kExportBytesPerSecond, checkpoints);
    if (spec.exportModel) {
        const uint64_t params = uint64_t(plan.weightBytes / 4);
        e.exportBytes = params * dtypeInfo(exportDType(spec.dtype)).blockBytes;
        e.exportBytes += params * ggufBytesPerParam(spec.gguf);
        e.addPhase("export", double(e.exportBytes) / kExportBytesPerSecond);
    }
    const uint64_t disk = e.exportBytes + (checkpoints > 0 ? 2 * checkpointBytes : 0);
    e.hostBytes = kProcessBytes + plan.totalBytes() + (spec.exportModel ? plan.weightBytes : 0);
    if (const std::optional<DeviceInfo> gpu = trainingGpu(spec)) {
        // The activations live on the GPU; the host keeps the weights, their gradients and, for checkpoints, the
        // moments.
        e.hostBytes -= plan.activationBytes;
        e.device = probe.device.empty() ? gpu->label() : probe.device;
        const ComputePrecision precision = parsePrecision(spec.precision);
        e.deviceBytes = train::opsTrainerDeviceBytes(model.config, plan.parameters, plan.trainableParameters,
                                                      spec.batch, spec.seqLen, precision, spec.recompute,
                                                      train::gpuAttentionChoice(precision, model.config.headDim).store,
                                                      probe.deviceLinearKindBytes);
        e.deviceAvailable = gpu->totalMemory;
    }
    e.hostAvailable = memAvailable();
    e.diskAvailable = diskFreeFor(spec.outputDir);
    if (e.deviceAvailable > 0 && e.deviceBytes > e.deviceAvailable)
        e.refusal = "needs about " + humanBytes(e.deviceBytes) + " of GPU memory and " + e.device + " has " +
                    humanBytes(e.deviceAvailable) + ": a smaller data.batch (with optimizer.accumulate for the same "
                    "step), a shorter data.seq_len, or device cpu";
    else if (e.hostAvailable > 0 && e.hostBytes > e.hostAvailable)
        e.refusal = "needs about " + humanBytes(e.hostBytes) + " of memory and " + humanBytes(e.hostAvailable) +
                    " is available: a smaller data.batch (with optimizer.accumulate for the same step), a shorter "
                    "data.seq_len, recompute, fewer trainable parameters, or close other programs";
    else if (e.diskAvailable > 0 && disk > e.diskAvailable)
        e.refusal = "its exports and checkpoints take about " + humanBytes(disk) + " and " +
                    humanBytes(e.diskAvailable) +
                    " is free where the run folder goes: choose another folder, write fewer checkpoints "
                    "(checkpoint_every 0) or do not export";
    return e;
}

void RunEstimate::addPhase(const std::string &name, double phaseSeconds, int64_t times) {
    if (times <= 0)
        return;
    phases.push_back({times > 1 ? name + " (x" + std::to_string(times) + ")" : name, phaseSeconds, times});
    seconds += phaseSeconds * double(times);
}

std::string RunEstimate::Phase::duration() const {
    if (times <= 1)
        return formatDuration(seconds);
    return formatDuration(seconds) + " each, " + formatDuration(seconds * double(times)) + " in all";
}

std::string RunEstimate::summary() const {
    std::string s = "about " + formatDuration(seconds) + "; memory about " + humanBytes(hostBytes);
    if (hostAvailable > 0)
        s += " of " + humanBytes(hostAvailable) + " available";
    if (deviceBytes > 0) {
        s += "; GPU memory about " + humanBytes(deviceBytes);
        if (deviceAvailable > 0)
            s += " of " + humanBytes(deviceAvailable);
    }
    if (exportBytes > 0) {
        s += "; exports about " + humanBytes(exportBytes);
        if (diskAvailable > 0)
            s += " (" + humanBytes(diskAvailable) + " free)";
    }
    return s;
}

std::string RunEstimate::report() const {
    std::string out;
    char line[160];
    for (const Phase &ph : phases) {
        std::snprintf(line, sizeof line, "  %-52s %s\n", ph.name.c_str(), ph.duration().c_str());
        out += line;
    }
    if (!device.empty())
        out += "GPU: " + device + "\n";
    out += "estimate: " + summary() + "\n";
    if (!refusal.empty())
        out += "does not fit: " + refusal + "\n";
    return out;
}

nlohmann::json RunEstimate::toJson() const {
    nlohmann::json ph = nlohmann::json::array();
    for (const Phase &p : phases)
        ph.push_back({{"phase", p.name}, {"seconds", p.seconds}, {"times", p.times}});
    return {{"seconds", seconds},           {"phases", ph},
            {"host_bytes", hostBytes},      {"host_available", hostAvailable},
            {"export_bytes", exportBytes},  {"disk_available", diskAvailable},
            {"device", device},             {"device_bytes", deviceBytes},
            {"device_available", deviceAvailable}, {"refusal", refusal}};
}

} // namespace lathe
