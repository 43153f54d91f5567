#pragma once

#include "base/progress.h"
#include "engine/deviceforward.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

class ComputeBackend;
class LayerCheckpoint;
class Model;
struct CalibrationSet;

struct SliceGptParams {
    double sparsity = 0.25;            // fraction of the hidden width removed, in [0, 1)
    std::vector<double> layerSparsity; // per block (overrides `sparsity` for that block's mid and output widths)
    int64_t roundTo = 8;               // widths are rounded down to a multiple of this (tensor-core friendly)
    bool sliceHead = false;            // also slice the last block's output and the LM head's input
    bool randomOrientation = false;    // rotate each kept subspace by a random orthogonal matrix (paper's option)
    uint64_t seed = 42;                // for randomOrientation
    double damping = 0.01;             // H_ii += damping * mean(diag H) before the eigendecomposition
    int64_t rowsPerChunk = 8192;       // calibration rows run through a block at once
    // Where the fp64 eigendecompositions run (cuSOLVER on a GPU backend); null = LAPACK on the CPU. Not owned.
    ComputeBackend *solver = nullptr;
    // Block passes, Gram matrices and rotations on the GPU `solver` is (slicegptengine.h), blocks in `precision`;
    // else the CPU.
    bool gpu = false;
    ComputePrecision precision = ComputePrecision::Bf16;
    bool gpuHostSignals = false; // GPU: hold the signals in host memory even when they fit (tests that path)
    // Saves after finished blocks and continues from the last saved one (layercheckpoint.h); null: none. Not owned.
    LayerCheckpoint *checkpoint = nullptr;
};

// The widths a run will produce, known before any work: embedding, per block mid and output widths.
struct SliceGptWidths {
    int64_t embedding = 0;
    std::vector<int64_t> mid, output;
};
// LatheError (with a hint) for a sparsity outside [0, 1) or a width that rounds to zero.
SliceGptWidths sliceGptWidths(int64_t hidden, int64_t layers, const SliceGptParams &p);

struct SliceGptLayerReport {
    int layer = 0;
    // Fraction of the signal energy (sum of eigenvalues) in the discarded directions of the two PCAs of the block:
    // the relative squared error with which the kept subspace represents that signal on the calibration data.
    double midEnergyDropped = 0;
    double outputEnergyDropped = 0;
    int64_t midWidth = 0, outputWidth = 0;
    double seconds = 0;
};

struct SliceGptResult {
    std::vector<SliceGptLayerReport> layers;
    double embeddingEnergyDropped = 0;
    int64_t paramsBefore = 0, paramsAfter = 0; // the whole model, shortcut matrices and untied head included
    uint64_t calibrationBytes = 0;              // host memory of the held signals
    double seconds = 0;
};

// SliceGPT in place on `model` (Ashkboos et al., ICLR 2024): fuseNorms, then layer by layer PCA of the calibration
// signals on the already-sliced network, rotation and slicing of every weight and shortcut matrices on the residual
// path. The model afterwards carries config.slicing and runs natively in the engine; write it with
// exportSlicedModel for Hugging Face. Progress: fraction and "block i/N: stage"; cancel throws CancelledError and
// leaves `model` in an unspecified state (callers work on a copy opened for the run; the source file is never
// written).
SliceGptResult sliceGpt(Model &model, const CalibrationSet &calibration, const SliceGptParams &params,
                        const ProgressCallback &progress = {});

} // namespace lathe
