#include "analysis/modelsummary.h"

#include <cstdio>
#include <map>
#include <sstream>

namespace lathe {

using nlohmann::json;

std::string humanBytes(uint64_t bytes) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
    return buf;
}

std::string humanCount(int64_t n) {
    char buf[32];
    if (n >= 1'000'000'000)
        std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
    else if (n >= 1'000'000)
        std::snprintf(buf, sizeof buf, "%.2fM", double(n) / 1e6);
    else if (n >= 1'000)
        std::snprintf(buf, sizeof buf, "%.1fK", double(n) / 1e3);
    else
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
    return buf;
}

json summarizeModel(const Model &model) {
    const ModelConfig &c = model.config;
    json s;
    s["path"] = model.sourcePath;
    s["format"] = sourceFormatName(model.format);
    s["family"] = familyName(c.family);
    s["model_type"] = c.modelType;
    s["architecture"] = c.architecture;
    s["config"] = {{"hidden_size", c.hiddenSize},       {"intermediate_size", c.intermediateSize},
                   {"num_layers", c.numLayers},         {"num_heads", c.numHeads},
                   {"num_kv_heads", c.numKvHeads},      {"head_dim", c.headDim},
                   {"vocab_size", c.vocabSize},         {"max_positions", c.maxPositions},
                   {"norm_eps", c.normEps},             {"rope_theta", c.ropeTheta},
                   {"tied_embeddings", c.tiedEmbeddings}, {"activation", c.activation}};

    std::map<std::string, int64_t> byRole, byGroup;
    std::vector<int64_t> byLayer(size_t(c.numLayers), 0);
    std::map<std::string, json> byType;
    int64_t total = 0, linear = 0;
    uint64_t storedBytes = 0;
    for (const auto &t : model.tensors()) {
        if (t.role == TensorRole::Buffer)
            continue;
        const int64_t n = t.numel();
        total += n;
        if (isLinearRole(t.role) && !t.isBias)
            linear += n;
        byRole[roleName(t.role)] += n;
        byGroup[roleGroup(t.role)] += n;
        if (t.layer >= 0 && t.layer < c.numLayers)
            byLayer[size_t(t.layer)] += n;
        json &ty = byType[dtypeName(t.dtype)];
        if (ty.is_null())
            ty = {{"tensors", 0}, {"parameters", 0}, {"bytes", 0}};
        ty["tensors"] = ty["tensors"].get<int64_t>() + 1;
        ty["parameters"] = ty["parameters"].get<int64_t>() + n;
        ty["bytes"] = ty["bytes"].get<uint64_t>() + t.nbytes;
        storedBytes += t.nbytes;
    }
    s["parameters"] = {{"total", total},
                       {"linear_weights", linear},
                       {"by_role", byRole},
                       {"by_group", byGroup},
                       {"by_layer", byLayer}};
    s["dtypes"] = byType;
    s["tensor_count"] = model.tensors().size();
    s["file_bytes"] = model.sourceBytes;
    s["tensor_bytes"] = storedBytes;
    s["files"] = model.sourceFiles;
    s["memory"] = {{"fp32_bytes", uint64_t(total) * 4}, {"bf16_bytes", uint64_t(total) * 2}};
    s["tokenizer"] = model.tokenizer.kind;
    s["warnings"] = model.warnings;
    return s;
}

std::string formatSummary(const json &s) {
    std::ostringstream o;
    const json &c = s["config"];
    o << "Model          " << s["path"].get<std::string>() << "\n";
    o << "Format         " << s["format"].get<std::string>() << "\n";
    o << "Architecture   " << s["architecture"].get<std::string>() << " (family " << s["family"].get<std::string>()
      << ", model_type " << s["model_type"].get<std::string>() << ")\n";
    o << "Dimensions     hidden " << c["hidden_size"] << ", intermediate " << c["intermediate_size"] << ", "
      << c["num_layers"] << " layers, " << c["num_heads"] << " heads (" << c["num_kv_heads"] << " kv, head dim "
      << c["head_dim"] << "), vocab " << c["vocab_size"] << ", context " << c["max_positions"] << "\n";
    o << "Embeddings     " << (c["tied_embeddings"].get<bool>() ? "tied to the output head" : "untied") << "\n";
    const json &p = s["parameters"];
    o << "Parameters     " << humanCount(p["total"].get<int64_t>()) << " (" << p["total"].get<int64_t>()
      << "), of which linear weights " << humanCount(p["linear_weights"].get<int64_t>()) << "\n";
    o << "\nBy role\n";
    for (auto it = p["by_role"].begin(); it != p["by_role"].end(); ++it) {
        char line[128];
        std::snprintf(line, sizeof line, "  %-22s %14lld  %5.1f%%\n", it.key().c_str(), static_cast<long long>(it->get<int64_t>()),
                      100.0 * double(it->get<int64_t>()) / double(std::max<int64_t>(1, p["total"].get<int64_t>())));
        o << line;
    }
    o << "\nBy layer\n";
    const auto &layers = p["by_layer"];
    for (size_t i = 0; i < layers.size(); ++i) {
        char line[96];
        std::snprintf(line, sizeof line, "  block %-4zu %14lld\n", i, static_cast<long long>(layers[i].get<int64_t>()));
        o << line;
    }
    o << "\nStorage types\n";
    for (auto it = s["dtypes"].begin(); it != s["dtypes"].end(); ++it) {
        char line[128];
        std::snprintf(line, sizeof line, "  %-6s %5lld tensors %14lld params  %s\n", it.key().c_str(),
                      static_cast<long long>((*it)["tensors"].get<int64_t>()),
                      static_cast<long long>((*it)["parameters"].get<int64_t>()),
                      humanBytes((*it)["bytes"].get<uint64_t>()).c_str());
        o << line;
    }
    o << "\nFile size      " << humanBytes(s["file_bytes"].get<uint64_t>()) << " in " << s["files"].size() << " file(s)\n";
    o << "Memory to load fp32 " << humanBytes(s["memory"]["fp32_bytes"].get<uint64_t>()) << ", bf16 "
      << humanBytes(s["memory"]["bf16_bytes"].get<uint64_t>()) << "\n";
    o << "Tokenizer      " << (s["tokenizer"].get<std::string>().empty() ? "none found" : s["tokenizer"].get<std::string>()) << "\n";
    for (const auto &w : s["warnings"])
        o << "Warning        " << w.get<std::string>() << "\n";
    return o.str();
}

} // namespace lathe
