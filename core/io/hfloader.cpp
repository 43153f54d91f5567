// Reader for Hugging Face model folders: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Tensors keep their HF names; GPT-2's Conv1D weights are marked Transpose so that
// every linear reads as (out x in).

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "model/architecture.h"
#include "numeric/mat.h"

#include <spdlog/spdlog.h>

#include <cstring>
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

// LoSparse's compact form (export/losparseexport.h): per replaced linear "<path>.lowrank_left" (out x r),
// ".lowrank_right" (r x in), ".sparse_rows" (k x in) and ".sparse_index" (k, int64). The linear's weight
// "<path>.weight" = L R + S is rebuilt in memory, so the model runs and is analysed like any other; L, R and the
// full S ("<path>.sparse", its pruned rows zero: the sparsity view shows the row mask) stay as buffers (not counted
// as parameters) to look at, so none of them is an unknown tensor. Bad parts are a LatheError naming the tensor,
// never a crash.
void mergeLoSparseParts(Model &model, const ArchitectureAdapter &adapter, const std::string &configFile) {
    const nlohmann::json &spec = model.config.hf["lathe_losparse"];
    require(spec.contains("linears") && spec["linears"].is_object(), configFile, "lathe_losparse has no linears object");
    auto part = [&](const std::string &name, DType type, size_t dims) -> const TensorInfo & {
        const TensorInfo *t = model.find(name);
        require(t && t->dtype == type && t->shape.size() == dims, configFile,
                "LoSparse part '" + name + "' is missing or has the wrong type or rank",
                "the compact folder is damaged: export it again");
        return *t;
    };
    // A new fp32 tensor the model owns (Model::setFloat fills it).
    auto addFloat = [&](const std::string &name, TensorRole role, int layer, const Mat &values) {
        TensorInfo t;
        t.name = t.sourceName = name;
        t.role = role;
        t.layer = layer;
        t.storage = std::make_shared<OwnedBytes>(std::vector<uint8_t>());
        model.addTensor(std::move(t));
        model.setFloat(name, std::vector<float>(values.data(), values.data() + values.size()),
                       {values.rows(), values.cols()});
    };
    for (auto it = spec["linears"].begin(); it != spec["linears"].end(); ++it) {
        const std::string path = it.key();
        const std::string left = path + ".lowrank_left", right = path + ".lowrank_right",
                          rowsName = path + ".sparse_rows", indexName = path + ".sparse_index";
        // Everything is read before the tensor list changes: the references below point into it.
        const TensorInfo &l = part(left, DType::F32, 2), &r = part(right, DType::F32, 2);
        const TensorInfo &rows = part(rowsName, DType::F32, 2), &index = part(indexName, DType::I64, 1);
        const int64_t out = l.shape[0], rank = l.shape[1], in = r.shape[1], kept = rows.shape[0];
        require(r.shape[0] == rank && rows.shape[1] == in && index.shape[0] == kept && kept <= out, configFile,
                path + ": the LoSparse parts' shapes do not fit together", "the compact folder is damaged: export it again");
        const std::vector<float> lv = model.loadFloat(l), rv = model.loadFloat(r), sv = model.loadFloat(rows);
        Mat s = Mat::Zero(out, in);
        for (int64_t k = 0; k < kept; ++k) {
            int64_t row;
            std::memcpy(&row, index.bytes() + k * int64_t(sizeof row), sizeof row);
            require(row >= 0 && row < out, configFile, indexName + ": row " + std::to_string(row) + " outside 0.." +
                                                           std::to_string(out - 1));
            s.row(row) = Eigen::Map<const Mat>(sv.data() + k * in, 1, in);
        }
        const Mat w = Eigen::Map<const Mat>(lv.data(), out, rank) * Eigen::Map<const Mat>(rv.data(), rank, in) + s;
        const RoleMatch m = adapter.classifyHf(path + ".weight");
        std::vector<TensorInfo> factors = {l, r};

        model.removeTensor(rowsName);
        model.removeTensor(indexName);
        addFloat(path + ".weight", m.role, m.layer, w);
        addFloat(path + ".sparse", TensorRole::Buffer, m.layer, s);
        for (TensorInfo &t : factors) {
            model.removeTensor(t.name);
            t.role = TensorRole::Buffer;
            t.layer = m.layer;
            model.addTensor(std::move(t));
        }
    }
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
            // A second tensor in the same place (a BERT checkpoint with both cls.predictions.bias and its tied
            // copy cls.predictions.decoder.bias) is kept as is; the engine reads the first.
            if (t.role != TensorRole::Unknown && t.role != TensorRole::Buffer && model->find(t.role, t.layer, t.isBias))
                t.role = TensorRole::Unknown;
            if (adapter.hfStoresTransposed(t.role, t.isBias) && t.shape.size() == 2) {
                std::swap(t.shape[0], t.shape[1]);
                t.transform = TensorTransform::Transpose;
            }
            model->addTensor(std::move(t));
        }
    }
    for (const auto &[name, shard] : expected)
        require(model->find(name) != nullptr, indexPath.string(),
                "tensor '" + name + "' is listed in the index but missing from '" + shard + "'");

    if (model->config.hf.contains("lathe_losparse"))
        mergeLoSparseParts(*model, adapter, configPath.string());
    // After the merge, which accounts for LoSparse's parts.
    for (const TensorInfo &t : model->tensors())
        if (t.role == TensorRole::Unknown)
            model->warnings.push_back("tensor '" + t.sourceName + "' is not part of the " +
                                      familyName(model->config.family) + " layout; kept as is");
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
