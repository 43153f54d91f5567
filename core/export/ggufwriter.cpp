// GGUF v3 writer in llama.cpp's layout (gguf-py's constants.py and convert_hf_to_gguf.py are the references for
// key names, value types and tensor names). The file is: magic, version, tensor count, key/value count; the
// key/values; the tensor infos (name, dims fastest first, ggml type, offset from the data section); padding to
// the alignment; the tensor data, each tensor padded to the alignment.

#include "export/ggufwriter.h"

#include "base/error.h"
#include "base/mappedfile.h"
#include "base/outputfiles.h"
#include "export/tokenizerexport.h"
#include "io/ggufparser.h"
#include "model/architecture.h"
#include "numeric/dequantize.h"

#include <spdlog/spdlog.h>

#include <cassert>
#include <climits>
#include <cmath>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kAlignment = 32;

enum GgufType : uint32_t { U8 = 0, I32 = 5, U32 = 4, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11 };

// llama.cpp's general.file_type (llama_ftype) for the storage type of the weights.
uint32_t fileType(DType t) {
    switch (t) {
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    default: return 0;
    }
}

// Little-endian bytes of the header.
struct Bytes {
    std::string v;
    template <typename T> void put(T x) { v.append(reinterpret_cast<const char *>(&x), sizeof(T)); }
    void str(const std::string &s) {
        put<uint64_t>(s.size());
        v += s;
    }
};

// The GGUF value type llama.cpp reads for a JSON value: integers as UINT32 (ids, counts: llama.cpp checks the
// type of the keys it reads, and its integer keys are u32), or INT32 when negative or inside an array
// (token_type); numbers with a fraction as FLOAT32; strings, bools; arrays of one element type.
uint32_t scalarType(const json &v, bool inArray) {
    if (v.is_boolean())
        return BOOL;
    if (v.is_string())
        return STRING;
    if (v.is_number_float())
        return F32;
    if (v.is_number_integer() || v.is_number_unsigned()) {
        if (inArray)
            return I32;
        if (v.is_number_unsigned() || v.get<int64_t>() >= 0)
            return v.get<uint64_t>() <= 0xffffffffull ? U32 : U64;
        return v.get<int64_t>() >= INT32_MIN ? I32 : I64;
    }
    return ARRAY;
}

void putScalar(Bytes &b, const json &v, uint32_t type) {
    switch (type) {
    case BOOL: b.put<uint8_t>(v.get<bool>() ? 1 : 0); break;
    case STRING: b.str(v.get<std::string>()); break;
    case F32: b.put<float>(v.get<float>()); break;
    case I32: b.put<int32_t>(v.get<int32_t>()); break;
    case U32: b.put<uint32_t>(v.get<uint32_t>()); break;
    case U64: b.put<uint64_t>(v.get<uint64_t>()); break;
    case I64: b.put<int64_t>(v.get<int64_t>()); break;
    default: assert(false);
    }
}

void putKv(Bytes &b, const std::string &key, const json &v, const std::string &file) {
    b.str(key);
    if (!v.is_array()) {
        const uint32_t t = scalarType(v, false);
        require(t != ARRAY, file, "metadata '" + key + "' has a value GGUF cannot hold");
        b.put<uint32_t>(t);
        putScalar(b, v, t);
        return;
    }
    // An array's element type is that of its elements; a float anywhere makes a numeric array FLOAT32.
    uint32_t elem = v.empty() ? I32 : scalarType(v[0], true);
    for (const json &e : v) {
        const uint32_t t = scalarType(e, true);
        if (t == F32 && elem == I32)
            elem = F32;
        else
            require(t == elem || (t == I32 && elem == F32), file, "metadata '" + key + "' mixes value types");
    }
    b.put<uint32_t>(ARRAY);
    b.put<uint32_t>(elem);
    b.put<uint64_t>(v.size());
    for (const json &e : v)
        putScalar(b, e, elem);
}

// The llama.cpp architecture for a model: its name, and whether q/k rows go to the interleaved RoPE order.
struct GgufArch {
    std::string name;
    bool permuteQk = false;
    bool rmsNorm = true;
};

GgufArch archFor(const ModelConfig &c) {
    switch (c.family) {
    case ArchFamily::Llama:
        // convert_hf_to_gguf writes Llama, Mistral and SmolLM as "llama" (permuted q/k, interleaved RoPE) and
        // Qwen2 as "qwen2" (NeoX RoPE, unpermuted).
        if (c.modelType == "qwen2")
            return {"qwen2", false, true};
        return {"llama", true, true};
    case ArchFamily::Gpt2: return {"gpt2", false, false};
    case ArchFamily::Phi: return {"phi2", false, false};
    default: return {};
    }
}

std::string ropeScalingType(const ModelConfig &c) {
    const json s = c.ropeScaling();
    if (!s.is_object())
        return "default";
    const auto text = [&](const char *k) { return s.contains(k) && s[k].is_string() ? s[k].get<std::string>() : ""; };
    std::string t = text("rope_type");
    if (t.empty())
        t = text("type");
    return t.empty() ? "default" : t;
}

struct Planned {
    const TensorInfo *tensor;
    std::string name;
    DType type;
    std::vector<uint64_t> dims; // fastest first
    uint64_t bytes = 0;
    uint64_t offset = 0; // from the start of the data section
    bool permute = false;
    int heads = 0;
};

// ggufExportBlocker without the tokenizer check.
std::optional<std::string> layoutBlocker(const Model &model) {
    const ModelConfig &c = model.config;
    if (c.slicing.active())
        return "a sliced model (SliceGPT) has residual widths that differ from its embedding width and shortcut "
               "matrices on its residual connections; llama.cpp's graphs have neither. Export it as a Hugging Face "
               "folder (its modelling code ships with it), or write the GGUF from a pruned, unsliced model";
    switch (c.family) {
    case ArchFamily::Opt: return "llama.cpp has no OPT architecture";
    case ArchFamily::Bert: return "llama.cpp runs BERT only as an embedding model; export it as a Hugging Face folder";
    default: break;
    }
    if (c.family == ArchFamily::Gpt2 && c.hf.value("scale_attn_by_inverse_layer_idx", false))
        return "GPT-2 with scale_attn_by_inverse_layer_idx has no llama.cpp form";
    const std::string scaling = ropeScalingType(c);
    if (scaling != "default" && scaling != "linear")
        return "its RoPE scaling '" + scaling + "' is not written to GGUF yet (linear is)";
    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(c.family);
    for (const TensorInfo &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        if (t.role == TensorRole::AttnShortcut || t.role == TensorRole::MlpShortcut)
            return "it has shortcut matrices on its residual connections ('" + t.name + "'), which llama.cpp's graphs lack";
        if (t.role == TensorRole::Unknown || !adapter.ggufName(t.role, t.layer, t.isBias))
            return "tensor '" + t.name + "' has no place in llama.cpp's " + archFor(c).name + " layout";
        if (!dtypeInfo(t.dtype).floatConvertible)
            return "tensor '" + t.name + "' holds " + dtypeName(t.dtype) + " values, not weights";
    }
    return std::nullopt;
}

std::optional<std::string> tokenizerBlocker(const GgufTokenizerMetadata &tok) {
    if (tok.note.empty())
        return std::nullopt;
    return "llama.cpp needs the vocabulary in the file, and " + tok.note;
}

} // namespace

std::optional<std::string> ggufExportBlocker(const Model &model) {
    if (auto why = layoutBlocker(model))
        return why;
    return tokenizerBlocker(ggufTokenizerMetadata(model)); // the layout first: it reads no tokenizer
}

bool isLatheGguf(const std::string &path) {
    try {
        auto file = MappedFile::open(path);
        const GgufFile g = parseGguf(file->data(), file->size(), path);
        return g.metadata.contains("lathe.writer");
    } catch (const std::exception &) {
        return false;
    }
}

DType ggufStorageType(const TensorInfo &t, DType requested) {
    if (t.shape.size() != 2)
        return DType::F32;
    if (requested == DType::Q8_0 && t.shape[1] % 32 != 0)
        return DType::F16;
    return requested;
}

GgufWriteResult writeGgufFile(const Model &model, const std::string &path, const GgufWriteOptions &options,
                              const ProgressCallback &progress) {
    require(options.dtype == DType::F32 || options.dtype == DType::F16 || options.dtype == DType::Q8_0, path,
            std::string("cannot write GGUF weights as ") + dtypeName(options.dtype), "choose f32, f16 or q8_0");
    const GgufTokenizerMetadata tokenizer = ggufTokenizerMetadata(model); // checked here, written below
    std::optional<std::string> why = layoutBlocker(model);
    if (!why)
        why = tokenizerBlocker(tokenizer);
    if (why)
        throw LatheError(path + ": this model cannot be written as GGUF: " + *why,
                         "export it as a Hugging Face folder instead (lathe-cli export --format hf)");
    std::vector<std::string> inputs = model.tokenizer.files;
    inputs.push_back(model.sourcePath);
    checkOutputFile(path, options.overwrite, inputs, [](const fs::path &p) { return isLatheGguf(p.string()); },
                    "GGUF file");
    cleanStaleTemporaries(fs::absolute(fs::path(path)).parent_path());

    const ModelConfig &c = model.config;
    const GgufArch arch = archFor(c);
    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(c.family);
    GgufWriteResult result;
    result.architecture = arch.name;

    // Tensors: llama.cpp's names and types, offsets in the data section.
    std::vector<Planned> plan;
    uint64_t dataBytes = 0;
    for (const TensorInfo &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        Planned p{&t, *adapter.ggufName(t.role, t.layer, t.isBias), DType::F32, {}};
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it)
            p.dims.push_back(uint64_t(*it));
        if (p.dims.empty())
            p.dims.push_back(1);
        p.type = ggufStorageType(t, options.dtype);
        if (t.shape.size() == 2 && p.type != options.dtype)
            result.notes.push_back(t.name + ": rows of " + std::to_string(p.dims[0]) +
                                   " values are not a multiple of Q8_0's 32; written as F16");
        p.permute = arch.permuteQk && (t.role == TensorRole::AttnQ || t.role == TensorRole::AttnK);
        p.heads = int(t.role == TensorRole::AttnQ ? c.numHeads : c.numKvHeads);
        p.bytes = *dtypeBytes(p.type, uint64_t(t.numel()));
        p.offset = dataBytes;
        dataBytes += (p.bytes + kAlignment - 1) / kAlignment * kAlignment;
        plan.push_back(std::move(p));
    }
    require(!plan.empty(), path, "the model has no tensors to write");
    result.tensors = int64_t(plan.size());

    // Metadata, in the order llama.cpp's converter writes it.
    std::vector<std::pair<std::string, json>> kv;
    std::string name = options.name;
    if (name.empty() && model.metadata.is_object())
        name = model.metadata.value("general.name", "");
    if (name.empty()) { // the file's stem, or the folder's name (given with or without a trailing slash)
        const fs::path source = fs::path(model.sourcePath).lexically_normal();
        name = source.has_filename() ? source.stem().string() : source.parent_path().filename().string();
    }
    kv.emplace_back("general.architecture", arch.name);
    kv.emplace_back("general.name", name);
    kv.emplace_back("general.file_type", fileType(options.dtype));
    if (isQuantized(options.dtype))
        kv.emplace_back("general.quantization_version", 2u);
    kv.emplace_back("general.alignment", uint32_t(kAlignment));
    const std::string a = arch.name + ".";
    kv.emplace_back(a + "context_length", uint64_t(c.maxPositions));
    kv.emplace_back(a + "embedding_length", uint64_t(c.hiddenSize));
    kv.emplace_back(a + "block_count", uint64_t(c.numLayers));
    kv.emplace_back(a + "feed_forward_length", uint64_t(c.intermediateSize));
    kv.emplace_back(a + "attention.head_count", uint64_t(c.numHeads));
    kv.emplace_back(a + "attention.head_count_kv", uint64_t(c.numKvHeads));
    if (arch.rmsNorm)
        kv.emplace_back(a + "attention.layer_norm_rms_epsilon", float(c.normEps));
    else
        kv.emplace_back(a + "attention.layer_norm_epsilon", float(c.normEps));
    if (c.family == ArchFamily::Llama || c.family == ArchFamily::Phi) {
        kv.emplace_back(a + "rope.freq_base", float(c.ropeTheta));
        const double rotary = c.family == ArchFamily::Phi ? c.partialRotaryFactor : 1.0;
        kv.emplace_back(a + "rope.dimension_count", uint64_t(std::llround(double(c.headDim) * rotary)));
        if (ropeScalingType(c) == "linear") {
            kv.emplace_back(a + "rope.scaling.type", "linear");
            kv.emplace_back(a + "rope.scaling.factor", float(c.ropeScaling().value("factor", 1.0)));
        }
    }
    if (c.headDim * c.numHeads != c.hiddenSize) {
        kv.emplace_back(a + "attention.key_length", uint64_t(c.headDim));
        kv.emplace_back(a + "attention.value_length", uint64_t(c.headDim));
    }
    kv.emplace_back(a + "vocab_size", uint64_t(c.vocabSize));
    for (const auto &[key, value] : tokenizer.keys.items())
        kv.emplace_back(key, value);
    kv.emplace_back("lathe.writer", "lathe");
    kv.emplace_back("lathe.source", fs::path(model.sourcePath).filename().string());
    for (const auto &[key, value] : options.notes)
        kv.emplace_back("lathe." + key, value);

    Bytes header;
    header.v = "GGUF";
    header.put<uint32_t>(3);
    header.put<uint64_t>(plan.size());
    header.put<uint64_t>(kv.size());
    for (const auto &[key, value] : kv)
        putKv(header, key, value, path);
    for (const Planned &p : plan) {
        header.str(p.name);
        header.put<uint32_t>(uint32_t(p.dims.size()));
        for (uint64_t d : p.dims)
            header.put<uint64_t>(d);
        header.put<uint32_t>(*ggmlTypeOf(p.type));
        header.put<uint64_t>(p.offset);
    }
    header.v.append((kAlignment - header.v.size() % kAlignment) % kAlignment, '\0');
    result.bytes = header.v.size() + dataBytes;
    checkSpaceFor(path, result.bytes);

    writeFileAtomic(fs::path(path), [&](CheckedFile &f) {
        f.write(header.v);
        std::vector<uint8_t> buf;
        static const char kZeros[kAlignment] = {};
        uint64_t done = 0;
        for (const Planned &p : plan) {
            reportProgress(progress, double(done) / double(dataBytes), "writing " + p.name);
            std::vector<float> v = model.loadFloat(*p.tensor);
            if (p.permute) {
                const int64_t rows = p.tensor->shape[0];
                ropePermuteRows(v.data(), rows, int64_t(v.size()) / rows, p.heads);
            }
            buf.resize(p.bytes);
            quantizeFloatCpu(p.type, v.data(), v.size(), buf.data());
            f.write(buf.data(), buf.size());
            f.write(kZeros, size_t((kAlignment - p.bytes % kAlignment) % kAlignment));
            done += p.bytes;
        }
        reportProgress(progress, 1.0, "finishing");
    });
    spdlog::info("wrote {} ({} tensors, {} bytes, arch {})", path, plan.size(), result.bytes, arch.name);
    return result;
}

} // namespace lathe
