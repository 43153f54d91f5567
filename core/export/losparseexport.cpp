#include "export/losparseexport.h"

#include "base/bytestorage.h"
#include "base/error.h"
#include "model/model.h"
#include "remotecode.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cstring>

namespace lathe {

namespace {

// An fp32 or int64 tensor owned by the model, outside any role (written as it is: never transposed).
void addOwned(Model &m, const std::string &name, DType type, std::vector<int64_t> shape, const void *data, size_t bytes) {
    TensorInfo t;
    t.name = name;
    t.sourceName = name;
    t.role = TensorRole::Unknown;
    t.dtype = type;
    t.shape = std::move(shape);
    std::vector<uint8_t> b(bytes);
    if (bytes)
        std::memcpy(b.data(), data, bytes);
    t.storage = std::make_shared<OwnedBytes>(std::move(b));
    t.offset = 0;
    t.nbytes = bytes;
    m.addTensor(std::move(t));
}

} // namespace

HfWriteResult exportLoSparseCompact(Model &model, const train::CausalLm<float> &lm, const std::string &dir,
                                    HfWriteOptions options, const ProgressCallback &progress) {
    Model *out = &model;
    nlohmann::json linears = nlohmann::json::object();
    std::vector<std::string> replaced;
    for (const auto &slot : lm.linears()) {
        const auto *k = dynamic_cast<const train::LowRankSparseLinear<float> *>(slot.kind);
        if (!k)
            continue;
        const std::string &w = k->weightName();
        const std::string path = w.substr(0, w.size() - std::string(".weight").size());
        std::vector<float> rows;
        std::vector<int64_t> index;
        const train::Matrix<float> &s = k->sparse()->value;
        for (int64_t r = 0; r < s.rows(); ++r)
            if (k->rowMask()[size_t(r)]) {
                index.push_back(r);
                rows.insert(rows.end(), s.row(r).data(), s.row(r).data() + s.cols());
            }
        const train::Matrix<float> &l = k->left()->value, &rr = k->right()->value;
        out->removeTensor(w);
        addOwned(*out, path + ".lowrank_left", DType::F32, {l.rows(), l.cols()}, l.data(), size_t(l.size()) * 4);
        addOwned(*out, path + ".lowrank_right", DType::F32, {rr.rows(), rr.cols()}, rr.data(), size_t(rr.size()) * 4);
        addOwned(*out, path + ".sparse_rows", DType::F32, {int64_t(index.size()), s.cols()}, rows.data(),
                 rows.size() * 4);
        addOwned(*out, path + ".sparse_index", DType::I64, {int64_t(index.size())}, index.data(), index.size() * 8);
        linears[path] = {{"out", k->outFeatures()}, {"in", k->inFeatures()}, {"rank", k->rank()},
                         {"kept_rows", int64_t(index.size())}, {"bias", k->bias() != nullptr}};
        replaced.push_back(w);
    }
    require(!replaced.empty(), dir, "the model has no LoSparse linears", "train it with \"method\": \"losparse\"");
    // Every other tensor as trained (biases, norms, embeddings, linears LoSparse did not replace).
    lm.forEachExportTensor([&](const std::string &name, const train::Matrix<float> &value) {
        if (std::find(replaced.begin(), replaced.end(), name) != replaced.end())
            return;
        std::vector<int64_t> shape = {value.rows()};
        if (value.cols() > 1)
            shape.push_back(value.cols());
        out->setFloat(name, std::vector<float>(value.data(), value.data() + value.size()), shape);
    });
    options.configPatch["lathe_losparse"] = {{"base_model_type", model.config.modelType}, {"linears", linears}};
    options.configPatch["model_type"] = "lathe_losparse";
    options.configPatch["architectures"] = nlohmann::json::array({"LatheLoSparseForCausalLM"});
    options.configPatch["auto_map"] = {{"AutoConfig", "configuration_lathe_losparse.LatheLoSparseConfig"},
                                       {"AutoModelForCausalLM", "modeling_lathe_losparse.LatheLoSparseForCausalLM"}};
    options.extraFiles.emplace_back(remotecode::kLoSparseConfigurationFile, remotecode::kLoSparseConfiguration);
    options.extraFiles.emplace_back(remotecode::kLoSparseModelingFile, remotecode::kLoSparseModeling);
    return writeHfFolder(*out, dir, options, progress);
}

} // namespace lathe
