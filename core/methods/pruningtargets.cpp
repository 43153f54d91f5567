// Target selection, patterns and mask application shared by the pruning baselines (magnitude, Wanda).

#include "methods/pruningtargets.h"

#include "base/error.h"
#include "base/unicodetext.h"
#include "methods/methodparams.h"
#include "model/model.h"

#include <cmath>
#include <optional>

namespace lathe {

std::vector<PruningTarget> blockLinears(const Model &model) {
    const ModelConfig &c = model.config;
    std::vector<PruningTarget> out;
    struct Part {
        TensorRole role;
        LinearWeights BlockWeights::*member;
        const char *part;
    };
    const Part parts[] = {{TensorRole::AttnQ, &BlockWeights::q, "q"},       {TensorRole::AttnK, &BlockWeights::k, "k"},
                          {TensorRole::AttnV, &BlockWeights::v, "v"},       {TensorRole::AttnO, &BlockWeights::o, ""},
                          {TensorRole::MlpGate, &BlockWeights::gate, ""},   {TensorRole::MlpUp, &BlockWeights::up, ""},
                          {TensorRole::MlpDown, &BlockWeights::down, ""}};
    const int64_t qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
    for (int l = 0; l < c.numLayers; ++l) {
        const TensorInfo *qkv = model.find(TensorRole::AttnQkv, l, false);
        const int64_t in = c.blockInputWidth(l), mid = c.blockMidWidth(l);
        for (const Part &p : parts) {
            PruningTarget t;
            t.layer = l;
            t.role = p.role;
            t.member = p.member;
            const bool isQkv = p.role == TensorRole::AttnQ || p.role == TensorRole::AttnK || p.role == TensorRole::AttnV;
            const TensorInfo *ti = isQkv && qkv ? qkv : model.find(p.role, l, false);
            if (!ti)
                continue;
            t.tensor = ti->name;
            if (isQkv && qkv)
                t.part = p.part;
            switch (p.role) {
            case TensorRole::AttnQ: t.rows = qDim; t.cols = in; break;
            case TensorRole::AttnK:
            case TensorRole::AttnV: t.rows = kvDim; t.cols = in; break;
            case TensorRole::AttnO: t.rows = mid; t.cols = qDim; break;
            case TensorRole::MlpGate:
            case TensorRole::MlpUp: t.rows = c.intermediateSize; t.cols = c.family == ArchFamily::Phi ? in : mid; break;
            case TensorRole::MlpDown: t.rows = c.blockOutputWidth(l); t.cols = c.intermediateSize; break;
            default: break;
            }
            out.push_back(std::move(t));
        }
    }
    return out;
}

SparsityPattern patternFor(const PruningSelection &s, int layer) {
    SparsityPattern p = s.pattern;
    if (!p.isNm()) {
        auto it = s.layerRatio.find(layer);
        if (it != s.layerRatio.end())
            p.ratio = it->second;
    }
    return p;
}

std::vector<PruningTarget> selectTargets(const Model &model, const PruningSelection &s) {
    std::optional<unicode::NamePattern> re;
    try {
        re.emplace(s.targets);
    } catch (const LatheError &e) {
        throw LatheError(std::string("targets: ") + e.what(),
                         e.hint().empty() ? "e.g. \"mlp\" or \"layers\\\\.(1[0-9])\\\\..*proj\"" : e.hint());
    }
    for (const auto &[layer, ratio] : s.layerRatio) {
        if (layer < 0 || layer >= model.config.numLayers)
            throw LatheError("a per-layer ratio is given for block " + std::to_string(layer) + " but the model has " +
                                 std::to_string(model.config.numLayers) + " blocks");
        if (!(ratio >= 0.0 && ratio < 1.0))
            throw LatheError("the ratio " + std::to_string(ratio) + " of block " + std::to_string(layer) +
                                 " is outside [0, 1)",
                             "a sparsity of 0.5 prunes half the weights");
    }
    const std::vector<PruningTarget> all = blockLinears(model);
    std::vector<PruningTarget> picked;
    for (const PruningTarget &t : all)
        if (re->search(t.tensor))
            picked.push_back(t);
    if (picked.empty()) {
        std::string examples;
        for (size_t i = 0; i < all.size() && i < 4; ++i)
            examples += (i ? ", " : "") + all[i].tensor;
        throw LatheError("the target pattern '" + s.targets + "' matches none of the model's " +
                             std::to_string(all.size()) + " block linears",
                         "names look like " + examples);
    }
    for (const PruningTarget &t : picked)
        validatePattern(patternFor(s, t.layer), t.cols);
    return picked;
}

std::map<int, double> parseLayerRatios(const nlohmann::json &j, int layers) {
    return LayerRatios::fromJson(j).resolve(layers);
}

SparsityPattern parsePattern(const std::string &text, double ratio) {
    SparsityPattern p;
    p.ratio = ratio;
    if (text.empty() || text == "unstructured")
        return p;
    if (text == "per-row" || text == "per_row" || text == "row") {
        p.perRow = true;
        return p;
    }
    const auto colon = text.find(':');
    if (colon != std::string::npos) {
        try {
            size_t usedN = 0, used = 0;
            p.n = std::stoi(text.substr(0, colon), &usedN);
            const std::string ms = text.substr(colon + 1);
            p.m = std::stoi(ms, &used);
            if (usedN == colon && used == ms.size() && colon > 0) {
                if (p.n <= 0 || p.n >= p.m) // "2:0" or "0:0" must not fall back to unstructured pruning
                    throw LatheError("N:M pattern '" + text + "' needs 0 < N < M", "e.g. 2:4 prunes 2 of every 4 weights");
                return p;
            }
        } catch (const std::logic_error &) {
        }
    }
    throw LatheError("unknown sparsity pattern '" + text + "'", "use unstructured, per-row, 2:4 or 4:8");
}

std::vector<uint8_t> packBits(const std::vector<uint8_t> &mask) {
    std::vector<uint8_t> bits((mask.size() + 7) / 8, 0);
    for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i])
            bits[i / 8] |= uint8_t(1u << (i % 8));
    return bits;
}

std::vector<uint8_t> unpackBits(const std::vector<uint8_t> &bits, int64_t count) {
    std::vector<uint8_t> mask(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i)
        mask[size_t(i)] = (bits[size_t(i / 8)] >> (i % 8)) & 1u;
    return mask;
}

PrunedMatrix applyMask(const PruningTarget &t, Mat &w, const std::vector<uint8_t> &mask) {
    assert(int64_t(mask.size()) == w.size());
    PrunedMatrix r;
    r.label = t.label();
    r.layer = t.layer;
    r.member = t.member;
    r.rows = w.rows();
    r.cols = w.cols();
    double total = 0, removed = 0;
    float *p = w.data();
    for (int64_t i = 0; i < w.size(); ++i) {
        const double v = p[i];
        total += v * v;
        if (!mask[size_t(i)]) {
            removed += v * v;
            p[i] = 0.0f;
            ++r.pruned;
        }
    }
    r.weightError = total > 0 ? std::sqrt(removed / total) : 0.0;
    r.maskBits = packBits(mask);
    return r;
}

} // namespace lathe
