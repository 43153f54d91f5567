#pragma once

#include "methods/methodparams.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class CompressionMethod;
class Model;

// A compression job as the GUI builds it and `lathe-cli compress JOB.json` reads it. JSON keys (docs/compression.md):
//   model, tokenizer?, method (a registered method: `lathe-cli methods`), sparsity | sweep [..], the method's
//   parameters at their keys (magnitude, wanda: pattern, targets, layer_sparsity; slicegpt: slicegpt {slice_head,
//   random_orientation, round_to, damping, precision}, layer_sparsity), calibration {text, samples, seq_len, seed},
//   evaluation {text, seq_len, max_tokens, dense, precision}, output {dir, export, dtype, gguf, overwrite, resume,
//   checkpoint_seconds},
//   device ("auto" | "cpu" | "cuda" | "cuda:N": where evaluation and SliceGPT run), comment.
// Relative paths are resolved against the folder of the spec file. JSON lives only at the file boundary: the GUI
// and the engine pass this struct, the method's parameters typed (MethodParams).
struct CompressionSpec {
    CompressionSpec(); // Wanda with its defaults

    std::string model, tokenizer;
    const CompressionMethod *method = nullptr; // a registry entry (methods/registry.h); never null
    MethodParams params;                       // every parameter of `method`, typed
    std::vector<double> sparsities{0.5};       // one run per value (a sweep when several)
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
    std::string gguf;          // also write model.gguf for llama.cpp, weights as f32, f16 or q8_0; empty: no
    bool overwrite = false;
    // Continue the interrupted run in outputDir: its finished sweep points and dense evaluation are kept (they must
    // be of this same job), the rest is run. Starts afresh when the folder holds no run yet.
    bool resume = false;
    // Layer-by-layer methods (Wanda, SliceGPT) save a checkpoint after a block when this many seconds have passed
    // since the last one (methods/layercheckpoint.h), so that resume continues a killed point from there; 0: after
    // every block. Not part of what makes two runs the same job.
    double checkpointSeconds = 300;
    std::string specFile; // the file the spec was read from (not part of the JSON): protected like the inputs

    // Switches to the registered method of that name with its default parameters; LatheError for an unknown name.
    void setMethod(const std::string &name);
    const std::string &methodName() const;
    bool needsCalibration() const;
    // The method and the parameters that differ from their defaults, for a series name: "wanda 2:4",
    // "slicegpt slice_head", "magnitude per-row targets=mlp".
    std::string label() const;

    nlohmann::json toJson() const;
    // LatheError naming the key for unknown keys, wrong types and bad values. Parameters of another registered
    // method than the spec's are ignored with a warning (older specs carried every method's).
    static CompressionSpec fromJson(const nlohmann::json &j, const std::string &baseDir = {});
    static CompressionSpec fromFile(const std::string &path);
};

// Checks everything that can be checked without opening the model: files exist (texts and tokenizers as regular
// files), ranges, the method's job checks, and the output folder (outputfiles.h: never one of the inputs, inside
// one or containing one; a non-empty folder only with overwrite and only when it is a previous Lathe run).
// LatheError with a hint.
void validateSpec(const CompressionSpec &spec);

// The checks that need the model, on a model already open (the GUI's): the method's checks of every run (targets
// and the layers they match, per-layer ratios against the model's blocks, SliceGPT's support and widths), sequence
// lengths against the model's positions. LatheError with a hint.
void checkSpecAgainstModel(const CompressionSpec &spec, const Model &model);

// The folder of one point of a sweep inside the run folder ("sparsity-0.25"), and where point `i` of the spec
// writes its export and archive: the run folder itself for a single run.
std::string sweepFolderName(double sparsity);
std::string pointFolder(const CompressionSpec &spec, size_t i);

} // namespace lathe
