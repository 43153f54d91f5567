#pragma once

#include "analysis/importance.h"
#include "base/progress.h"
#include "methods/methodparams.h"
#include "methods/pruningtargets.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

class ComputeBackend;
class LayerCheckpoint;
class Model;
struct CalibrationSet;

// A compression method as the rest of Lathe sees it: what it is, what it needs, its parameters, and how to run it
// on a model. One file per method defines one (at its end) and core/methods/registry.cpp lists it; nothing outside
// that file compares its name.

enum class MethodKind { PostTraining, FineTuning };

// How a compressed model leaves a run folder: a dense Hugging Face folder holding the zeros plus the compact
// sparse archive (run.h5), or a sliced Hugging Face folder (smaller matrices and shortcut matrices).
enum class ExportKind { PrunedDense, Sliced };

const char *methodKindName(MethodKind k);   // "post-training", "fine-tuning"
const char *exportKindName(ExportKind k);   // "pruned-dense", "sliced"

struct MethodInfo {
    std::string name;     // the job spec's "method"
    std::string title;    // for menus: "Wanda (calibrated pruning)"
    std::string summary;  // one line: what it does, from which paper
    MethodKind kind = MethodKind::PostTraining;
    bool needsCalibration = false;
    bool needsGradients = false;
    std::string ratioMeaning;  // what the job's sparsity value removes
    ExportKind exportKind = ExportKind::PrunedDense;
    bool nmPatterns = false;   // takes N:M patterns, which fix the ratio (no sweep)
    // The importance score its masks follow, for the parameter panel's preview; none for methods that do not mask.
    std::optional<ImportanceKind> previewScore;
    // Copies of the calibration signals it holds at once (the run announces their host memory before it starts).
    int calibrationCopies = 1;
    // Its calibration work in forward passes per calibration token, for the preflight estimate (run/preflight.h):
    // measured against the engine's forward pass on SmolLM2-135M and the demo model (docs/compression.md).
    double calibrationPasses = 0;
    // A fine-tuning method whose linears the GPU trainer runs (fixed masks over zeroed weights, low rank + sparse;
    // train/opstrainer.h) and whose per-step hooks name the parameters they touch
    // (TrainingMethodRun::rowSumsAfterStep, takeZeroedRows): `"device": "cuda"` and `"auto"` may train it there.
    bool trainsOnGpu = false;
    std::vector<ParamSpec> params; // in the order the GUI shows them
};

// What one run of a method needs beyond the model and its parameters.
struct MethodContext {
    double sparsity = 0;                          // the job's value for this run, in [0, 1)
    const CalibrationSet *calibration = nullptr;  // set when the method needs calibration
    ComputeBackend *device = nullptr;             // where heavy linear algebra may run; never null
    // Layer-by-layer methods save their progress through it and continue from it (layercheckpoint.h); the others
    // ignore it. Null: no checkpoints.
    LayerCheckpoint *checkpoint = nullptr;
};

struct MethodOutcome {
    int64_t params = 0;       // parameters after: pruning counts non-zeros; slicing every stored matrix
    int64_t storedParams = 0; // parameters a dense export of the result stores
    nlohmann::json layers = nlohmann::json::array(); // per-block report, written to results.json as it is
    std::optional<PruningResult> pruning;  // pruning methods: the masks, for the compact size and the archive
};

class CompressionMethod {
public:
    virtual ~CompressionMethod() = default;
    virtual const MethodInfo &info() const = 0;
    // The checks of the whole job that need no model: a sweep against parameters that fix the ratio, values that
    // exclude each other. The parameters have passed their own checks. LatheError with a hint.
    virtual void checkJob(const MethodParams &, const std::vector<double> & /*sparsities*/) const {}
    // Every check of one run that needs the model, before any work (targets, widths, support of the
    // architecture).  LatheError with a hint.
    virtual void checkRun(const Model &model, double sparsity, const MethodParams &params) const = 0;
    // Lines describing what a run would touch (the dialog's preview): matched linears, widths. Empty when the
    // parameters do not apply; LatheError when they are wrong.
    virtual std::vector<std::string> preview(const Model &model, double sparsity, const MethodParams &params) const = 0;
    // Runs the method in place on `model` (a copy opened for the run). Progress: fraction and stage; cancellation
    // throws CancelledError and leaves `model` unspecified.
    virtual MethodOutcome run(Model &model, const MethodParams &params, const MethodContext &context,
                              const ProgressCallback &progress) const = 0;
    // Whether its calibration passes run on `device` itself (a GPU engine of its own, as SliceGPT's) rather than on
    // the CPU engine: the preflight estimate times them with the device's forward pass then.
    virtual bool runsOnDevice(ComputeBackend & /*device*/) const { return false; }
};

} // namespace lathe
