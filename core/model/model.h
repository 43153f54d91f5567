#pragma once

#include "model/modelconfig.h"
#include "model/tensorinfo.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lathe {

class ComputeBackend;

enum class SourceFormat { HfFolder, Gguf, Llama2c };
const char *sourceFormatName(SourceFormat f);

// Where the tokenizer of a model lives; the tokenizer itself is built by the engine from this record.
struct TokenizerSource {
    std::string kind;  // "hf-json" (tokenizer.json), "sentencepiece", "bpe" (vocab.json+merges.txt), "llama2c", "gguf", ""
    std::vector<std::string> files; // files to copy along when the model is written as a folder
};

struct NonFiniteReport {
    std::string tensor;
    int64_t nanCount = 0;
    int64_t infCount = 0;
};

// One model in memory: its configuration and a table of tensors whose bytes stay in the (memory-mapped) files
// until asked for. Opening and listing never reads weights; loadFloat() reads one tensor.
class Model {
public:
    ModelConfig config;
    SourceFormat format = SourceFormat::HfFolder;
    std::string sourcePath;               // folder or file the model was opened from
    std::vector<std::string> sourceFiles; // every file whose bytes the tensors use
    uint64_t sourceBytes = 0;             // their total size on disk
    TokenizerSource tokenizer;
    nlohmann::json metadata = nlohmann::json::object(); // GGUF key/values or safetensors __metadata__
    std::vector<std::string> warnings;    // problems that did not stop loading (unknown tensors, NaN weights)

    const std::vector<TensorInfo> &tensors() const { return m_tensors; }
    const TensorInfo *find(const std::string &name) const;
    const TensorInfo *find(TensorRole role, int layer = -1, bool isBias = false) const;
    void addTensor(TensorInfo t); // names must be unique (LatheError otherwise)

    // The tensor as fp32 in the canonical layout (see TensorTransform). Throws LatheError for integer tensors.
    std::vector<float> loadFloat(const TensorInfo &t) const;
    std::vector<float> loadFloat(const std::string &name) const;
    // The tensor as bf16 bits in the canonical layout: BF16 storage is copied as is, other float types are
    // rounded to nearest even. Half the memory of loadFloat() for weights that are computed in bf16.
    std::vector<uint16_t> loadBf16(const TensorInfo &t) const;

    // Replaces a tensor's data with an owned fp32 buffer of the given canonical shape (used by methods).
    void setFloat(const std::string &name, std::vector<float> data, std::vector<int64_t> shape);
    // setFloat on the tensor of this role, or a new tensor named by the family's Hugging Face scheme when the model
    // has none (a bias created by norm fusion, an untied head, shortcut matrices).
    void setFloat(TensorRole role, int layer, bool isBias, std::vector<float> data, std::vector<int64_t> shape);
    void removeTensor(const std::string &name); // no-op when absent
    // Rounds every float tensor (buffers excepted) to the values `storage` (F16 or BF16) can hold, kept as owned
    // fp32: evaluating the model afterwards gives what a checkpoint written in that type gives. No-op for F32.
    void roundFloatTensorsTo(DType storage);

    int64_t parameterCount() const; // parameters of every non-buffer tensor
    // Reads every float tensor and counts NaN / Inf values; also appends a warning per bad tensor to `warnings`.
    // Dequantizes on `backend` (the GPU, say) when given, else on the CPU reference.
    std::vector<NonFiniteReport> scanNonFinite(ComputeBackend *backend = nullptr);

private:
    std::vector<TensorInfo> m_tensors;
    std::unordered_map<std::string, size_t> m_index;
};

// Reorders rows from interleaved RoPE pairs (llama2.c, Meta, llama.cpp's GGUF for arch "llama") to HF's
// rotate-half convention. `rows` = heads * headDim, each row `cols` wide. In place on a copy.
void ropeUnpermuteRows(float *data, int64_t rows, int64_t cols, int heads);
// The inverse: rotate-half rows to the interleaved order llama.cpp expects for arch "llama".
void ropePermuteRows(float *data, int64_t rows, int64_t cols, int heads);

} // namespace lathe
