#pragma once

#include "numeric/mat.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

namespace lathe {

class ComputeBackend;
class Model;
struct ModelConfig;
struct TokenBatch;

// Storage and GEMM input type of the device forward pass. Accumulation is always fp32; the residual stream,
// norms, softmax and biases stay fp32 whatever the choice. Fp32 uses pedantic fp32 GEMMs (no TF32), so it can be
// checked against the CPU engine tightly; Bf16/Fp16 use tensor cores.
enum class ComputePrecision { Fp32, Bf16, Fp16 };
const char *precisionName(ComputePrecision p);
// "fp32", "bf16", "fp16"; LatheError otherwise.
ComputePrecision parsePrecision(const std::string &name);

struct DeviceForwardOptions {
    ComputePrecision precision = ComputePrecision::Bf16;
    // Keep every block's weights on the device (fast repeated passes). When they do not fit (or when false), each
    // block is uploaded before it runs from a host copy in the compute type, so a model larger than device memory
    // still runs, slower.
    bool allowResident = true;
};

// The forward pass of a decoder on an accelerator, implemented in gpu/ as a service of the device's backend
// (DeviceForwardService); core only sees this interface. Same contract as Transformer (core/transformer.h):
// same families, same layouts, sliced models included; BERT is not supported here. Not thread-safe.
class DeviceForward {
public:
    virtual ~DeviceForward() = default;
    // "NVIDIA H100 80GB HBM3, bf16, weights resident (13.5 GB)"
    virtual std::string describe() const = 0;
    // (batch*seq x vocab) fp32 logits, copied to host memory.
    virtual Mat logits(const TokenBatch &batch) = 0;
    // Sum over every sequence of the batch of -log p(token t | tokens < t) for t = 1..seq-1, in fp64 (the standard
    // perplexity protocol's numerator); `count` receives batch*(seq-1). LatheError on a non-finite logit.
    virtual double sumNextTokenNll(const TokenBatch &batch, int64_t *count) = 0;
    // The whole forward pass to logits, kept on the device, and a wait for it to finish: what benchmarks time.
    virtual void run(const TokenBatch &batch) = 0;
    // GFLOP/s of one (n x n x n) GEMM in the compute precision with fp32 accumulation, best of a few: the ceiling
    // the benchmark compares the forward pass with, measured in the same run.
    virtual double gemmPeakGflops(int64_t n) = 0;
};

// What a device that runs the forward pass provides (ComputeBackend::service; the CPU has none: it runs Transformer).
class DeviceForwardService {
public:
    static constexpr const char *kServiceKey = "lathe.engine.device-forward";
    virtual ~DeviceForwardService() = default;
    virtual std::unique_ptr<DeviceForward> create(const Model &model, const DeviceForwardOptions &options) = 0;
};

// Rows of the LM head's logits the device pass makes at a time: (rows x vocab) fp32.
constexpr int64_t kDeviceHeadRows = 2048;

// The device memory of the forward pass (gpu/cudaforward.cu on gpu/blockrunner.cuh's buffers) for `model` at
// `precision`, over passes of `rows` tokens in sequences of `seq` (an evaluation window: rows = seq). It follows
// what the pass allocates, so that the preflight promises it: tst_emulatedgpu holds the total to the peak of the
// emulated device's allocations (never below it). Not in it: the CUDA context and cuBLAS's workspaces.
struct DeviceForwardMemory {
    // Resident weights: the embedding tables, norms and biases in fp32, every matrix in the compute type (a tied
    // head once more, as the head's own copy), a sliced model's shortcut matrices in fp32.
    uint64_t weights = 0;
    // The fp32 copy of the largest matrix while it is converted to the compute type (0 in fp32).
    uint64_t staging = 0;
    // The work buffers of a pass: deviceForwardActivationBytes.
    uint64_t activations = 0;
    // The staging copies exist while the weights are uploaded, the work buffers from the first pass on.
    uint64_t total() const { return weights + std::max(staging, activations); }
};
DeviceForwardMemory deviceForwardMemory(const Model &model, int64_t rows, int64_t seq, ComputePrecision precision);
// The blocks' part of DeviceForwardMemory::weights (the tensors with a layer index): in all, what a pass with
// resident blocks holds, and of the largest block, what a streamed pass holds of each block it uploads. Sliced
// blocks' own widths and shortcut matrices included.
struct DeviceBlockWeights {
    uint64_t total = 0;
    uint64_t largest = 0;
};
DeviceBlockWeights deviceBlockWeights(const Model &model, ComputePrecision precision);
// The pass's work buffers for a model of `config` whose head has `vocabRows` rows, with `elementBytes` per element
// of the compute type: the residual stream and its scratch, the projections in fp32 and the compute type, the MLP's
// three intermediate buffers, the attention's (heads x seq x seq) scores in fp32 and probabilities in the compute
// type, the LM head's logits for up to kDeviceHeadRows rows, the RoPE tables, token ids, targets and per-row NLLs.
uint64_t deviceForwardActivationBytes(const ModelConfig &config, int64_t vocabRows, int64_t rows, int64_t seq,
                                      uint64_t elementBytes);

// `device` runs the forward pass itself (a GPU).
bool hasDeviceForward(ComputeBackend &device);
// The forward pass for `model` on `device` (a GPU backend), or LatheError saying why not (a device without one,
// BERT, out of memory), with a hint to use the CPU.
std::unique_ptr<DeviceForward> createDeviceForward(ComputeBackend &device, const Model &model,
                                                   const DeviceForwardOptions &options);

} // namespace lathe
