#include "run/compressionrun.h"

#include "base/dtype.h"
#include "base/error.h"
#include "base/outputfiles.h"
#include "engine/calibration.h"
#include "engine/deviceforward.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "export/hfwriter.h"
#include "export/slicedexport.h"
#include "export/sparsearchive.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "methods/magnitude.h"
#include "methods/normfusion.h"
#include "methods/slicegpt.h"
#include "methods/wanda.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "tokenizers/tokenizer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <optional>
#include <type_traits>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string resolve(const std::string &p, const std::string &base) {
    if (p.empty() || base.empty() || fs::path(p).is_absolute())
        return p;
    return (fs::path(base) / p).lexically_normal().string();
}

// Reads `key` of object `j` into `out` when present, with the key named in the error.
template <class T> void take(const json &j, const char *key, T &out, const std::string &where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
        return;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        // 128.9 or 1e28 is not silently truncated (or undefined): integers must be written as integers in range.
        const bool fits = std::is_signed_v<T> ? it->is_number_integer() : it->is_number_unsigned();
        if (!fits)
            throw LatheError("job spec: '" + where + key + "' must be a " + (std::is_signed_v<T> ? "" : "non-negative ") +
                             "whole number (" + it->dump() + ")");
    }
    try {
        out = it->get<T>();
    } catch (const json::exception &) {
        throw LatheError("job spec: '" + where + key + "' has the wrong type (" + it->dump() + ")");
    }
}

void onlyKeys(const json &j, std::initializer_list<const char *> keys, const std::string &where) {
    if (!j.is_object())
        throw LatheError("job spec: '" + where + "' must be an object");
    for (const auto &[k, v] : j.items()) {
        bool known = false;
        for (const char *key : keys)
            known |= k == key;
        if (!known)
            throw LatheError("job spec: unknown key '" + where + (where.empty() ? "" : ".") + k + "'",
                             "see docs/compression.md for the job spec");
    }
}

int bytesPerValue(const std::string &dtype) { return dtype == "f32" ? 4 : 2; }

// The run's log and per-layer progress files. Thread-safe (progress comes from the worker thread only, but the
// log may be written from the caller too). The log and progress lines are appended with checked writes; a failure
// there (a full disk) is reported once as a warning and does not stop the run, whose results and exports are
// checked where they are written.
class RunFiles {
public:
    explicit RunFiles(const fs::path &dir) : m_dir(dir) {
        m_log.emplace(dir / "run.log", CheckedFile::Append);
        m_progress.emplace(dir / "progress.jsonl", CheckedFile::Append);
    }
    void log(const std::string &line) {
        std::lock_guard<std::mutex> lock(m_mutex);
        std::time_t t = std::time(nullptr);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
        append(*m_log, std::string(stamp) + "  " + line + "\n");
        spdlog::info("{}", line);
    }
    void progress(double fraction, const std::string &stage, double eta) {
        std::lock_guard<std::mutex> lock(m_mutex);
        append(*m_progress, json{{"fraction", fraction}, {"stage", stage}, {"eta_s", eta}}.dump() + "\n");
    }
    // Throws LatheError when results.json cannot be written; the previous one then stays as it was.
    void results(const CompressionRunResult &r) { writeFileAtomic(m_dir / "results.json", r.toJson().dump(2) + "\n"); }
    // For the failure paths: a results.json that cannot be written is said in the log, not thrown over the error.
    void resultsNoThrow(const CompressionRunResult &r) {
        try {
            results(r);
        } catch (const LatheError &e) {
            spdlog::warn("{}", e.fullMessage());
        }
    }

private:
    void append(CheckedFile &f, const std::string &text) {
        try {
            f.write(text);
        } catch (const LatheError &e) {
            if (!m_warned)
                spdlog::warn("{} (further log lines may be lost)", e.fullMessage());
            m_warned = true;
        }
    }
    fs::path m_dir;
    std::mutex m_mutex;
    std::optional<CheckedFile> m_log, m_progress;
    bool m_warned = false;
};

std::string fmtSeconds(double s) {
    char b[32];
    if (s >= 3600)
        std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60)
        std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else
        std::snprintf(b, sizeof b, "%.0fs", s);
    return b;
}

// The method parameters of one run of the spec (also built up front to check them before any work).
SliceGptParams sliceGptParams(const CompressionSpec &spec, double sparsity) {
    SliceGptParams p;
    p.sparsity = sparsity;
    p.roundTo = spec.roundTo;
    p.sliceHead = spec.sliceHead;
    p.randomOrientation = spec.randomOrientation;
    p.damping = spec.damping;
    if (spec.layerSparsity.is_array())
        p.layerSparsity = spec.layerSparsity.get<std::vector<double>>();
    return p;
}

PruningSelection pruningSelection(const CompressionSpec &spec, double sparsity, int layers) {
    PruningSelection sel;
    sel.pattern = parsePattern(spec.pattern, sparsity);
    sel.targets = spec.targets;
    sel.layerRatio = parseLayerRatios(spec.layerSparsity, layers);
    return sel;
}

} // namespace

json CompressionSpec::toJson() const {
    json j = {{"model", model},
              {"method", method},
              {"pattern", pattern},
              {"targets", targets},
              {"slicegpt", {{"slice_head", sliceHead}, {"random_orientation", randomOrientation}, {"round_to", roundTo},
                            {"damping", damping}, {"precision", slicePrecision}}},
              {"calibration", {{"text", calibrationText}, {"samples", calibrationSamples},
                               {"seq_len", calibrationSeqLen}, {"seed", calibrationSeed}}},
              {"evaluation", {{"text", evalText}, {"seq_len", evalSeqLen}, {"max_tokens", evalMaxTokens},
                              {"dense", evalDense}, {"precision", evalPrecision}}},
              {"device", device},
              {"output",
               {{"dir", outputDir}, {"export", exportModel}, {"dtype", dtype}, {"overwrite", overwrite}, {"resume", resume}}}};
    if (!tokenizer.empty())
        j["tokenizer"] = tokenizer;
    if (sparsities.size() == 1)
        j["sparsity"] = sparsities[0];
    else
        j["sweep"] = sparsities;
    if (!layerSparsity.is_null())
        j["layer_sparsity"] = layerSparsity;
    return j;
}

CompressionSpec CompressionSpec::fromJson(const json &j, const std::string &base) {
    onlyKeys(j, {"model", "tokenizer", "method", "sparsity", "sweep", "pattern", "targets", "layer_sparsity",
                 "slicegpt", "calibration", "evaluation", "output", "device", "comment"},
             "");
    CompressionSpec s;
    take(j, "model", s.model, "");
    take(j, "tokenizer", s.tokenizer, "");
    take(j, "method", s.method, "");
    take(j, "device", s.device, "");
    if (j.contains("sparsity") && j.contains("sweep"))
        throw LatheError("job spec: give either 'sparsity' or 'sweep', not both");
    if (j.contains("sparsity")) {
        double v = 0;
        take(j, "sparsity", v, "");
        s.sparsities = {v};
    }
    take(j, "sweep", s.sparsities, "");
    take(j, "pattern", s.pattern, "");
    take(j, "targets", s.targets, "");
    if (j.contains("layer_sparsity"))
        s.layerSparsity = j["layer_sparsity"];
    if (j.contains("slicegpt")) {
        const json &g = j["slicegpt"];
        onlyKeys(g, {"slice_head", "random_orientation", "round_to", "damping", "precision"}, "slicegpt");
        take(g, "precision", s.slicePrecision, "slicegpt.");
        take(g, "slice_head", s.sliceHead, "slicegpt.");
        take(g, "random_orientation", s.randomOrientation, "slicegpt.");
        take(g, "round_to", s.roundTo, "slicegpt.");
        take(g, "damping", s.damping, "slicegpt.");
    }
    if (j.contains("calibration")) {
        const json &c = j["calibration"];
        onlyKeys(c, {"text", "samples", "seq_len", "seed"}, "calibration");
        take(c, "text", s.calibrationText, "calibration.");
        take(c, "samples", s.calibrationSamples, "calibration.");
        take(c, "seq_len", s.calibrationSeqLen, "calibration.");
        take(c, "seed", s.calibrationSeed, "calibration.");
    }
    if (j.contains("evaluation")) {
        const json &e = j["evaluation"];
        onlyKeys(e, {"text", "seq_len", "max_tokens", "dense", "precision"}, "evaluation");
        take(e, "precision", s.evalPrecision, "evaluation.");
        take(e, "text", s.evalText, "evaluation.");
        take(e, "seq_len", s.evalSeqLen, "evaluation.");
        take(e, "max_tokens", s.evalMaxTokens, "evaluation.");
        take(e, "dense", s.evalDense, "evaluation.");
    }
    if (j.contains("output")) {
        const json &o = j["output"];
        onlyKeys(o, {"dir", "export", "dtype", "overwrite", "resume"}, "output");
        take(o, "dir", s.outputDir, "output.");
        take(o, "export", s.exportModel, "output.");
        take(o, "dtype", s.dtype, "output.");
        take(o, "overwrite", s.overwrite, "output.");
        take(o, "resume", s.resume, "output.");
    }
    s.model = resolve(s.model, base);
    s.tokenizer = resolve(s.tokenizer, base);
    s.calibrationText = resolve(s.calibrationText, base);
    s.evalText = resolve(s.evalText, base);
    s.outputDir = resolve(s.outputDir, base);
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

namespace {

// The folder of one point of a sweep inside the run folder.
std::string runFolderName(double sparsity) {
    char sub[32];
    std::snprintf(sub, sizeof sub, "sparsity-%.2f", sparsity);
    return sub;
}

// Where point `i` of the spec writes its export and archive: the run folder itself for a single run.
fs::path pointFolder(const CompressionSpec &spec, size_t i) {
    const fs::path dir(spec.outputDir);
    return spec.sparsities.size() > 1 ? dir / runFolderName(spec.sparsities[i]) : dir;
}

// The files and folders a run reads: its output folder may be none of them, lie in none and contain none.
std::vector<std::string> specInputs(const CompressionSpec &s) {
    return {s.model, s.tokenizer, s.calibrationText, s.evalText, s.specFile};
}

} // namespace

void validateSpec(const CompressionSpec &s) {
    // `folderOk`: a model may be a folder; texts and tokenizers must be regular files (a folder or a FIFO given as
    // a text would be read as nothing, or hang).
    auto needFile = [](const std::string &p, const std::string &what, bool folderOk) {
        std::error_code ec;
        if (p.empty())
            throw LatheError("job spec: no " + what + " given");
        const fs::file_status st = fs::status(p, ec);
        if (!fs::exists(st))
            throw LatheError("job spec: the " + what + " '" + p + "' does not exist");
        if (!fs::is_regular_file(st) && !(folderOk && fs::is_directory(st)))
            throw LatheError("job spec: the " + what + " '" + p + "' is not a " + (folderOk ? "file or folder" : "file"));
    };
    needFile(s.model, "model", true);
    if (s.device != "auto" && s.device != "cpu" && s.device != "cuda")
        throw LatheError("job spec: unknown device '" + s.device + "'", "use auto, cpu or cuda");
    parsePrecision(s.evalPrecision);
    parsePrecision(s.slicePrecision);
    if (s.device == "cuda")
        createBackend(DevicePreference::Cuda); // LatheError saying why there is no usable GPU
    if (s.method != "magnitude" && s.method != "wanda" && s.method != "slicegpt")
        throw LatheError("job spec: unknown method '" + s.method + "'", "use magnitude, wanda or slicegpt");
    if (s.sparsities.empty())
        throw LatheError("job spec: 'sweep' is empty");
    for (double v : s.sparsities)
        if (!(v >= 0.0 && v < 1.0))
            throw LatheError("job spec: sparsity " + std::to_string(v) + " is outside [0, 1)",
                             "0.5 prunes half the weights; SliceGPT's 0.25 removes a quarter of the width");
    if (s.method != "slicegpt") {
        const SparsityPattern p = parsePattern(s.pattern, s.sparsities[0]);
        if (p.isNm() && s.sparsities.size() > 1)
            throw LatheError("job spec: an N:M pattern fixes the sparsity; a sweep makes no sense with it");
    } else {
        if (!(s.damping >= 0.0 && s.damping <= 1.0))
            throw LatheError("job spec: slicegpt.damping " + std::to_string(s.damping) + " is outside [0, 1]",
                             "the ridge added to the covariance, as a fraction of its mean diagonal; 0.01 is usual");
        if (s.roundTo < 1 || s.roundTo > 4096)
            throw LatheError("job spec: slicegpt.round_to " + std::to_string(s.roundTo) + " is outside 1-4096",
                             "widths are rounded down to a multiple of it; 8 suits GPU kernels");
    }
    if (s.needsCalibration()) {
        needFile(s.calibrationText, "calibration text", false);
        if (s.calibrationSamples <= 0 || s.calibrationSeqLen <= 1)
            throw LatheError("job spec: calibration samples and seq_len must be positive");
        if (s.calibrationSamples > 1'000'000 || s.calibrationSeqLen > 1'000'000)
            throw LatheError("job spec: calibration samples and seq_len must be at most 1000000 each");
    }
    if (!s.evalText.empty()) {
        needFile(s.evalText, "evaluation text", false);
        if (s.evalSeqLen <= 1 || s.evalSeqLen > 1'000'000)
            throw LatheError("job spec: evaluation seq_len must be above 1 (and at most 1000000)");
        if (s.evalMaxTokens < 0)
            throw LatheError("job spec: evaluation.max_tokens must be 0 (the whole text) or positive");
    }
    if (!s.tokenizer.empty())
        needFile(s.tokenizer, "tokenizer", true);
    if (s.dtype != "f32" && s.dtype != "f16" && s.dtype != "bf16")
        throw LatheError("job spec: output.dtype '" + s.dtype + "' is not f32, f16 or bf16");
    if (s.outputDir.empty())
        throw LatheError("job spec: no output.dir given", "the run folder receives the log, results and exports");
    if (s.overwrite && s.resume)
        throw LatheError("job spec: output.overwrite and output.resume exclude each other",
                         "overwrite starts the run afresh, resume continues the interrupted one");
    for (size_t i = 0; i < s.sparsities.size(); ++i)
        for (size_t k = 0; k < i; ++k)
            if (runFolderName(s.sparsities[i]) == runFolderName(s.sparsities[k]))
                throw LatheError("job spec: sweep values " + std::to_string(s.sparsities[k]) + " and " +
                                     std::to_string(s.sparsities[i]) + " would share the folder " +
                                     runFolderName(s.sparsities[i]),
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
    if (spec.method == "slicegpt") {
        const std::string why = slicingUnsupportedReason(model);
        if (!why.empty())
            throw LatheError(spec.model + ": " + why, "SliceGPT supports Llama-family, OPT, GPT-2 and Phi-2 models");
        for (double s : spec.sparsities)
            sliceGptWidths(cfg.hiddenSize, cfg.numLayers, sliceGptParams(spec, s));
    } else {
        if (cfg.family == ArchFamily::Bert && spec.method == "wanda")
            throw LatheError(spec.model + ": Wanda here prunes decoder language models", "use magnitude");
        for (double s : spec.sparsities)
            selectTargets(model, pruningSelection(spec, s, int(cfg.numLayers)));
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

namespace {

// What a run needs before it writes anything, made with every model-dependent check.
struct PreparedRun {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer; // when calibration or evaluation needs text
};

PreparedRun prepareRun(const CompressionSpec &spec) {
    validateSpec(spec);
    PreparedRun p;
    p.model = openModel(spec.model);
    checkSpecAgainstModel(spec, *p.model);
    if (spec.needsCalibration() || !spec.evalText.empty())
        p.tokenizer = spec.tokenizer.empty() ? loadTokenizer(*p.model) : loadTokenizerFile(spec.tokenizer);
    return p;
}

// Creates the run folder (replacing a previous run there when the spec allows it: validateSpec has checked that
// it is one) with its marker, after removing the temporaries that killed runs left beside it. `keep`: a resumed
// run's folder, kept as it is (less the temporaries in it).
void createRunFolder(const CompressionSpec &spec, bool keep) {
    const fs::path dir(spec.outputDir);
    std::error_code ec;
    cleanStaleTemporaries(fs::absolute(dir, ec).parent_path());
    if (keep) {
        cleanStaleTemporaries(dir);
        return;
    }
    if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
        const fs::path old = temporarySibling(dir, "lathe-old");
        fs::rename(dir, old);
        fs::remove_all(old, ec);
        if (ec)
            spdlog::warn("{}: the previous run was left at {}: {}", spec.outputDir, old.string(), ec.message());
    }
    fs::create_directories(dir);
    writeOutputMarker(dir, OutputKind::CompressionRun);
}

} // namespace

void checkCompressionSpec(const CompressionSpec &spec) { prepareRun(spec); }

json CompressionRunResult::toJson() const {
    json runsJ = json::array();
    for (const CompressionRunRecord &r : runs)
        runsJ.push_back({{"sparsity", r.sparsity}, {"perplexity", r.perplexity}, {"params", r.params},
                         {"bytes_dense", r.bytesDense}, {"bytes_compact", r.bytesCompact},
                         {"method_seconds", r.methodSeconds}, {"eval_seconds", r.evalSeconds},
                         {"export_dir", r.exportDir}, {"layers", r.layers}, {"notes", r.notes}});
    return {{"status", status},
            {"error", error},
            {"dense", {{"perplexity", densePerplexity}, {"params", denseParams}, {"bytes", denseBytes}}},
            {"evaluation", {{"tokens", evalTokens}, {"windows", evalWindows}}},
            {"calibration", {{"sequences", calibrationWindows.size()}, {"windows", calibrationWindows},
                             {"note", calibrationNote}, {"signal_bytes", calibrationBytes}}},
            {"runs", runsJ},
            {"seconds", seconds}};
}

CompressionRunResult CompressionRunResult::fromJson(const json &j) {
    CompressionRunResult r;
    try {
        r.status = j.at("status").get<std::string>();
        r.error = j.value("error", "");
        const json &d = j.at("dense");
        r.densePerplexity = d.value("perplexity", 0.0);
        r.denseParams = d.value("params", int64_t(0));
        r.denseBytes = d.value("bytes", uint64_t(0));
        const json &e = j.at("evaluation");
        r.evalTokens = e.value("tokens", int64_t(0));
        r.evalWindows = e.value("windows", int64_t(0));
        const json &c = j.at("calibration");
        r.calibrationNote = c.value("note", "");
        r.calibrationWindows = c.value("windows", std::vector<int64_t>{});
        r.calibrationBytes = c.value("signal_bytes", uint64_t(0));
        for (const json &x : j.at("runs")) {
            CompressionRunRecord rec;
            rec.sparsity = x.at("sparsity").get<double>();
            rec.perplexity = x.value("perplexity", 0.0);
            rec.params = x.value("params", int64_t(0));
            rec.bytesDense = x.value("bytes_dense", uint64_t(0));
            rec.bytesCompact = x.value("bytes_compact", uint64_t(0));
            rec.methodSeconds = x.value("method_seconds", 0.0);
            rec.evalSeconds = x.value("eval_seconds", 0.0);
            rec.exportDir = x.value("export_dir", "");
            rec.layers = x.value("layers", json());
            rec.notes = x.value("notes", json::array());
            r.runs.push_back(std::move(rec));
        }
        r.seconds = j.value("seconds", 0.0);
    } catch (const json::exception &e) {
        throw LatheError(std::string("results.json: ") + e.what(), "the file is damaged");
    }
    return r;
}

namespace {

// What an interrupted run of `spec` left in its folder and may be kept: the dense evaluation and the finished
// points (a prefix of the sweep) whose exports are in place. nullopt when the folder holds no run to continue.
// LatheError when it holds another job's run.
std::optional<CompressionRunResult> previousRun(const CompressionSpec &spec) {
    const fs::path dir(spec.outputDir);
    std::error_code ec;
    if (!fs::exists(dir / "spec.json", ec) || !fs::exists(dir / "results.json", ec))
        return std::nullopt;
    json before, now;
    try {
        before = json::parse(readTextFile((dir / "spec.json").string()));
    } catch (const json::exception &e) {
        throw LatheError((dir / "spec.json").string() + ": " + e.what(), "the run folder is damaged: use --overwrite");
    }
    now = spec.toJson();
    for (json *j : {&before, &now})
        if (j->contains("output") && (*j)["output"].is_object()) {
            (*j)["output"].erase("overwrite");
            (*j)["output"].erase("resume");
        }
    if (before != now) {
        std::string key;
        for (const auto &[k, v] : now.items())
            if (!before.contains(k) || before[k] != v)
                key += (key.empty() ? "" : ", ") + k;
        throw LatheError("--resume: the run folder " + spec.outputDir + " holds another job (" +
                             (key.empty() ? std::string("keys") : key) + " differ)",
                         "resume with the job spec the run was started with, or start afresh with --overwrite");
    }
    CompressionRunResult r;
    try {
        r = CompressionRunResult::fromJson(json::parse(readTextFile((dir / "results.json").string())));
    } catch (const json::exception &e) {
        throw LatheError((dir / "results.json").string() + ": " + e.what(), "the run folder is damaged: use --overwrite");
    }
    // Keep the finished points whose outputs are all there (results.json is written after them).
    const size_t n = spec.sparsities.size();
    size_t kept = 0;
    for (; kept < r.runs.size() && kept < n; ++kept) {
        const CompressionRunRecord &rec = r.runs[kept];
        const fs::path runDir = pointFolder(spec, kept);
        const bool pruning = spec.method != "slicegpt";
        const bool complete = rec.sparsity == spec.sparsities[kept] &&
                              (!spec.exportModel || outputKindOf(runDir / "model") == OutputKind::ModelExport) &&
                              (!spec.exportModel || !pruning || !sparseArchiveAvailable() ||
                               fs::exists(runDir / "run.h5", ec));
        if (!complete)
            break;
    }
    r.runs.resize(kept);
    return r;
}

} // namespace

CompressionRunResult runCompression(const CompressionSpec &spec, const ProgressCallback &progress) {
    const double t0 = now();
    // Everything that can refuse the job happens before the run folder is created, so that a refused run leaves
    // nothing behind that would block its corrected re-run.
    PreparedRun prepared = prepareRun(spec);
    // Before the texts are tokenized: a folder holding another job is refused at once.
    const std::optional<CompressionRunResult> previous = spec.resume ? previousRun(spec) : std::nullopt;
    std::unique_ptr<Model> model = std::move(prepared.model);
    const ModelConfig &cfg = model->config;
    std::string deviceNote;
    const std::unique_ptr<ComputeBackend> device = createBackend(
        spec.device == "cpu" ? DevicePreference::Cpu : spec.device == "cuda" ? DevicePreference::Cuda
                                                                             : DevicePreference::Auto,
        &deviceNote);
    std::vector<int32_t> evalIds;
    CalibrationSet calibration;
    size_t calibrationTokens = 0;
    if (spec.needsCalibration()) {
        const std::vector<int32_t> ids =
            prepared.tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.calibrationText)));
        CalibrationParams cp;
        cp.samples = spec.calibrationSamples;
        cp.seqLen = spec.calibrationSeqLen;
        cp.seed = spec.calibrationSeed;
        calibration = makeCalibrationSet(ids, cp);
        calibrationTokens = ids.size();
    }
    if (!spec.evalText.empty()) {
        evalIds = prepared.tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.evalText)));
        if (int64_t(evalIds.size()) < spec.evalSeqLen)
            throw LatheError(spec.evalText + ": " + std::to_string(evalIds.size()) +
                                 " tokens, fewer than one evaluation window of " + std::to_string(spec.evalSeqLen),
                             "use a longer text or a shorter evaluation.seq_len");
    }

    const fs::path outDir(spec.outputDir);
    createRunFolder(spec, previous.has_value());
    RunFiles files(outDir);
    writeFileAtomic(outDir / "spec.json", spec.toJson().dump(2) + "\n");
    CompressionRunResult result = previous.value_or(CompressionRunResult{});
    const size_t keptRuns = result.runs.size();
    result.status = "running";
    result.error.clear();
    files.results(result);
    double lastWrite = 0;
    std::string lastStage;
    // Wraps the caller's callback: adds the ETA, records progress.jsonl, scales to the job's fraction.
    auto report = [&](double fraction, const std::string &stage) {
        const double elapsed = now() - t0;
        const double eta = fraction > 0.01 ? elapsed * (1.0 - fraction) / fraction : -1.0;
        const std::string head = stage.substr(0, stage.find(" ("));
        if (head != lastStage || now() - lastWrite > 5.0) {
            files.progress(fraction, stage, eta);
            lastStage = head;
            lastWrite = now();
        }
        reportProgress(progress, fraction, eta >= 0 ? stage + " — ETA " + fmtSeconds(eta) : stage);
    };

    try {
        files.log("job: " + spec.method + " on " + spec.model + " -> " + spec.outputDir);
        if (previous)
            files.log("resumed: " + std::to_string(keptRuns) + " of " + std::to_string(spec.sparsities.size()) +
                      " points kept" + (previous->densePerplexity > 0 ? ", dense evaluation kept" : ""));
        files.log("device: " + device->device().name + (deviceNote.empty() ? "" : " (" + deviceNote + ")"));
        const int bpv = bytesPerValue(spec.dtype);
        if (spec.needsCalibration()) {
            if (previous && !previous->calibrationWindows.empty() && previous->calibrationWindows != calibration.windows)
                throw LatheError("--resume: the calibration windows differ from the interrupted run's (has the "
                                 "calibration text changed?)",
                                 "start afresh with --overwrite");
            result.calibrationNote = calibration.note;
            result.calibrationWindows = calibration.windows;
            result.calibrationBytes = calibration.signalBytes(cfg.hiddenSize) * (spec.method == "wanda" ? 2 : 1);
            files.log("calibration: " + std::to_string(calibration.sequences.size()) + " x " +
                      std::to_string(calibration.seqLen) + " tokens from " + spec.calibrationText + " (" +
                      std::to_string(calibrationTokens) + " tokens)" +
                      (calibration.note.empty() ? "" : "; " + calibration.note));
            files.log("calibration signals will hold " + std::to_string(result.calibrationBytes >> 20) +
                      " MiB of host memory");
        }
        result.denseParams = model->parameterCount();
        result.denseBytes = uint64_t(result.denseParams) * uint64_t(bpv);

        // Fractions: dense evaluation one share, each run (method + evaluation + export) three shares.
        const bool evalDense = spec.evalDense && !evalIds.empty();
        const double shares = (evalDense ? 1.0 : 0.0) + 3.0 * double(spec.sparsities.size());
        double done = 0;
        auto part = [&](double width, const std::string &prefix) {
            const double from = done / shares, to = (done + width) / shares;
            return [&report, from, to, prefix](const Progress &p) {
                report(from + (to - from) * p.fraction, prefix + p.stage);
                return true;
            };
        };
        PerplexityParams pp;
        pp.seqLen = spec.evalSeqLen;
        pp.maxTokens = spec.evalMaxTokens;
        // Evaluation on the GPU forward pass when the device is one, else the CPU engine.
        const bool gpuEval = device->name() == "cuda" && deviceForwardCompiled();
        auto evaluate = [&](const Model &m, const ProgressCallback &pc) {
            if (gpuEval) {
                DeviceForwardOptions o;
                o.precision = parsePrecision(spec.evalPrecision);
                auto gpu = createDeviceForward(m, o);
                return evaluatePerplexity(*gpu, m.config.maxPositions, evalIds, pp, pc);
            }
            Transformer t(m);
            return evaluatePerplexity(t, evalIds, pp, pc);
        };
        if (evalDense && previous && previous->densePerplexity > 0) {
            done += 1.0; // kept from the interrupted run
        } else if (evalDense) {
            const PerplexityResult r = evaluate(*model, part(1.0, "dense evaluation: "));
            result.densePerplexity = r.perplexity;
            result.evalTokens = r.textTokens;
            result.evalWindows = r.windows;
            files.log("dense: perplexity " + std::to_string(r.perplexity) + " (" + std::to_string(r.windows) + " x " +
                      std::to_string(pp.seqLen) + " tokens)");
            files.results(result); // kept by a resumed run
            done += 1.0;
        }
        model.reset();

        const size_t n = spec.sparsities.size();
        done += 3.0 * double(keptRuns);
        for (size_t i = keptRuns; i < n; ++i) {
            const double s = spec.sparsities[i];
            CompressionRunRecord rec;
            rec.sparsity = s;
            const std::string tag = n > 1 ? "run " + std::to_string(i + 1) + "/" + std::to_string(n) + ": " : "";
            const fs::path runDir = pointFolder(spec, i);
            fs::create_directories(runDir);
            std::unique_ptr<Model> m = openModel(spec.model); // fresh for every run: the source is never written
            const double tm = now();
            PruningResult pruning;
            if (spec.method == "slicegpt") {
                SliceGptParams sp = sliceGptParams(spec, s);
                sp.solver = device.get();
                sp.gpu = device->name() == "cuda";
                sp.precision = parsePrecision(spec.slicePrecision);
                const SliceGptResult r = sliceGpt(*m, calibration, sp, part(2.0, tag));
                for (const SliceGptLayerReport &l : r.layers)
                    rec.layers.push_back({{"layer", l.layer}, {"mid_width", l.midWidth}, {"output_width", l.outputWidth},
                                          {"mid_energy_dropped", l.midEnergyDropped},
                                          {"output_energy_dropped", l.outputEnergyDropped}, {"seconds", l.seconds}});
                rec.params = r.paramsAfter;
                rec.bytesDense = rec.bytesCompact = uint64_t(r.paramsAfter) * uint64_t(bpv);
            } else {
                const PruningSelection sel = pruningSelection(spec, s, int(m->config.numLayers));
                if (spec.method == "magnitude") {
                    pruning = magnitudePrune(*m, sel, part(2.0, tag));
                } else {
                    WandaParams wp;
                    wp.selection = sel;
                    pruning = wandaPrune(*m, calibration, wp, part(2.0, tag));
                }
                rec.params = m->parameterCount() - pruning.pruned;
                rec.bytesDense = uint64_t(m->parameterCount()) * uint64_t(bpv);
                uint64_t compact = rec.bytesDense;
                for (const PrunedMatrix &pm : pruning.matrices)
                    compact = compact - uint64_t(pm.rows * pm.cols) * uint64_t(bpv) + compactBytes(pm, pruning.pattern, bpv);
                rec.bytesCompact = compact;
                for (const PrunedLayer &l : pruning.layers)
                    rec.layers.push_back({{"layer", l.layer},
                                          {"output_error", std::isnan(l.outputError) ? json(nullptr) : json(l.outputError)},
                                          {"seconds", l.seconds}});
            }
            rec.methodSeconds = now() - tm;
            done += 2.0;
            files.log(tag + spec.method + " at " + std::to_string(s) + ": " + std::to_string(rec.params) +
                      " parameters (dense " + std::to_string(result.denseParams) + "), " +
                      fmtSeconds(rec.methodSeconds));
            const DType exportType = spec.dtype == "f32" ? DType::F32 : spec.dtype == "f16" ? DType::F16 : DType::BF16;
            if (spec.exportModel && exportType != DType::F32) {
                // Evaluate what is exported: the weights rounded to the export's storage type.
                m->roundFloatTensorsTo(exportType);
                rec.notes.push_back("evaluated with the weights rounded to " + spec.dtype + ", as exported");
            }
            if (!evalIds.empty()) {
                const double te = now();
                const PerplexityResult r = evaluate(*m, part(0.7, tag + "evaluation: "));
                rec.perplexity = r.perplexity;
                rec.evalSeconds = now() - te;
                files.log(tag + "perplexity " + std::to_string(r.perplexity));
            }
            done += 0.7;
            if (spec.exportModel) {
                HfWriteOptions wo;
                wo.dtype = exportType;
                wo.overwrite = true;
                const std::string dir = (runDir / "model").string();
                if (spec.method == "slicegpt") {
                    exportSlicedModel(*m, dir, wo, part(0.3, tag + "export: "));
                } else {
                    writeHfFolder(*m, dir, wo, part(0.25, tag + "export: "));
                    if (sparseArchiveAvailable())
                        writeSparseArchive((runDir / "run.h5").string(), *m, pruning,
                                           {{"method", spec.method}, {"model", spec.model}});
                    else
                        rec.notes.push_back("built without HDF5: no compact sparse archive");
                }
                rec.exportDir = dir;
                files.log(tag + "exported to " + dir);
            }
            done += 0.3;
            result.runs.push_back(std::move(rec));
            result.seconds = now() - t0;
            files.results(result);
        }
        result.seconds = now() - t0;
        result.status = "done";
        files.results(result);
        files.log("done in " + fmtSeconds(result.seconds));
        reportProgress(progress, 1.0, "done");
        return result;
    } catch (const CancelledError &) {
        result.status = "cancelled";
        result.seconds = now() - t0;
        files.resultsNoThrow(result);
        files.log("cancelled by the user");
        throw;
    } catch (const std::exception &e) {
        result.status = "failed";
        result.error = e.what();
        result.seconds = now() - t0;
        files.resultsNoThrow(result);
        files.log(std::string("failed: ") + e.what());
        throw;
    }
}

} // namespace lathe
