#include "export/hfwriter.h"

#include "base/error.h"
#include "base/outputfiles.h"
#include "export/tokenizerexport.h"
#include "model/architecture.h"
#include "numeric/dequantize.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

namespace lathe {

namespace fs = std::filesystem;

namespace {

void writeTextFile(const fs::path &p, const std::string &text) {
    CheckedFile f(p);
    f.write(text.data(), text.size());
    f.close();
}

std::string torchDtypeName(DType t) {
    switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
    }
}

struct Planned {
    const TensorInfo *tensor;
    DType outType;
    std::vector<int64_t> outShape; // as stored in the file
    bool transposeOnWrite;         // GPT-2 Conv1D: write (in x out)
    bool rawCopy;                  // stored bytes are already exactly what is written
    uint64_t bytes;
    size_t shard = 0;
    uint64_t offset = 0; // within the shard's data section
};

} // namespace

HfWriteResult writeHfFolder(const Model &model, const std::string &dirArg, const HfWriteOptions &options,
                            const ProgressCallback &progress) {
    fs::path dir = fs::path(dirArg).lexically_normal();
    if (dir.filename().empty())
        dir = dir.parent_path();
    if (options.dtype)
        require(*options.dtype == DType::F32 || *options.dtype == DType::F16 || *options.dtype == DType::BF16, dirArg,
                std::string("cannot write tensors as ") + dtypeName(*options.dtype), "choose f32, f16 or bf16");
    require(options.maxShardBytes >= 1024, dirArg, "shard size limit is too small");
    std::vector<std::string> inputs = model.tokenizer.files;
    inputs.push_back(model.sourcePath);
    checkOutputFolder(dir.string(), OutputKind::ModelExport, options.overwrite, inputs);
    cleanStaleTemporaries(fs::absolute(dir).parent_path());
    std::error_code ec;
    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(model.config.family);

    // Plan every tensor: output type, stored shape, shard and offset.
    std::vector<Planned> plan;
    DType configType = DType::F32;
    for (const auto &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        // The storage type applies to float tensors; integer ones (indices) are written as they are.
        Planned p{&t, t.dtype, t.shape, false, false, 0};
        if (options.dtype && dtypeInfo(t.dtype).floatConvertible)
            p.outType = *options.dtype;
        else if (isQuantized(t.dtype) || t.dtype == DType::F64)
            p.outType = DType::F32;
        p.transposeOnWrite = adapter.hfStoresTransposed(t.role, t.isBias) && t.shape.size() == 2;
        if (p.transposeOnWrite)
            std::swap(p.outShape[0], p.outShape[1]);
        const bool storedTransposed = t.transform == TensorTransform::Transpose;
        p.rawCopy = p.outType == t.dtype && t.transform != TensorTransform::RopeUnpermute &&
                    storedTransposed == p.transposeOnWrite;
        require(p.rawCopy || dtypeInfo(t.dtype).floatConvertible, dirArg,
                "tensor '" + t.name + "' of type " + dtypeName(t.dtype) + " cannot be converted for writing");
        p.bytes = *dtypeBytes(p.outType, uint64_t(t.numel()));
        if (t.role == TensorRole::TokenEmbedding)
            configType = p.outType;
        plan.push_back(std::move(p));
    }
    require(!plan.empty(), dirArg, "the model has no tensors to write");
    size_t nShards = 1;
    uint64_t shardBytes = 0, totalBytes = 0;
    for (auto &p : plan) {
        if (shardBytes > 0 && shardBytes + p.bytes > options.maxShardBytes) {
            ++nShards;
            shardBytes = 0;
        }
        p.shard = nShards - 1;
        p.offset = shardBytes;
        shardBytes += p.bytes;
        totalBytes += p.bytes;
    }
    auto shardName = [&](size_t i) {
        if (nShards == 1)
            return std::string("model.safetensors");
        char buf[64];
        std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, nShards);
        return std::string(buf);
    };

    const fs::path tmp = temporarySibling(dir, "lathe-tmp");
    fs::create_directories(tmp, ec);
    require(!ec, tmp.string(), "cannot create folder: " + ec.message());
    HfWriteResult result;
    try {
        uint64_t done = 0;
        nlohmann::json weightMap = nlohmann::json::object();
        for (size_t s = 0; s < nShards; ++s) {
            nlohmann::json header = nlohmann::json::object();
            header["__metadata__"] = {{"format", "pt"}, {"writer", "lathe"}};
            for (const auto &p : plan) {
                if (p.shard != s)
                    continue;
                header[p.tensor->name] = {{"dtype", dtypeName(p.outType)},
                                          {"shape", p.outShape},
                                          {"data_offsets", {p.offset, p.offset + p.bytes}}};
                weightMap[p.tensor->name] = shardName(s);
            }
            CheckedFile f(tmp / shardName(s));
            f.write(safetensorsPrefix(header));
            std::vector<uint8_t> buf;
            for (const auto &p : plan) {
                if (p.shard != s)
                    continue;
                reportProgress(progress, totalBytes ? double(done) / double(totalBytes) : 0.0,
                               "writing " + p.tensor->name + " (shard " + std::to_string(s + 1) + "/" +
                                   std::to_string(nShards) + ")");
                if (p.rawCopy) {
                    f.write(p.tensor->bytes(), p.bytes);
                } else {
                    std::vector<float> v = model.loadFloat(*p.tensor);
                    if (p.transposeOnWrite) {
                        const int64_t rows = p.tensor->shape[0], cols = p.tensor->shape[1];
                        std::vector<float> tr(v.size());
                        for (int64_t r = 0; r < rows; ++r)
                            for (int64_t c = 0; c < cols; ++c)
                                tr[size_t(c * rows + r)] = v[size_t(r * cols + c)];
                        v.swap(tr);
                    }
                    buf.resize(p.bytes);
                    quantizeFloatCpu(p.outType, v.data(), v.size(), buf.data());
                    f.write(buf.data(), buf.size());
                }
                done += p.bytes;
            }
            f.close();
            result.files.push_back(shardName(s));
        }
        if (nShards > 1) {
            const nlohmann::json index = {{"metadata", {{"total_size", totalBytes}}}, {"weight_map", weightMap}};
            writeTextFile(tmp / "model.safetensors.index.json", index.dump(2) + "\n");
            result.files.push_back("model.safetensors.index.json");
        }
        nlohmann::json config = model.config.toHfJson();
        config["torch_dtype"] = torchDtypeName(configType);
        if (options.configPatch.is_object())
            config.merge_patch(options.configPatch);
        for (const auto &[name, text] : options.extraFiles) {
            writeTextFile(tmp / name, text);
            result.files.push_back(name);
        }
        writeTextFile(tmp / "config.json", config.dump(2) + "\n");
        result.files.push_back("config.json");
        // A tokenizer without files of its own (a GGUF's embedded vocabulary) is written as tokenizer.json.
        const HfTokenizerFiles converted = hfTokenizerFiles(model);
        for (const auto &[name, text] : converted.files) {
            writeTextFile(tmp / name, text);
            result.files.push_back(name);
        }
        if (!converted.note.empty())
            spdlog::warn("{}: no tokenizer written: {}", dirArg, converted.note);
        for (const auto &tokFile : model.tokenizer.files) {
            const fs::path src(tokFile);
            fs::copy_file(src, tmp / src.filename(), fs::copy_options::overwrite_existing, ec);
            require(!ec, tokFile, "cannot copy the tokenizer file: " + ec.message());
            result.files.push_back(src.filename().string());
        }
        writeOutputMarker(tmp, OutputKind::ModelExport);
        fsyncFolder(tmp);
        reportProgress(progress, 1.0, "finishing");
        installFolder(tmp, dir);
    } catch (const fs::filesystem_error &e) {
        fs::remove_all(tmp, ec);
        throw LatheError(dirArg + ": " + e.what());
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    result.bytes = totalBytes;
    spdlog::info("wrote {} ({} files, {} bytes of tensors)", dir.string(), result.files.size(), totalBytes);
    return result;
}

} // namespace lathe
