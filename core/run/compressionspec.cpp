#include "run/compressionspec.h"

#include "run/speckeys.h"

#include "base/error.h"
#include "base/outputfiles.h"
#include "engine/deviceforward.h"
#include "engine/evaluation.h"
#include "export/ggufwriter.h"
#include "methods/registry.h"
#include "model/model.h"
#include "numeric/backend.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <type_traits>
#include <variant>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

namespace {

// The job's own keys (the method's parameters are declared by the method): one table for reading and writing.
const SpecKey<CompressionSpec> kJobKeys[] = {
    {"model", &CompressionSpec::model, true},
    {"tokenizer", &CompressionSpec::tokenizer, true, true},
    {"device", &CompressionSpec::device},
    {"calibration.text", &CompressionSpec::calibrationText, true},
    {"calibration.samples", &CompressionSpec::calibrationSamples},
    {"calibration.seq_len", &CompressionSpec::calibrationSeqLen},
    {"calibration.seed", &CompressionSpec::calibrationSeed},
    {"evaluation.text", &CompressionSpec::evalText, true},
    {"evaluation.seq_len", &CompressionSpec::evalSeqLen},
    {"evaluation.max_tokens", &CompressionSpec::evalMaxTokens},
    {"evaluation.dense", &CompressionSpec::evalDense},
    {"evaluation.precision", &CompressionSpec::evalPrecision},
    {"output.dir", &CompressionSpec::outputDir, true},
    {"output.export", &CompressionSpec::exportModel},
    {"output.dtype", &CompressionSpec::dtype},
    {"output.gguf", &CompressionSpec::gguf, false, true},
    {"output.overwrite", &CompressionSpec::overwrite},
    {"output.resume", &CompressionSpec::resume},
    {"output.checkpoint_seconds", &CompressionSpec::checkpointSeconds},
};
// Keys read by hand: the method, the ratio (one value or a sweep) and a free comment.
const char *const kSpecialKeys[] = {"method", "sparsity", "sweep", "comment"};

} // namespace

CompressionSpec::CompressionSpec() { setMethod("wanda"); }

void CompressionSpec::setMethod(const std::string &name) {
    const CompressionMethod &m = methodNamed(name);
    if (m.info().kind != MethodKind::PostTraining)
        throw LatheError("'" + name + "' is a fine-tuning method: it runs as a training job, not a compression job",
                         "write a training job spec with \"method\": \"" + name +
                             "\" and run lathe-cli train JOB.json (docs/training.md)");
    method = &m;
    params = MethodParams(method->info().params);
}

const std::string &CompressionSpec::methodName() const { return method->info().name; }

bool CompressionSpec::needsCalibration() const { return method->info().needsCalibration; }

std::string CompressionSpec::label() const {
    std::string out = methodName();
    for (const ParamSpec &p : params.specs()) {
        const ParamValue &v = params.value(p.key);
        if (v == p.defaultValue)
            continue;
        const std::string key = p.key.substr(p.key.rfind('.') + 1);
        out += ' ';
        if (p.type == ParamType::Choice) {
            out += paramValueText(v);
        } else if (p.type == ParamType::Bool) {
            out += std::get<bool>(v) ? "" : "no ";
            out += key;
        } else {
            out += key;
            out += '=';
            out += paramValueText(v);
        }
    }
    return out;
}

json CompressionSpec::toJson() const {
    json j = json::object();
    j["method"] = methodName();
    writeSpecKeys(*this, kJobKeys, j);
    if (sparsities.size() == 1)
        j["sparsity"] = sparsities[0];
    else
        j["sweep"] = sparsities;
    params.writeJson(j);
    return j;
}

CompressionSpec CompressionSpec::fromJson(const json &j, const std::string &base) {
    if (!j.is_object())
        throw LatheError("job spec: not a JSON object");
    CompressionSpec s;
    if (const json *m = jsonAtPath(j, "method")) {
        std::string name;
        readJsonValue(*m, "method", name);
        try {
            s.setMethod(name);
        } catch (const LatheError &e) {
            throw LatheError(std::string("job spec: ") + e.what(), e.hint());
        }
    }
    std::set<std::string> known = specKeyPaths(kJobKeys);
    known.insert(std::begin(kSpecialKeys), std::end(kSpecialKeys));
    for (const ParamSpec &p : s.params.specs())
        known.insert(p.key);
    const std::set<std::string> foreign = otherMethodsKeys(known);
    checkSpecKeys(j, known, foreign, "is a parameter of another method", "docs/compression.md");
    readSpecKeys(s, kJobKeys, j, base);
    const json *one = jsonAtPath(j, "sparsity"), *sweep = jsonAtPath(j, "sweep");
    if (one && sweep)
        throw LatheError("job spec: give either 'sparsity' or 'sweep', not both");
    if (one) {
        s.sparsities.assign(1, 0.0);
        readJsonValue(*one, "sparsity", s.sparsities[0]);
    }
    if (sweep) {
        if (!sweep->is_array())
            throw LatheError("job spec: 'sweep' must be an array of numbers (" + sweep->dump() + ")");
        s.sparsities.clear();
        for (const json &v : *sweep) {
            if (!v.is_number())
                throw LatheError("job spec: 'sweep' must be an array of numbers (" + v.dump() + ")");
            s.sparsities.push_back(v.get<double>());
        }
    }
    s.params.readJson(j);
    return s;
}

CompressionSpec CompressionSpec::fromFile(const std::string &path) {
    json j;
    try {
        j = json::parse(readTextFile(path));
    } catch (const json::parse_error &e) {
        throw LatheError(path + ": not valid JSON: " + e.what());
    }
    const fs::path parent = fs::absolute(fs::path(path)).parent_path();
    CompressionSpec s = fromJson(j, parent.string());
    s.specFile = path;
    return s;
}

std::string sweepFolderName(double sparsity) {
    char sub[32];
    std::snprintf(sub, sizeof sub, "sparsity-%.2f", sparsity);
    return sub;
}

std::string pointFolder(const CompressionSpec &spec, size_t i) {
    const fs::path dir(spec.outputDir);
    return (spec.sparsities.size() > 1 ? dir / sweepFolderName(spec.sparsities[i]) : dir).string();
}

namespace {

// The files and folders a run reads: its output folder may be none of them, lie in none and contain none.
std::vector<std::string> specInputs(const CompressionSpec &s) {
    return {s.model, s.tokenizer, s.calibrationText, s.evalText, s.specFile};
}

} // namespace

void validateSpec(const CompressionSpec &s) {
    requireInputFile(s.model, "model", true);
    DeviceChoice device;
    try {
        device = DeviceChoice::parse(s.device);
    } catch (const LatheError &e) {
        throw LatheError(std::string("job spec: ") + e.what(), e.hint());
    }
    parsePrecision(s.evalPrecision);
    if (device.preference == DevicePreference::Cuda)
        createBackend(device); // LatheError saying why there is no such usable GPU
    if (s.sparsities.empty())
        throw LatheError("job spec: 'sweep' is empty");
    for (double v : s.sparsities)
        if (!(v >= 0.0 && v < 1.0))
            throw LatheError("job spec: sparsity " + std::to_string(v) + " is outside [0, 1)",
                             "0.5 prunes half the weights; SliceGPT's 0.25 removes a quarter of the width");
    s.method->checkJob(s.params, s.sparsities);
    if (s.needsCalibration()) {
        requireInputFile(s.calibrationText, "calibration text", false);
        if (s.calibrationSamples <= 0 || s.calibrationSeqLen <= 1)
            throw LatheError("job spec: calibration samples and seq_len must be positive");
        if (s.calibrationSamples > 1'000'000 || s.calibrationSeqLen > 1'000'000)
            throw LatheError("job spec: calibration samples and seq_len must be at most 1000000 each");
    }
    if (!s.evalText.empty()) {
        requireInputFile(s.evalText, "evaluation text", false);
        if (s.evalSeqLen <= 1 || s.evalSeqLen > 1'000'000)
            throw LatheError("job spec: evaluation seq_len must be above 1 (and at most 1000000)");
        if (s.evalMaxTokens < 0)
            throw LatheError("job spec: evaluation.max_tokens must be 0 (the whole text) or positive");
    }
    if (!s.tokenizer.empty())
        requireInputFile(s.tokenizer, "tokenizer", true);
    exportDType(s.dtype);
    if (ggufExportDType(s.gguf) && !s.exportModel)
        throw LatheError("job spec: output.gguf needs output.export", "set output.export to true, or leave out output.gguf");
    if (s.outputDir.empty())
        throw LatheError("job spec: no output.dir given", "the run folder receives the log, results and exports");
    if (!(s.checkpointSeconds >= 0 && s.checkpointSeconds <= 1e9))
        throw LatheError("job spec: output.checkpoint_seconds must be between 0 and 1e9",
                         "0 saves a layer checkpoint after every block; 300 every five minutes at most");
    if (s.overwrite && s.resume)
        throw LatheError("job spec: output.overwrite and output.resume exclude each other",
                         "overwrite starts the run afresh, resume continues the interrupted one");
    for (size_t i = 0; i < s.sparsities.size(); ++i)
        for (size_t k = 0; k < i; ++k)
            if (sweepFolderName(s.sparsities[i]) == sweepFolderName(s.sparsities[k]))
                throw LatheError("job spec: sweep values " + std::to_string(s.sparsities[k]) + " and " +
                                     std::to_string(s.sparsities[i]) + " would share the folder " +
                                     sweepFolderName(s.sparsities[i]),
                                 "sweep values must differ in their first two decimals");
    try {
        // A resumed run continues in its folder: like overwriting, it needs the marker of a run folder there.
        checkOutputFolder(s.outputDir, OutputKind::CompressionRun, s.overwrite || s.resume, specInputs(s));
    } catch (const LatheError &e) {
        throw LatheError(std::string("job spec: output.dir ") + e.what(), e.hint());
    }
}

void checkSpecAgainstModel(const CompressionSpec &spec, const Model &model) {
    const ModelConfig &cfg = model.config;
    for (double s : spec.sparsities)
        spec.method->checkRun(model, s, spec.params);
    if (spec.exportModel && ggufExportDType(spec.gguf)) {
        std::optional<std::string> why;
        if (spec.method->info().exportKind == ExportKind::Sliced)
            why = "a sliced model has shortcut matrices on its residual connections and residual widths that differ "
                  "from its embedding width; llama.cpp's graphs have neither";
        else
            why = ggufExportBlocker(model);
        if (why)
            throw LatheError("output.gguf: this run's model cannot be written as GGUF: " + *why,
                             "leave out output.gguf; the Hugging Face folder is still written");
    }
    const int64_t maxPos = cfg.maxPositions;
    if (spec.needsCalibration() && spec.calibrationSeqLen > maxPos)
        throw LatheError("calibration seq_len " + std::to_string(spec.calibrationSeqLen) + " is above the model's " +
                             std::to_string(maxPos) + " positions",
                         "use calibration.seq_len <= " + std::to_string(maxPos));
    if (!spec.evalText.empty() && spec.evalSeqLen > maxPos)
        throw LatheError("evaluation seq_len " + std::to_string(spec.evalSeqLen) + " is above the model's " +
                             std::to_string(maxPos) + " positions",
                         "use evaluation.seq_len <= " + std::to_string(maxPos));
}

} // namespace lathe
