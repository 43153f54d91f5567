#pragma once

#include "engine/deviceforward.h"
#include "run/compressionspec.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

class ComputeBackend;
class Model;
struct ModelConfig;
class Tokenizer;
struct TrainingPlan;
struct TrainingSpec;

// What a compression run will cost, before it starts (issue 19 item 3): its time from a short timed probe of this
// machine, its peak host memory, the size of its export, and whether it fits.

// One timed forward pass: the engine built for the model (the weights read and converted, as every evaluation and
// calibration does) and one window of `seqLen` tokens run through it, on the CPU. A few seconds for a 135M model.
// With a GPU probed too (probeDeviceForward), the same on its forward pass (engine/deviceforward.h): a run whose
// device is not "cpu" evaluates there, and a method that runs on the device (CompressionMethod::runsOnDevice)
// calibrates there, so the estimate times those phases with the GPU's numbers.
struct ForwardProbe {
    int64_t seqLen = 0;
    double buildSeconds = 0;   // constructing the engine
    double forwardSeconds = 0; // the window's forward pass
    // The GPU probed, empty when none: its pass's description, its build (weights uploaded) and the window's
    // next-token loss there; the backend is kept so that estimates can ask which methods run on it.
    std::string device;
    double deviceBuildSeconds = 0, deviceForwardSeconds = 0;
    ComputePrecision devicePrecision = ComputePrecision::Bf16;
    std::shared_ptr<ComputeBackend> gpu;
};
ForwardProbe probeForward(const Model &model, int64_t seqLen);
// Adds `gpu`'s timings at `precision` to `probe` (its seqLen) when that backend runs the forward pass (a GPU);
// leaves it as it is otherwise. LatheError when the GPU cannot build the pass (out of memory).
void probeDeviceForward(ForwardProbe &probe, const Model &model, std::shared_ptr<ComputeBackend> gpu,
                        ComputePrecision precision);
// Device bytes of a compression run's GPU work: the forward pass over one window of `seqLen` tokens with its weights
// resident (deviceForwardMemory: what it allocates), the calibration signals (rows x width fp32) when the method
// keeps them there, and 512 MiB for the CUDA context and cuBLAS's workspaces (an allowance, not a measurement).
// Both the forward pass and SliceGPT's engine stream from host memory when the GPU has less, so this never refuses
// a run.
uint64_t compressionDeviceBytes(const Model &model, int64_t seqLen, ComputePrecision precision, uint64_t signalBytes);

// The token count of a text as the model's tokenizer would give it, from its first 64 KiB (exact for shorter texts;
// scaled by the file size otherwise).
int64_t estimateTextTokens(const Tokenizer &tokenizer, const std::string &path);

// What the program itself takes before any model (its code, libraries and thread stacks): lathe-cli peaks at
// 20-23 MB for a failed call or an evaluation of the 1 MB demo model (tst_reliability cliPeakMemoryIsSmall).
inline constexpr uint64_t kProcessBytes = uint64_t(24) << 20;

struct RunEstimate {
    struct Phase {
        std::string name;   // with the count when repeated: "evaluation on 4 windows (x3)"
        double seconds = 0; // each time
        int64_t times = 1;
        std::string duration() const; // "2 s", or "2 s each, 21 s in all" when repeated
    };
    std::vector<Phase> phases; // in run order; a sweep's per-point phases once, with the count in the name
    // Appends a phase taking `seconds` each of `times` times (none when times <= 0) and adds it to the total.
    void addPhase(const std::string &name, double seconds, int64_t times = 1);
    double seconds = 0;
    uint64_t hostBytes = 0;      // peak, besides the mapped model file
    uint64_t exportBytes = 0;    // every point's export (HF folder, GGUF, sparse archive)
    uint64_t hostAvailable = 0;  // MemAvailable now (0: unknown)
    uint64_t diskAvailable = 0;  // free space where the run folder goes (0: unknown)
    std::string device;          // the GPU a training run's steps take, empty for the CPU
    uint64_t deviceBytes = 0;    // its peak memory there (opsTrainerDeviceBytes), 0 for the CPU
    uint64_t deviceAvailable = 0; // that GPU's memory (0: unknown)
    std::string refusal;         // why the run cannot fit; empty when it can
    std::string summary() const; // one line: "about 2 min 10 s; memory 1.3 GB of 5.1 GB available; export 540 MB"
    // What `--estimate` prints: a line per phase, the GPU when one takes part, the summary, and the refusal when
    // there is one.
    std::string report() const;
    // The same as JSON: seconds, phases [{phase, seconds (each time), times}], host_bytes, host_available,
    // export_bytes, disk_available, device, device_bytes, device_available, refusal.
    nlohmann::json toJson() const;
};

// The estimate for `spec` on `model` from `probe`, with the texts' token counts (0 when there is no such text).
// Time: each evaluation = an engine build + its windows, each window the probe's forward time scaled by the forward
// FLOPs of the window length (engine/transformer.h forwardFlops); calibration = an engine build + the windows x
// the method's calibration passes (MethodInfo::calibrationPasses); export at 300 MB/s (an assumption, not a
// measurement). With a GPU in the probe and a device other than "cpu" in the spec, evaluations take the GPU's
// build and window times, and so does the calibration of a method that runs on that GPU; the GPU's memory is
// compressionDeviceBytes. Memory: the engine's fp32 weights and the compressed copy of the targets, the
// calibration signals the method keeps (MethodInfo::calibrationCopies; on the GPU for a method that runs there),
// the logits and activations of one window. Refused when the host memory exceeds what is available or the export
// the free disk space.
RunEstimate estimateCompressionRun(const CompressionSpec &spec, const Model &model, const ForwardProbe &probe,
                                   int64_t calibrationTextTokens, int64_t evalTextTokens);

// Everything above for a job spec, as `lathe-cli compress JOB.json --estimate` and the compress dialog show it: the
// spec's checks (checkCompressionSpec), the texts' token counts, a probe at the evaluation (else calibration) window
// length, at most 512 tokens. Creates nothing. LatheError for a spec that is refused anyway.
struct Preflight {
    ForwardProbe probe;
    int64_t calibrationTokens = 0, evalTokens = 0;
    RunEstimate estimate;
};
Preflight preflightCompression(const CompressionSpec &spec);

// One timed training step of the job's model as its run builds it (the trainable parameters, the fine-tuning
// method's linears), on a micro-batch of `batch` windows of `seqLen` = min(data.seq_len, 256) random tokens
// (data.batch windows, or fewer to stay within 512 tokens), after one untimed step that pays for allocations and
// thread start-up; then steps until 1 s of them (at most five), the median kept. The method sees them as steps of
// the middle of the run, where its schedule is. The parts are timed apart because
// they scale differently: forward and backward with the micro-batches' tokens, the rest (the method's per-step
// work, clipping, AdamW) once per step.
struct TrainingProbe {
    int64_t seqLen = 0, batch = 0;
    std::string device; // the GPU trainer's description when the probe ran there, empty for the CPU
    uint64_t deviceLinearKindBytes = 0; // its method linears' masks and scratch (DeviceTrainer::linearKindBytes)
    double setupSeconds = 0;    // the weights converted and the method's initialisation (LoSparse's SVDs)
    double forwardSeconds = 0;  // the window's forward pass (with what backward needs kept)
    double backwardSeconds = 0; // its backward pass
    double fixedSeconds = 0;    // the method's hooks, gradient clipping and the AdamW update
};

// The estimate of a training run from `plan` and `probe`: setup; steps (accumulate micro-batches, each the probe's
// forward + backward scaled by data.batch over the probe's batch and by the forward FLOPs of a data.seq_len window
// against the probe's, plus the fixed part);
// evaluations (eval_windows forward passes at step 0, every eval_every steps and at the end); checkpoints (every
// parameter and the AdamW moments) and exports written at an assumed 300 MB/s. Memory: the plan's total, plus a
// copy of the weights while the export is built, plus the program itself (kProcessBytes). Disk: the exports and, when checkpoints are written, two of them
// (the new one is built before the old one goes). Refused when the memory or the disk does not fit. With a probe
// of zeros (as runTraining's own check before any work) the times are zero and the sizes still checked.
// When the steps run on a GPU (trainsOnGpu), the probe's step is the GPU trainer's, the host keeps the weights,
// gradients and (for checkpoints) the moments but no activations, and the GPU's memory is estimated
// (opsTrainerDeviceBytes) and checked against the device's.
RunEstimate estimateTrainingRun(const TrainingSpec &spec, const Model &model, const TrainingPlan &plan,
                                const TrainingProbe &probe);

// The free space where `dir` (which need not exist yet) would be created, and the host's MemAvailable; 0: unknown.
uint64_t diskFreeFor(const std::string &dir);
uint64_t memAvailable();

} // namespace lathe
