#pragma once

#include "base/progress.h"
#include "engine/blockhooks.h"
#include "engine/deviceforward.h"
#include "io/safetensorsfile.h"
#include "model/layerweights.h"
#include "numeric/mat.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

class ComputeBackend;
class Model;
struct CalibrationSet;

// Where SliceGPT's heavy work runs: the calibration signals (the residual stream of every calibration sequence at
// the current block boundary), the block passes over them, their fp64 Gram matrices and the fp64 weight rotations.
// slicegpt.cpp drives the algorithm through this interface; the CPU implementation is makeCpuSliceGptEngine, the
// CUDA one lives in gpu/ (signals held in GPU memory, blocks in the compute precision, Gram matrices by DSYRK,
// rotations by DGEMM) as a service of the GPU's backend (SliceGptEngineService).
class SliceGptEngine {
public:
    virtual ~SliceGptEngine() = default;
    virtual std::string describe() const = 0;
    virtual int64_t signalRows() const = 0;
    virtual uint64_t signalBytes() const = 0; // memory the signals take where they are held

    // H = sum x^T x over every signal row, in fp64: the full symmetric (width x width) matrix, row-major.
    virtual std::vector<double> signalGram() = 0;
    // Every signal row x <- x Q_d (Q_d: width x d, fp64): the stream moves into the new basis and is sliced.
    virtual void projectSignals(const MatD &qd) = 0;
    // Block `layer` computes with `w` from now on (rotated weights, shortcut matrices).
    virtual void setBlock(int layer, const BlockWeights &w) = 0;
    // Runs `part` of block `layer` over the signals, which become its output, and returns that output's Gram
    // matrix. Attention: the signals become the residual entering the MLP; Mlp then reads them (after the caller
    // has projected them into the MLP's basis); Whole: the block at once (parallel blocks). Both halves write the
    // stream at the width of their shortcut and output matrices. Reports `stage` over from..to of `progress`;
    // cancellation throws CancelledError.
    virtual std::vector<double> runBlock(int layer, BlockPart part, const ProgressCallback &progress, double from,
                                         double to, const std::string &stage) = 0;
    // fp64 rotations of weights: a reader of the residual W <- W Q_d; a writer W <- Q_d^T W, b <- Q_d^T b.
    virtual void rotateInput(Mat &w, const MatD &qd) = 0;
    virtual void rotateOutput(LinearWeights &l, const MatD &qd) = 0;
    // a^T b in fp64 (the shortcut matrices Q_to^T Q_from: D^3 multiply-adds, too many for the host at 7B scale).
    virtual MatD transposedProduct(const MatD &a, const MatD &b) = 0;

    // Layer checkpoints: the signals at their current width as one rows x signalWidth() fp32 blob (streamed to
    // the host piece by piece when the signals live on a device; valid until the next call), and the reverse, from
    // rows x `width` floats in the same order.
    virtual int64_t signalWidth() const = 0;
    virtual SafetensorsBlob signalBlob() = 0;
    virtual void loadSignals(const float *data, int64_t width) = 0;
};

struct SliceGptEngineOptions {
    int64_t rowsPerChunk = 8192;                           // rows run through a block at once
    ComputePrecision precision = ComputePrecision::Bf16; // GPU block passes (the CPU computes in fp32)
    // GPU: keep the signals in page-locked host memory even when they would fit on the device (they go there by
    // themselves when they do not). For tests of that path.
    bool hostSignals = false;
};

// Embeds the calibration set with `model`'s current (fused) embedding weights. The engine reads `model` for its
// configuration and block weights until the run ends.
std::unique_ptr<SliceGptEngine> makeCpuSliceGptEngine(const Model &model, const CalibrationSet &calibration,
                                                      const SliceGptEngineOptions &options);

// What a device that runs SliceGPT's engine provides (ComputeBackend::service; the CPU has none).
class SliceGptEngineService {
public:
    static constexpr const char *kServiceKey = "lathe.methods.slicegpt-engine";
    virtual ~SliceGptEngineService() = default;
    virtual std::unique_ptr<SliceGptEngine> create(const Model &model, const CalibrationSet &calibration,
                                                   const SliceGptEngineOptions &options) = 0;
};

// The engine on `device` (a GPU backend), or LatheError saying why there is none (a device without one, out of
// memory).
std::unique_ptr<SliceGptEngine> makeDeviceSliceGptEngine(ComputeBackend &device, const Model &model,
                                                         const CalibrationSet &calibration,
                                                         const SliceGptEngineOptions &options);

} // namespace lathe
