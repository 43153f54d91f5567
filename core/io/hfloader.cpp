// Reader for Hugging Face model folders: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Tensors keep their HF names; GPT-2's Conv1D weights are marked Transpose so that
// every linear reads as (out x in).

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "model/architecture.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <set>

namespace lathe {

namespace fs = std::filesystem;

namespace {

nlohmann::json readJsonFile(const fs::path &p) {
    const std::string text = readWholeFile(p.string());
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception &e) {
        throw LatheError(p.string() + ": invalid JSON (" + e.what() + ")");
    }
}

TokenizerSource findHfTokenizer(const fs::path &dir) {
    TokenizerSource t;
    for (const char *f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "vocab.json", "merges.txt", "vocab.txt", "generation_config.json"})
        if (fs::exists(dir / f))
            t.files.push_back((dir / f).string());
    if (fs::exists(dir / "tokenizer.json"))
        t.kind = "hf-json";
    else if (fs::exists(dir / "tokenizer.model"))
        t.kind = "sentencepiece";
    else if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"))
        t.kind = "bpe";
    else if (fs::exists(dir / "vocab.txt"))
        t.kind = "wordpiece";
    return t;
}

} // namespace

std::unique_ptr<Model> openHfFolder(const std::string &dirArg) {
    const fs::path dir(dirArg);
    require(fs::is_directory(dir), dirArg, "not a folder");
    const fs::path configPath = dir / "config.json";
    require(fs::exists(configPath), dirArg, "no config.json in the folder",
            "a Hugging Face model folder holds config.json next to the safetensors files");

    auto model = std::make_unique<Model>();
    model->format = SourceFormat::HfFolder;
    model->sourcePath = dirArg;
    model->config = configFromHfJson(readJsonFile(configPath), configPath.string());
    const ArchitectureAdapter &adapter = ArchitectureAdapter::forFamily(model->config.family);

    // Which files hold the tensors, and which tensor each index entry expects where.
    std::vector<fs::path> shards;
    std::map<std::string, std::string> expected; // tensor -> shard file name, from the index
    const fs::path indexPath = dir / "model.safetensors.index.json";
    if (fs::exists(indexPath)) {
        const nlohmann::json index = readJsonFile(indexPath);
        require(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                indexPath.string(), "no weight_map object");
        std::set<std::string> names;
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            require(it->is_string(), indexPath.string(), "weight_map entry for '" + it.key() + "' is not a file name");
            const std::string shard = it->get<std::string>();
            require(shard.find('/') == std::string::npos && shard != ".." && !shard.empty(), indexPath.string(),
                    "weight_map names a file outside the folder: '" + shard + "'");
            expected[it.key()] = shard;
            names.insert(shard);
        }
        for (const auto &n : names) {
            require(fs::exists(dir / n), indexPath.string(), "missing shard '" + n + "'",
                    "download every model-XXXXX-of-YYYYY.safetensors file the index lists");
            shards.push_back(dir / n);
        }
    } else if (fs::exists(dir / "model.safetensors")) {
        shards.push_back(dir / "model.safetensors");
    } else {
        const bool torchBin = fs::exists(dir / "pytorch_model.bin");
        throw LatheError(dirArg + ": no model.safetensors or model.safetensors.index.json in the folder",
                         torchBin ? "PyTorch .bin checkpoints are not read; convert them to safetensors first"
                                  : "the folder must hold the weights as safetensors");
    }

    for (const auto &shardPath : shards) {
        auto file = MappedFile::open(shardPath.string());
        model->sourceFiles.push_back(shardPath.string());
        model->sourceBytes += file->size();
        const SafetensorsHeader header = parseSafetensorsHeader(file->data(), file->size(), shardPath.string());
        if (model->metadata.empty() && !header.metadata.empty())
            model->metadata = header.metadata;
        for (const auto &e : header.entries) {
            auto ex = expected.find(e.name);
            if (!expected.empty())
                require(ex != expected.end() && ex->second == shardPath.filename().string(), shardPath.string(),
                        "tensor '" + e.name + "' is not where model.safetensors.index.json says it is");
            TensorInfo t;
            t.name = t.sourceName = e.name;
            const RoleMatch m = adapter.classifyHf(e.name);
            t.role = m.role;
            t.layer = m.layer;
            t.isBias = m.isBias;
            t.dtype = e.dtype;
            t.shape = e.shape;
            t.storage = file;
            t.offset = e.begin;
            t.nbytes = e.end - e.begin;
            if (adapter.hfStoresTransposed(t.role, t.isBias) && t.shape.size() == 2) {
                std::swap(t.shape[0], t.shape[1]);
                t.transform = TensorTransform::Transpose;
            }
            if (t.role == TensorRole::Unknown)
                model->warnings.push_back("tensor '" + e.name + "' is not part of the " +
                                          familyName(model->config.family) + " layout; kept as is");
            model->addTensor(std::move(t));
        }
    }
    for (const auto &[name, shard] : expected)
        require(model->find(name) != nullptr, indexPath.string(),
                "tensor '" + name + "' is listed in the index but missing from '" + shard + "'");

    // Checkpoints that omit the head although the config says it is untied (some Llama exports) are tied in effect.
    if (!model->config.tiedEmbeddings && !model->find(TensorRole::LmHead) &&
        model->config.family != ArchFamily::Bert) {
        model->config.tiedEmbeddings = true;
        model->warnings.push_back("no lm_head tensor: the head is taken as tied to the token embedding");
    }
    model->tokenizer = findHfTokenizer(dir);
    checkModelConsistency(*model);
    for (const auto &w : model->warnings)
        spdlog::warn("{}: {}", dirArg, w);
    return model;
}

} // namespace lathe
