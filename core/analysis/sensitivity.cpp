#include "analysis/sensitivity.h"

#include "analysis/importance.h"
#include "analysis/sparsitymask.h"
#include "base/clock.h"
#include "base/error.h"
#include "engine/calibration.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/modelloader.h"
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace lathe {

namespace {


// Scores of one linear weight as the sweep prunes it (higher = keep).
std::vector<float> scoresOf(const Model &m, const TensorInfo &t, const std::vector<float> &w, const InputNorms &norms,
                            bool wanda) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if (!wanda)
        return magnitudeScores(w.data(), rows, cols);
    const auto it = norms.norms.find(t.name);
    if (it == norms.norms.end() || int64_t(it->second.size()) != cols)
        throw LatheError(m.sourcePath + ": no calibration input norms for '" + t.name + "'");
    return wandaScores(w.data(), rows, cols, it->second);
}

} // namespace

SensitivityResult sensitivitySweep(const std::string &modelPath, const std::vector<int32_t> &ids,
                                   const SensitivityParams &p, const ProgressCallback &progress) {
    const double t0 = steadySeconds();
    require(p.ratio > 0 && p.ratio < 1, "sensitivity", "the probed ratio must lie in (0, 1)");
    require(p.owlM > 0 && std::isfinite(p.owlM), "sensitivity", "OWL's M must be a positive number");
    require(p.calibrationWindows > 0 && p.evalWindows > 0 && p.seqLen > 1, "sensitivity",
            "calibration and evaluation windows and their length must be positive");
    std::unique_ptr<Model> model = openModel(modelPath);
    require(p.seqLen <= model->config.maxPositions, modelPath,
            "windows of " + std::to_string(p.seqLen) + " tokens are longer than the model's " +
                std::to_string(model->config.maxPositions) + " positions");
    require(int64_t(ids.size()) >= p.evalWindows * p.seqLen, modelPath,
            "the text has " + std::to_string(ids.size()) + " tokens, fewer than " + std::to_string(p.evalWindows) +
                " evaluation windows of " + std::to_string(p.seqLen),
            "use a longer text, fewer windows or shorter ones");

    // The block linears, by block and by kind.
    // By name: setFloat may move the tensor table, so tensors are found when used.
    std::map<int, std::vector<std::string>> blockNames;
    std::map<TensorRole, std::vector<std::string>> kindNames;
    for (const TensorInfo &t : model->tensors())
        if (isLinearRole(t.role) && t.layer >= 0 && !t.isBias && t.shape.size() == 2) {
            blockNames[t.layer].push_back(t.name);
            kindNames[t.role].push_back(t.name);
        }
    require(!blockNames.empty(), modelPath, "the model has no block linears to probe");
    const size_t units = blockNames.size() + kindNames.size();
    // Progress: calibration 10%, then one share per evaluation (dense + every unit).
    const auto part = [&](double from, double width, const std::string &stage) -> ProgressCallback {
        return [=, &progress](const Progress &pr) {
            if (!progress)
                return true;
            return progress(Progress{from + width * pr.fraction, stage + (pr.stage.empty() ? "" : ": " + pr.stage)});
        };
    };
    const double evalShare = 0.9 / double(units + 1);

    SensitivityResult r;
    InputNorms norms;
    if (p.wanda) {
        CalibrationParams cp;
        cp.samples = p.calibrationWindows;
        cp.seqLen = p.seqLen;
        const CalibrationSet set = makeCalibrationSet(ids, cp);
        r.note = set.note;
        Transformer engine(*model);
        norms = collectInputNorms(engine, *model, set, part(0, 0.1, "calibration"));
        r.calibrationTokens = norms.tokens;
    }
    PerplexityParams pp;
    pp.seqLen = p.seqLen;
    pp.maxTokens = p.evalWindows * p.seqLen;
    const auto evaluate = [&](double from, const std::string &stage) {
        Transformer t(*model);
        const PerplexityResult e = evaluatePerplexity(t, ids, pp, part(from, evalShare, stage));
        r.evalTokens = e.predictedTokens;
        return e.perplexity;
    };
    double at = 0.1;
    r.densePerplexity = evaluate(at, "dense");
    at += evalShare;

    // One unit: prune its matrices in place, evaluate, put the weights back. `scores` (when given) receives each
    // matrix's scores.
    const auto probe = [&](const std::vector<std::string> &names, SensitivityUnit &unit,
                           std::vector<std::vector<float>> *scores) {
        std::vector<std::pair<std::string, std::vector<float>>> originals;
        SparsityPattern pattern;
        pattern.ratio = p.ratio;
        pattern.perRow = p.wanda;
        for (const std::string &name : names) {
            const TensorInfo *t = model->find(name);
            const std::vector<int64_t> shape = t->shape;
            std::vector<float> w = model->loadFloat(*t);
            const std::vector<float> s = scoresOf(*model, *t, w, norms, p.wanda);
            const std::vector<uint8_t> mask = pruneMask(s.data(), shape[0], shape[1], pattern);
            if (scores)
                scores->push_back(s);
            originals.emplace_back(name, w);
            for (size_t i = 0; i < w.size(); ++i)
                if (!mask[i])
                    w[i] = 0.0f;
            unit.parameters += shape[0] * shape[1];
            model->setFloat(name, std::move(w), shape); // `t` may dangle from here on
        }
        unit.perplexity = evaluate(at, "pruning only " + unit.name);
        at += evalShare;
        for (auto &[name, w] : originals) {
            const std::vector<int64_t> shape = model->find(name)->shape;
            model->setFloat(name, std::move(w), shape);
        }
    };
    for (const auto &[layer, names] : blockNames) {
        SensitivityUnit u;
        u.name = "block " + std::to_string(layer);
        u.layer = layer;
        std::vector<std::vector<float>> scores;
        probe(names, u, p.wanda ? &scores : nullptr);
        if (p.wanda) { // OWL: outliers among all of the block's Wanda scores together
            double sum = 0;
            int64_t n = 0;
            for (const auto &m : scores) {
                for (float v : m)
                    sum += v;
                n += int64_t(m.size());
            }
            const double threshold = p.owlM * sum / double(std::max<int64_t>(n, 1));
            int64_t outliers = 0;
            for (const auto &m : scores)
                outliers += std::count_if(m.begin(), m.end(), [&](float v) { return double(v) > threshold; });
            u.outlierRatio = double(outliers) / double(std::max<int64_t>(n, 1));
        }
        r.blocks.push_back(u);
    }
    for (const auto &[role, names] : kindNames) {
        SensitivityUnit u;
        u.name = roleName(role);
        u.kind = role;
        probe(names, u, nullptr);
        r.kinds.push_back(u);
    }
    reportProgress(progress, 1.0, "done");
    r.seconds = steadySeconds() - t0;
    return r;
}

nlohmann::json sensitivityToJson(const SensitivityResult &r) {
    nlohmann::json blocks = nlohmann::json::array(), kinds = nlohmann::json::array();
    for (const SensitivityUnit &u : r.blocks)
        blocks.push_back({{"block", u.layer}, {"perplexity", u.perplexity}, {"outlier_ratio", u.outlierRatio},
                          {"parameters", u.parameters}});
    for (const SensitivityUnit &u : r.kinds)
        kinds.push_back({{"kind", u.name}, {"perplexity", u.perplexity}, {"parameters", u.parameters}});
    return {{"dense_perplexity", r.densePerplexity}, {"eval_tokens", r.evalTokens},
            {"calibration_tokens", r.calibrationTokens}, {"seconds", r.seconds}, {"note", r.note},
            {"blocks", blocks}, {"kinds", kinds}};
}

SensitivityResult sensitivityFromJson(const nlohmann::json &j) {
    try {
        SensitivityResult r;
        r.densePerplexity = j.at("dense_perplexity").get<double>();
        r.evalTokens = j.value("eval_tokens", int64_t(0));
        r.calibrationTokens = j.value("calibration_tokens", int64_t(0));
        r.seconds = j.value("seconds", 0.0);
        r.note = j.value("note", "");
        for (const nlohmann::json &b : j.at("blocks")) {
            SensitivityUnit u;
            u.layer = b.at("block").get<int>();
            u.name = "block " + std::to_string(u.layer);
            u.perplexity = b.at("perplexity").get<double>();
            u.outlierRatio = b.value("outlier_ratio", 0.0);
            u.parameters = b.value("parameters", int64_t(0));
            r.blocks.push_back(u);
        }
        for (const nlohmann::json &k : j.at("kinds")) {
            SensitivityUnit u;
            u.name = k.at("kind").get<std::string>();
            u.perplexity = k.at("perplexity").get<double>();
            u.parameters = k.value("parameters", int64_t(0));
            r.kinds.push_back(u);
        }
        return r;
    } catch (const nlohmann::json::exception &e) {
        throw LatheError(std::string("sensitivity result: ") + e.what());
    }
}

std::vector<double> proposeLayerSparsity(const std::vector<double> &scores, double target, double lambda) {
    require(target >= 0 && target < 1, "layer budget", "the target sparsity must lie in [0, 1)");
    require(lambda >= 0 && std::isfinite(lambda), "layer budget", "lambda must be a number >= 0");
    std::vector<double> out(scores.size(), target);
    if (scores.empty())
        return out;
    const auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());
    if (!(*hi > *lo))
        return out;
    std::vector<double> scaled(scores.size());
    for (size_t i = 0; i < scores.size(); ++i)
        scaled[i] = (scores[i] - *lo) / (*hi - *lo) * 2 * lambda;
    const double mean = std::accumulate(scaled.begin(), scaled.end(), 0.0) / double(scaled.size());
    for (size_t i = 0; i < scores.size(); ++i)
        out[i] = std::clamp(target - (scaled[i] - mean), 0.0, 0.99);
    return out;
}

std::vector<double> outlierScores(const SensitivityResult &r) {
    std::vector<double> out;
    for (const SensitivityUnit &u : r.blocks)
        out.push_back(u.outlierRatio);
    return out;
}

std::vector<double> sensitivityScores(const SensitivityResult &r) {
    std::vector<double> out;
    for (const SensitivityUnit &u : r.blocks)
        out.push_back(std::log(std::max(u.perplexity, 1e-30) / std::max(r.densePerplexity, 1e-30)));
    return out;
}

} // namespace lathe
