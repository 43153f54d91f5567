// A training job spec (TrainingSpec): its keys, reading and writing them, the checks that need no model
// (validateTrainingSpec) and where its steps run (trainingGpu). The run itself: run/trainingrun.cpp.

#include "run/trainingrun.h"

#include "base/error.h"
#include "base/outputfiles.h"
#include "base/unicodetext.h"
#include "engine/evaluation.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "numeric/backend.h"
#include "run/speckeys.h"
#include "train/schedule.h"

#include <filesystem>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

namespace {

const SpecKey<TrainingSpec> kKeys[] = {
    {"model", &TrainingSpec::model, true},
    {"tokenizer", &TrainingSpec::tokenizer, true, true},
    {"trainable", &TrainingSpec::trainable},
    {"data.train", &TrainingSpec::trainText, true},
    {"data.eval", &TrainingSpec::evalText, true, true},
    {"data.holdout", &TrainingSpec::holdout},
    {"data.seq_len", &TrainingSpec::seqLen},
    {"data.batch", &TrainingSpec::batch},
    {"data.accumulate", &TrainingSpec::accumulate},
    {"data.eval_windows", &TrainingSpec::evalWindows},
    {"data.seed", &TrainingSpec::seed},
    {"recompute", &TrainingSpec::recompute},
    {"device", &TrainingSpec::device},
    {"precision", &TrainingSpec::precision},
    {"optimizer.lr", &TrainingSpec::lr},
    {"optimizer.schedule", &TrainingSpec::schedule},
    {"optimizer.warmup", &TrainingSpec::warmup},
    {"optimizer.min_lr_ratio", &TrainingSpec::minLrRatio},
    {"optimizer.beta1", &TrainingSpec::beta1},
    {"optimizer.beta2", &TrainingSpec::beta2},
    {"optimizer.eps", &TrainingSpec::eps},
    {"optimizer.weight_decay", &TrainingSpec::weightDecay},
    {"optimizer.clip", &TrainingSpec::clip},
    {"steps", &TrainingSpec::steps},
    {"eval_every", &TrainingSpec::evalEvery},
    {"checkpoint_every", &TrainingSpec::checkpointEvery},
    {"output.dir", &TrainingSpec::outputDir, true},
    {"output.export", &TrainingSpec::exportModel},
    {"output.dtype", &TrainingSpec::dtype},
    {"output.gguf", &TrainingSpec::gguf, false, true},
    {"output.overwrite", &TrainingSpec::overwrite},
};

std::vector<std::string> trainingInputs(const TrainingSpec &s) {
    return {s.model, s.tokenizer, s.trainText, s.evalText, s.specFile};
}

// Why the GPU trainer does not run the spec's method (empty when it does, or when there is none).
std::string gpuMethodRefusal(const TrainingSpec &spec) {
    if (!spec.method)
        return {};
    if (spec.method->info().trainsOnGpu)
        return {};
    std::string runs; // the registry's methods it runs
    for (const CompressionMethod *m : compressionMethods())
        if (m->info().trainsOnGpu)
            runs += (runs.empty() ? "" : ", ") + m->info().name;
    return "the GPU trainer runs plain fine-tuning and " + runs + ", not " + spec.method->info().name;
}

} // namespace

json TrainingSpec::toJson() const {
    json j = json::object();
    writeSpecKeys(*this, kKeys, j);
    if (method) {
        j["method"] = method->info().name;
        methodParams.writeJson(j);
    }
    return j;
}

TrainingSpec TrainingSpec::fromJson(const json &j, const std::string &baseDir) {
    TrainingSpec s;
    std::set<std::string> known = specKeyPaths(kKeys);
    known.insert("comment");
    known.insert("method");
    if (j.is_object() && j.contains("method")) {
        std::string name;
        readJsonValue(j.at("method"), "method", name);
        const CompressionMethod &m = methodNamed(name);
        s.method = dynamic_cast<const FineTuningMethod *>(&m);
        if (!s.method)
            throw LatheError("method '" + name + "' is a post-training method: it runs as a compression job",
                             "run it with lathe-cli compress; training jobs take the fine-tuning methods (lathe-cli methods lists them)");
        s.methodParams = MethodParams(m.info().params);
        for (const ParamSpec &p : m.info().params)
            known.insert(p.key);
    }
    const std::set<std::string> foreign = otherMethodsKeys(known);
    checkSpecKeys(j, known, foreign, "is a parameter of another method", "docs/training.md");
    readSpecKeys(s, kKeys, j, baseDir);
    if (s.method) {
        s.methodParams.readJson(j);
        s.method->checkJob(s.methodParams, {});
    }
    return s;
}

TrainingSpec TrainingSpec::fromFile(const std::string &path) {
    json j;
    try {
        j = json::parse(readTextFile(path));
    } catch (const json::parse_error &e) {
        throw LatheError(path + ": not valid JSON: " + e.what());
    }
    TrainingSpec s = fromJson(j, fs::absolute(fs::path(path)).parent_path().string());
    s.specFile = path;
    return s;
}

std::optional<DeviceInfo> trainingGpu(const TrainingSpec &spec, std::string *why) {
    const DeviceChoice choice = DeviceChoice::parse(spec.device);
    if (choice.preference == DevicePreference::Cpu)
        return std::nullopt;
    std::string whyNone;
    const std::vector<DeviceInfo> &gpus = gpuDevices(&whyNone);
    const auto cpu = [&](const std::string &reason) -> std::optional<DeviceInfo> {
        if (why)
            *why = reason;
        return std::nullopt;
    };
    if (gpus.empty())
        return cpu("no usable GPU: " + whyNone);
    const DeviceInfo &gpu = gpus[size_t(std::min<int>(choice.index, int(gpus.size()) - 1))];
    if (choice.preference == DevicePreference::Cuda)
        return gpu; // what the trainer does not run is refused when it is made, with the reason
    if (const std::string refusal = gpuMethodRefusal(spec); !refusal.empty())
        return cpu(refusal);
    return gpu;
}

void validateTrainingSpec(const TrainingSpec &s) {
    requireInputFile(s.model, "model", true);
    requireInputFile(s.trainText, "training text (data.train)", false);
    if (!s.evalText.empty())
        requireInputFile(s.evalText, "evaluation text (data.eval)", false);
    if (!s.tokenizer.empty())
        requireInputFile(s.tokenizer, "tokenizer", true);
    auto range = [](int64_t v, int64_t lo, int64_t hi, const char *key, const char *hint) {
        if (v < lo || v > hi)
            throw LatheError(std::string("job spec: ") + key + " " + std::to_string(v) + " is outside " +
                                 std::to_string(lo) + "-" + std::to_string(hi),
                             hint);
    };
    range(s.seqLen, 2, 1'000'000, "data.seq_len", "the window length in tokens");
    range(s.batch, 1, 1'000'000, "data.batch", "windows per micro-batch");
    range(s.accumulate, 1, 1'000'000, "data.accumulate", "micro-batches per optimizer step");
    range(s.evalWindows, 1, 1'000'000, "data.eval_windows", "evaluation windows");
    range(s.steps, 1, 1'000'000'000, "steps", "optimizer steps");
    range(s.warmup, 0, s.steps, "optimizer.warmup", "warmup steps, at most the run's steps");
    range(s.evalEvery, 0, 1'000'000'000, "eval_every", "0 evaluates only before and after training");
    range(s.checkpointEvery, 0, 1'000'000'000, "checkpoint_every", "0 writes no checkpoint");
    auto real = [](double v, double lo, double hi, const char *key) {
        if (!(v >= lo && v <= hi))
            throw LatheError(std::string("job spec: ") + key + " " + std::to_string(v) + " is outside [" +
                             std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    real(s.holdout, 0.0, 0.9, "data.holdout");
    if (s.holdout > 0 && !s.evalText.empty())
        throw LatheError("job spec: give data.eval or data.holdout, not both");
    real(s.lr, 0.0, 10.0, "optimizer.lr");
    real(s.minLrRatio, 0.0, 1.0, "optimizer.min_lr_ratio");
    real(s.beta1, 0.0, 0.999999, "optimizer.beta1");
    real(s.beta2, 0.0, 0.999999, "optimizer.beta2");
    real(s.eps, 1e-30, 1.0, "optimizer.eps");
    real(s.weightDecay, 0.0, 1.0, "optimizer.weight_decay");
    real(s.clip, 0.0, 1e9, "optimizer.clip");
    train::parseLrShape(s.schedule);
    try {
        unicode::NamePattern re(s.trainable);
    } catch (const LatheError &e) {
        throw LatheError(std::string("job spec: trainable: ") + e.what(), e.hint());
    }
    DeviceChoice device;
    try {
        device = DeviceChoice::parse(s.device);
    } catch (const LatheError &e) {
        throw LatheError(std::string("job spec: ") + e.what(), e.hint());
    }
    if (parsePrecision(s.precision) == ComputePrecision::Fp16)
        throw LatheError("job spec: precision fp16 is not supported for training", "use bf16 (the default) or fp32");
    if (device.preference == DevicePreference::Cuda) {
        if (const std::string refusal = gpuMethodRefusal(s); !refusal.empty())
            throw LatheError("job spec: device " + s.device + ": " + refusal,
                             "leave out device (the CPU trains every method), or use \"auto\"");
        createBackend(device); // LatheError saying why there is no such usable GPU
    }
    exportDType(s.dtype);
    if (ggufExportDType(s.gguf) && !s.exportModel)
        throw LatheError("job spec: output.gguf needs output.export", "set output.export to true, or leave out output.gguf");
    if (s.method)
        s.method->checkJob(s.methodParams, {});
    if (s.outputDir.empty())
        throw LatheError("job spec: no output.dir given", "the run folder receives the log, checkpoints and the model");
    try {
        checkOutputFolder(s.outputDir, OutputKind::TrainingRun, s.overwrite || s.resume, trainingInputs(s));
    } catch (const LatheError &e) {
        throw LatheError(std::string("job spec: output.dir ") + e.what(), e.hint());
    }
}

} // namespace lathe
