#pragma once

#include "base/progress.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class Model;

// A compression run as the GUI writes it and `lathe-cli compress JOB.json` executes it. JSON keys (docs/compression.md):
//   model, tokenizer?, method ("magnitude" | "wanda" | "slicegpt"), sparsity | sweep [..], pattern
//   ("unstructured" | "per-row" | "N:M"), targets (regex), layer_sparsity (array or {"i-j": r}),
//   slicegpt {slice_head, random_orientation, round_to, damping, precision}, calibration {text, samples, seq_len,
//   seed},
//   evaluation {text, seq_len, max_tokens, dense, precision}, output {dir, export, dtype, overwrite, resume},
//   device ("auto" | "cpu" | "cuda": where evaluation and SliceGPT's eigendecompositions run)
// Relative paths are resolved against the folder of the spec file.
struct CompressionSpec {
    std::string model, tokenizer;
    std::string method = "wanda";
    std::vector<double> sparsities{0.5}; // one run per value (a sweep when several)
    std::string pattern = "unstructured";
    std::string targets = ".*";
    nlohmann::json layerSparsity;        // null, array or object
    bool sliceHead = false, randomOrientation = false;
    int64_t roundTo = 8;
    double damping = 0.01;
    std::string slicePrecision = "bf16"; // of SliceGPT's block passes on a GPU (the CPU computes in fp32)
    std::string calibrationText;
    int64_t calibrationSamples = 128, calibrationSeqLen = 2048;
    uint64_t calibrationSeed = 42;
    std::string evalText;
    int64_t evalSeqLen = 2048, evalMaxTokens = 0;
    bool evalDense = true;
    std::string evalPrecision = "fp32"; // of the GPU evaluation pass: fp32, bf16, fp16
    std::string device = "auto";
    std::string outputDir;
    bool exportModel = true;
    std::string dtype = "f32"; // of the exported weights: f32, f16, bf16
    bool overwrite = false;
    // Continue the interrupted run in outputDir: its finished sweep points and dense evaluation are kept (they must
    // be of this same job), the rest is run. Starts afresh when the folder holds no run yet.
    bool resume = false;
    std::string specFile; // the file the spec was read from (not part of the JSON): protected like the inputs

    nlohmann::json toJson() const;
    // LatheError naming the key for unknown keys, wrong types and bad values.
    static CompressionSpec fromJson(const nlohmann::json &j, const std::string &baseDir = {});
    static CompressionSpec fromFile(const std::string &path);
    bool needsCalibration() const { return method != "magnitude"; }
};

struct CompressionRunRecord {
    double sparsity = 0;
    double perplexity = 0;      // 0 when not evaluated
    int64_t params = 0;         // parameters after (pruning: non-zero; slicing: every matrix incl. shortcuts)
    uint64_t bytesDense = 0;    // exported HF folder's weights (dtype of the export)
    uint64_t bytesCompact = 0;  // compact form (pruning: CSR / N:M in run.h5; slicing: = bytesDense)
    double methodSeconds = 0, evalSeconds = 0;
    std::string exportDir;      // empty when not exported
    nlohmann::json layers;      // per-layer report of the method
    nlohmann::json notes = nlohmann::json::array();
};

struct CompressionRunResult {
    std::string status = "running"; // "running" while the job runs, then "done", "cancelled" or "failed"
    std::string error;
    double densePerplexity = 0;
    int64_t denseParams = 0;
    uint64_t denseBytes = 0;
    int64_t evalTokens = 0, evalWindows = 0;
    std::string calibrationNote;
    std::vector<int64_t> calibrationWindows; // one per calibration sequence: the windows picked, for reproducing the run
    uint64_t calibrationBytes = 0; // host memory of the signals held by the method, announced before the run
    std::vector<CompressionRunRecord> runs;
    double seconds = 0;
    nlohmann::json toJson() const;
    // Reads what toJson wrote (a run folder's results.json); LatheError when a field has the wrong type.
    static CompressionRunResult fromJson(const nlohmann::json &j);
};

// Checks everything that can be checked without opening the model: files exist (texts and tokenizers as regular
// files), ranges, method known, pattern parses, and the output folder (outputfiles.h: never one of the inputs,
// inside one or containing one; a non-empty folder only with overwrite and only when it is a previous Lathe run).
// LatheError with a hint.
void validateSpec(const CompressionSpec &spec);

// The checks that need the model, on a model already open (the GUI's): targets regex and the layers it matches,
// per-layer ratios against the model's blocks, SliceGPT's support and widths, sequence lengths against the
// model's positions. LatheError with a hint.
void checkSpecAgainstModel(const CompressionSpec &spec, const Model &model);

// validateSpec, then every check that needs the model, without writing anything: the targets regex and the
// layers it matches, per-layer ratios against the model's blocks, SliceGPT's support and widths, sequence lengths
// against the model's positions, the tokenizer. `lathe-cli compress --check` runs this.
void checkCompressionSpec(const CompressionSpec &spec);

// Runs the spec: makes every check of checkCompressionSpec and tokenizes the texts before it creates anything, then
// creates the run folder (replacing a previous run there only when the spec allows overwriting; its marker says it
// is a run folder), builds the calibration set, evaluates the dense model,
// then per sparsity value reopens the model, runs the method, evaluates, exports. The output folder receives
// spec.json, run.log (one line per event), progress.jsonl (one JSON line per layer/stage), results.json, and per
// run the exported model (model/ or sparsity-0.25/model) and run.h5 (pruning). Progress reports the fraction
// of the whole job and "run i/n: block l/L: stage". Cancellation: CancelledError after results.json records
// status "cancelled"; exports are atomic so no half-written model is left. With spec.resume, a folder left by an
// interrupted run of the same job (killed, cancelled, failed) is continued: the points results.json records as
// finished, whose exports are in place, and the dense evaluation are kept; the result is that of an
// uninterrupted run (timings aside).
CompressionRunResult runCompression(const CompressionSpec &spec, const ProgressCallback &progress = {});

} // namespace lathe
