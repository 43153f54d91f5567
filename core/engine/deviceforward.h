#pragma once

#include "numeric/mat.h"

#include <cstdint>
#include <memory>
#include <string>

namespace lathe {

class ComputeBackend;
class Model;
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

// `device` runs the forward pass itself (a GPU).
bool hasDeviceForward(ComputeBackend &device);
// The forward pass for `model` on `device` (a GPU backend), or LatheError saying why not (a device without one,
// BERT, out of memory), with a hint to use the CPU.
std::unique_ptr<DeviceForward> createDeviceForward(ComputeBackend &device, const Model &model,
                                                   const DeviceForwardOptions &options);

} // namespace lathe
