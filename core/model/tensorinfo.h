#pragma once

#include "base/bytestorage.h"
#include "base/dtype.h"
#include "model/tensorrole.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

// How the stored bytes map to the canonical layout. The engine's canonical layout is Hugging Face's: a linear
// weight is row-major (out x in) and y = x W^T + b; q/k rows use HF's rotate-half RoPE convention (the two halves of
// each head's dimensions are rotated together), not the interleaved pairs of llama2.c / Meta / llama.cpp.
enum class TensorTransform : uint8_t {
    None,
    Transpose,     // stored (in x out), as GPT-2's Conv1D: transpose to get (out x in)
    RopeUnpermute, // stored with interleaved RoPE rows: per head, row 2i+j -> row j*headDim/2 + i
};

struct TensorInfo {
    std::string name;       // canonical (Hugging Face) name, e.g. "model.layers.3.self_attn.q_proj.weight"
    std::string sourceName; // name in the file it was read from ("blk.3.attn_q.weight" in a GGUF)
    TensorRole role = TensorRole::Unknown;
    int layer = -1;         // block index, -1 for tensors outside the blocks
    bool isBias = false;    // the bias (or LayerNorm shift) of its module rather than the weight
    std::vector<int64_t> shape; // canonical shape, outermost first
    DType dtype = DType::F32;   // storage type

    std::shared_ptr<const ByteStorage> storage;
    uint64_t offset = 0; // byte range of the data in `storage`
    uint64_t nbytes = 0;
    TensorTransform transform = TensorTransform::None;
    int transformHeads = 0; // number of heads for RopeUnpermute

    int64_t numel() const {
        int64_t n = 1;
        for (auto d : shape)
            n *= d;
        return n;
    }
    const uint8_t *bytes() const { return storage->data() + offset; }
    std::string shapeString() const;
};

} // namespace lathe
