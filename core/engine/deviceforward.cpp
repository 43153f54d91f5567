#include "engine/deviceforward.h"

#include "base/error.h"
#include "engine/transformer.h"
#include "model/model.h"
#include "numeric/backend.h"

#include <algorithm>
#include <vector>

namespace lathe {

const char *precisionName(ComputePrecision p) {
    switch (p) {
    case ComputePrecision::Fp32: return "fp32";
    case ComputePrecision::Bf16: return "bf16";
    case ComputePrecision::Fp16: return "fp16";
    }
    return "?";
}

ComputePrecision parsePrecision(const std::string &name) {
    if (name == "fp32" || name == "float32")
        return ComputePrecision::Fp32;
    if (name == "bf16" || name == "bfloat16")
        return ComputePrecision::Bf16;
    if (name == "fp16" || name == "float16")
        return ComputePrecision::Fp16;
    throw LatheError("unknown precision '" + name + "'", "use fp32, bf16 or fp16");
}

uint64_t deviceForwardActivationBytes(const ModelConfig &c, int64_t vocabRows, int64_t rows, int64_t seq,
                                      uint64_t elementBytes) {
    const uint64_t n = uint64_t(rows), d = uint64_t(c.hiddenSize), q = uint64_t(c.numHeads * c.headDim),
                   kv = uint64_t(c.numKvHeads * c.headDim), f = uint64_t(c.intermediateSize), t = elementBytes;
    // hidden, its scratch, the attention's and the MLP's outputs (fp32); the normed input (T); q, k, v in fp32 and
    // in T, the attention context (T); up and gate (fp32) and their product (T).
    const uint64_t perRow = 4 * d * 4 + d * t + (q + 2 * kv) * (4 + t) + q * t + 2 * f * 4 + f * t;
    const uint64_t attention = uint64_t(c.numHeads) * uint64_t(seq) * uint64_t(seq) * (4 + t);
    const uint64_t logits = uint64_t(std::min(kDeviceHeadRows, rows)) * uint64_t(vocabRows) * 4;
    const uint64_t rope = uint64_t(seq) * uint64_t(rotaryDims(c)) * 4; // cos and sin, half the rotated width each
    const uint64_t tokens = n * 4 * 2 + uint64_t(kDeviceHeadRows) * 8;    // ids, targets, one chunk's NLLs (double)
    return perRow * n + attention + logits + rope + tokens;
}

namespace {

uint64_t computeTypeBytes(ComputePrecision precision) { return precision == ComputePrecision::Fp32 ? 4 : 2; }

// A matrix the pass holds in the compute type: a linear's weight, but not a sliced model's shortcut matrices nor
// the token embedding, which stay fp32 (a tied head's compute-type copy is counted apart).
bool inComputeType(const TensorInfo &info) {
    switch (info.role) {
    case TensorRole::Unknown:
    case TensorRole::Buffer:
    case TensorRole::TokenEmbedding:
    case TensorRole::AttnShortcut:
    case TensorRole::MlpShortcut: return false;
    default: return !info.isBias && isLinearRole(info.role);
    }
}

// The device bytes of one tensor as the pass uploads it, `t` bytes per element of the compute type: the embedding
// tables, norms, biases and shortcut matrices in fp32, the other matrices in the compute type. Buffers and tensors
// of no known role are not uploaded.
uint64_t uploadedBytes(const TensorInfo &info, uint64_t t) {
    if (info.role == TensorRole::Unknown || info.role == TensorRole::Buffer)
        return 0;
    return uint64_t(info.numel()) * (inComputeType(info) ? t : 4);
}

} // namespace

DeviceForwardMemory deviceForwardMemory(const Model &model, int64_t rows, int64_t seq, ComputePrecision precision) {
    const uint64_t t = computeTypeBytes(precision);
    DeviceForwardMemory m;
    int64_t vocabRows = model.config.vocabSize, largest = 0;
    bool untiedHead = false;
    for (const TensorInfo &info : model.tensors()) {
        m.weights += uploadedBytes(info, t);
        if (info.role == TensorRole::TokenEmbedding && !info.isBias && !info.shape.empty())
            vocabRows = info.shape.front();
        if (inComputeType(info)) {
            largest = std::max(largest, info.numel());
            untiedHead = untiedHead || info.role == TensorRole::LmHead;
        }
    }
    if (!untiedHead) // the tied head: the token embedding again, in the compute type
        if (const TensorInfo *e = model.find(TensorRole::TokenEmbedding)) {
            m.weights += uint64_t(e->numel()) * t;
            largest = std::max(largest, e->numel());
        }
    m.staging = t == 4 ? 0 : uint64_t(largest) * 4;
    m.activations = deviceForwardActivationBytes(model.config, vocabRows, rows, seq, t);
    return m;
}

DeviceBlockWeights deviceBlockWeights(const Model &model, ComputePrecision precision) {
    const uint64_t t = computeTypeBytes(precision);
    std::vector<uint64_t> perBlock(size_t(std::max<int64_t>(model.config.numLayers, 0)), 0);
    for (const TensorInfo &info : model.tensors())
        if (info.layer >= 0 && size_t(info.layer) < perBlock.size())
            perBlock[size_t(info.layer)] += uploadedBytes(info, t);
    DeviceBlockWeights w;
    for (const uint64_t b : perBlock) {
        w.total += b;
        w.largest = std::max(w.largest, b);
    }
    return w;
}

bool hasDeviceForward(ComputeBackend &device) { return deviceService<DeviceForwardService>(device) != nullptr; }

std::unique_ptr<DeviceForward> createDeviceForward(ComputeBackend &device, const Model &model,
                                                   const DeviceForwardOptions &options) {
    DeviceForwardService *service = deviceService<DeviceForwardService>(device);
    if (!service)
        throw LatheError("the forward pass cannot run on " + device.device().name + " as a device pass",
                         "use --device cpu (the CPU engine), or a build with the CUDA toolkit and a GPU");
    return service->create(model, options);
}

} // namespace lathe
