#include "run/compressionrun.h"

#include "base/clock.h"
#include "base/dtype.h"
#include "base/error.h"
#include "engine/calibration.h"
#include "engine/deviceforward.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"
#include "export/slicedexport.h"
#include "export/sparsearchive.h"
#include "io/modelloader.h"
#include "io/tokenizerloader.h"
#include "methods/layercheckpoint.h"
#include "methods/method.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "run/preflight.h"
#include "run/runfolder.h"
#include "run/speckeys.h"
#include "tokenizers/tokenizer.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

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

// The texts of the job, tokenized before anything is written.
struct RunTexts {
    CalibrationSet calibration;
    size_t calibrationTokens = 0;
    std::vector<int32_t> evalIds;
};

RunTexts tokenizeTexts(const CompressionSpec &spec, const Tokenizer *tokenizer) {
    RunTexts t;
    if (spec.needsCalibration()) {
        const std::vector<int32_t> ids = tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.calibrationText)));
        CalibrationParams cp;
        cp.samples = spec.calibrationSamples;
        cp.seqLen = spec.calibrationSeqLen;
        cp.seed = spec.calibrationSeed;
        t.calibration = makeCalibrationSet(ids, cp);
        t.calibrationTokens = ids.size();
    }
    if (!spec.evalText.empty()) {
        t.evalIds = tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.evalText)));
        if (int64_t(t.evalIds.size()) < spec.evalSeqLen)
            throw LatheError(spec.evalText + ": " + std::to_string(t.evalIds.size()) +
                                 " tokens, fewer than one evaluation window of " + std::to_string(spec.evalSeqLen),
                             "use a longer text or a shorter evaluation.seq_len");
    }
    return t;
}

// Perplexity on the job's evaluation text: the GPU forward pass when the device is one, else the CPU engine.
PerplexityResult evaluate(const CompressionSpec &spec, ComputeBackend &device, const Model &m,
                          const std::vector<int32_t> &ids, const ProgressCallback &pc) {
    PerplexityParams pp;
    pp.seqLen = spec.evalSeqLen;
    pp.maxTokens = spec.evalMaxTokens;
    if (hasDeviceForward(device)) {
        DeviceForwardOptions o;
        o.precision = parsePrecision(spec.evalPrecision);
        auto gpu = createDeviceForward(device, m, o);
        return evaluatePerplexity(*gpu, m.config.maxPositions, ids, pp, pc);
    }
    Transformer t(m);
    return evaluatePerplexity(t, ids, pp, pc);
}

// The sizes of one point: the dense export's bytes and the compact form's (CSR / N:M of the pruned matrices).
void recordSizes(const MethodOutcome &o, int bytesPerValue, CompressionRunRecord &rec) {
    rec.params = o.params;
    rec.bytesDense = uint64_t(o.storedParams) * uint64_t(bytesPerValue);
    rec.bytesCompact = rec.bytesDense;
    if (o.pruning)
        for (const PrunedMatrix &pm : o.pruning->matrices)
            rec.bytesCompact = rec.bytesCompact - uint64_t(pm.rows * pm.cols) * uint64_t(bytesPerValue) +
                               compactBytes(pm, o.pruning->pattern, bytesPerValue);
}

// Writes one point's compressed model as the method's export kind; returns the exported folder. `progress` covers
// the whole export.
std::string exportPoint(const CompressionSpec &spec, const Model &m, const MethodOutcome &o, const fs::path &runDir,
                        CompressionRunRecord &rec, const ProgressCallback &progress) {
    HfWriteOptions wo;
    wo.dtype = exportDType(spec.dtype);
    wo.overwrite = true;
    const std::string dir = (runDir / "model").string();
    switch (spec.method->info().exportKind) {
    case ExportKind::Sliced:
        exportSlicedModel(m, dir, wo, progress);
        break;
    case ExportKind::PrunedDense:
        writeHfFolder(m, dir, wo, progress);
        if (const std::optional<DType> type = ggufExportDType(spec.gguf)) {
            GgufWriteOptions go;
            go.dtype = *type;
            go.overwrite = true;
            go.notes = {{"method", spec.label()}, {"model", fs::path(spec.model).filename().string()}};
            rec.ggufFile = (runDir / "model.gguf").string();
            const GgufWriteResult g = writeGgufFile(m, rec.ggufFile, go, progress);
            rec.bytesGguf = g.bytes;
            for (const std::string &n : g.notes)
                rec.notes.push_back("GGUF: " + n);
        }
        if (!o.pruning)
            break;
        if (sparseArchiveAvailable())
            writeSparseArchive((runDir / "run.h5").string(), m, *o.pruning,
                               {{"method", spec.methodName()}, {"model", spec.model}});
        else
            rec.notes.push_back("built without HDF5: no compact sparse archive");
        break;
    }
    return dir;
}

} // namespace

void checkCompressionSpec(const CompressionSpec &spec) { prepareRun(spec); }

CompressionRunResult runCompression(const CompressionSpec &spec, const ProgressCallback &progress) {
    const double t0 = steadySeconds();
    // Everything that can refuse the job happens before the run folder is created, so that a refused run leaves
    // nothing behind that would block its corrected re-run.
    PreparedRun prepared = prepareRun(spec);
    // Before the texts are tokenized: a folder holding another job is refused at once.
    const std::optional<CompressionRunResult> previous = spec.resume ? previousRun(spec) : std::nullopt;
    std::unique_ptr<Model> model = std::move(prepared.model);
    const ModelConfig &cfg = model->config;
    const MethodInfo &info = spec.method->info();
    std::string deviceNote;
    const std::unique_ptr<ComputeBackend> device = createBackend(DeviceChoice::parse(spec.device), &deviceNote);
    const RunTexts texts = tokenizeTexts(spec, prepared.tokenizer.get());

    // Memory and disk before anything is created (the time needs a probe: --estimate and the dialog show it).
    const RunEstimate fit = estimateCompressionRun(spec, *model, ForwardProbe{}, int64_t(texts.calibrationTokens),
                                                   int64_t(texts.evalIds.size()));
    if (!fit.refusal.empty())
        throw LatheError("this run does not fit: " + fit.refusal, "lathe-cli compress JOB.json --estimate shows the plan");

    RunFolder files(spec.outputDir, OutputKind::CompressionRun, previous.has_value(), spec.toJson(), "progress.jsonl");
    CompressionRunResult result = previous.value_or(CompressionRunResult{});
    const size_t keptRuns = result.runs.size();
    result.status = "running";
    result.error.clear();
    files.results(result.toJson());
    double lastWrite = 0;
    std::string lastStage;
    // Wraps the caller's callback: adds the ETA, records progress.jsonl, scales to the job's fraction.
    auto report = [&](double fraction, const std::string &stage) {
        const double elapsed = steadySeconds() - t0;
        const double eta = fraction > 0.01 ? elapsed * (1.0 - fraction) / fraction : -1.0;
        const std::string head = stage.substr(0, stage.find(" ("));
        if (head != lastStage || steadySeconds() - lastWrite > 5.0) {
            files.line({{"fraction", fraction}, {"stage", stage}, {"eta_s", eta}});
            lastStage = head;
            lastWrite = steadySeconds();
        }
        reportProgress(progress, fraction, eta >= 0 ? stage + " — ETA " + formatDuration(eta) : stage);
    };

    try {
        files.log("job: " + info.name + " on " + spec.model + " -> " + spec.outputDir);
        if (previous)
            files.log("resumed: " + std::to_string(keptRuns) + " of " + std::to_string(spec.sparsities.size()) +
                      " points kept" + (previous->densePerplexity > 0 ? ", dense evaluation kept" : ""));
        files.log("device: " + device->device().name + (deviceNote.empty() ? "" : " (" + deviceNote + ")"));
        const int bpv = exportDType(spec.dtype) == DType::F32 ? 4 : 2;
        if (spec.needsCalibration()) {
            const CalibrationSet &calibration = texts.calibration;
            if (previous && !previous->calibrationWindows.empty() && previous->calibrationWindows != calibration.windows)
                throw LatheError("--resume: the calibration windows differ from the interrupted run's (has the "
                                 "calibration text changed?)",
                                 "start afresh with --overwrite");
            result.calibrationNote = calibration.note;
            result.calibrationWindows = calibration.windows;
            result.calibrationBytes = calibration.signalBytes(cfg.hiddenSize) * uint64_t(info.calibrationCopies);
            files.log("calibration: " + std::to_string(calibration.sequences.size()) + " x " +
                      std::to_string(calibration.seqLen) + " tokens from " + spec.calibrationText + " (" +
                      std::to_string(texts.calibrationTokens) + " tokens)" +
                      (calibration.note.empty() ? "" : "; " + calibration.note));
            files.log("calibration signals will hold " + std::to_string(result.calibrationBytes >> 20) +
                      " MiB of host memory");
        }
        result.denseParams = model->parameterCount();
        result.denseBytes = uint64_t(result.denseParams) * uint64_t(bpv);

        // Fractions: dense evaluation one share, each run (method + evaluation + export) three shares.
        const bool evalDense = spec.evalDense && !texts.evalIds.empty();
        const double shares = (evalDense ? 1.0 : 0.0) + 3.0 * double(spec.sparsities.size());
        double done = 0;
        auto part = [&](double width, const std::string &prefix) {
            const double from = done / shares, to = (done + width) / shares;
            return [&report, from, to, prefix](const Progress &p) {
                report(from + (to - from) * p.fraction, prefix + p.stage);
                return true;
            };
        };
        if (evalDense && previous && previous->densePerplexity > 0) {
            done += 1.0; // kept from the interrupted run
        } else if (evalDense) {
            const PerplexityResult r = evaluate(spec, *device, *model, texts.evalIds, part(1.0, "dense evaluation: "));
            result.densePerplexity = r.perplexity;
            result.evalTokens = r.textTokens;
            result.evalWindows = r.windows;
            files.log("dense: perplexity " + std::to_string(r.perplexity) + " (" + std::to_string(r.windows) + " x " +
                      std::to_string(spec.evalSeqLen) + " tokens)");
            files.results(result.toJson()); // kept by a resumed run
            done += 1.0;
        }
        model.reset();

        const size_t n = spec.sparsities.size();
        done += 3.0 * double(keptRuns);
        // A kill between recording a point and removing its layer checkpoint leaves that folder behind; the point
        // is kept, so its checkpoint goes now.
        for (size_t i = 0; i < keptRuns; ++i) {
            std::error_code ec;
            if (fs::remove_all(fs::path(pointFolder(spec, i)) / "layer-checkpoint", ec) > 0)
                files.log("removed the layer checkpoint of the recorded point " + std::to_string(i + 1));
        }
        for (size_t i = keptRuns; i < n; ++i) {
            const double s = spec.sparsities[i];
            CompressionRunRecord rec;
            rec.sparsity = s;
            const std::string tag = n > 1 ? "run " + std::to_string(i + 1) + "/" + std::to_string(n) + ": " : "";
            const fs::path runDir = pointFolder(spec, i);
            fs::create_directories(runDir);
            std::unique_ptr<Model> m = openModel(spec.model); // fresh for every run: the source is never written
            const double tm = steadySeconds();
            // The point's layer checkpoint: what a killed run of it saved is continued (same job, same point, same
            // calibration windows), and the folder goes once the point is recorded.
            LayerCheckpoint checkpoint(runDir / "layer-checkpoint", spec.checkpointSeconds,
                                       {{"method", spec.label()}, {"sparsity", s}, {"model", spec.model},
                                        {"windows", texts.calibration.windows}},
                                       [&files, tag](const std::string &line) { files.log(tag + line); },
                                       fit.exportBytes);
            MethodContext context;
            context.sparsity = s;
            context.calibration = info.needsCalibration ? &texts.calibration : nullptr;
            context.device = device.get();
            context.checkpoint = &checkpoint;
            const MethodOutcome outcome = spec.method->run(*m, spec.params, context, part(2.0, tag));
            rec.layers = outcome.layers;
            recordSizes(outcome, bpv, rec);
            rec.methodSeconds = steadySeconds() - tm;
            done += 2.0;
            files.log(tag + info.name + " at " + std::to_string(s) + ": " + std::to_string(rec.params) +
                      " parameters (dense " + std::to_string(result.denseParams) + "), " +
                      formatDuration(rec.methodSeconds));
            if (spec.exportModel && exportDType(spec.dtype) != DType::F32) {
                // Evaluate what is exported: the weights rounded to the export's storage type.
                m->roundFloatTensorsTo(exportDType(spec.dtype));
                rec.notes.push_back("evaluated with the weights rounded to " + spec.dtype + ", as exported");
            }
            if (!texts.evalIds.empty()) {
                const double te = steadySeconds();
                const PerplexityResult r = evaluate(spec, *device, *m, texts.evalIds, part(0.7, tag + "evaluation: "));
                rec.perplexity = r.perplexity;
                rec.evalSeconds = steadySeconds() - te;
                files.log(tag + "perplexity " + std::to_string(r.perplexity));
            }
            done += 0.7;
            if (spec.exportModel) {
                rec.exportDir = exportPoint(spec, *m, outcome, runDir, rec, part(0.3, tag + "export: "));
                files.log(tag + "exported to " + rec.exportDir);
            }
            done += 0.3;
            result.runs.push_back(std::move(rec));
            result.seconds = steadySeconds() - t0;
            files.results(result.toJson());
            checkpoint.remove();
        }
        result.seconds = steadySeconds() - t0;
        result.status = "done";
        files.results(result.toJson());
        files.log("done in " + formatDuration(result.seconds));
        reportProgress(progress, 1.0, "done");
        return result;
    } catch (const CancelledError &) {
        result.status = "cancelled";
        result.seconds = steadySeconds() - t0;
        files.resultsNoThrow(result.toJson(), "cancelled by the user");
        throw;
    } catch (const std::exception &e) {
        result.status = "failed";
        result.error = e.what();
        result.seconds = steadySeconds() - t0;
        files.resultsNoThrow(result.toJson(), std::string("failed: ") + e.what());
        throw;
    }
}

} // namespace lathe
