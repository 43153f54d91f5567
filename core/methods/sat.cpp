// SAT, sparsity-accelerated training (Ma et al., "Sparsity-Accelerated Training for Large Language Models",
// Findings of ACL 2024, arXiv 2406.01392). Each training step runs only the most important MLP intermediate
// channels and attention key/value groups of every block, forward and backward: the block's linears multiply
// gathered rows and columns and the attention runs on the kept heads only (train/causallm.h, BlockSelection), so
// an omitted channel costs nothing and gets no update that step: AdamW leaves its weights and moments as they are
// (Parameter::activeRows; a plain AdamW over zero gradients would still move them by their momentum and weight
// decay). The omission rate ω follows a ladder: ω0 for the first `hold` of the steps, then down in equal steps to
// 0 so that training ends dense. Evaluations use the whole network. Registered as "sat".
//
// The paper has no public code; these choices are ours. Scores: the L2 norm over the batch of each channel's
// activation at the down projection's input, and of each KV group's attention output, from the PREVIOUS step's
// forward (the current batch's would need the full gate/up products first, which is the work SAT skips); a channel
// not run keeps its last score, and the first step runs dense to score everything. "magnitude" scores instead
// use the weights (|up row| |down column| (|gate row|), and the output projection's columns of a group). With
// grouped-query attention a query head alone saves no K/V work, so whole groups are omitted, at most
// floor(ω KV) of them, and never the last. The ladder's phases and ω0 are parameters (defaults: ω0 = 0.5 for 60%
// of the steps, then 0.4, 0.3, 0.2, 0.1 and 0 in equal parts). Selection: the top scores ("top"); "sample" draws
// the kept channels and groups each step with probability proportional to their scores, an ablation (worse on
// SmolLM2: docs/results.md). Each step reports the share of the MLP activation's energy (squared scores) in the
// omitted channels, averaged over the blocks. The GPU trainer runs the same gathered steps (train/opstrainer.h);
// magnitude scores read the weights' norms where the parameters are (weightNormsBeforeStep: on the GPU trainer,
// the norms alone come back to the host, 3 F + KV floats per block).

#include "methods/trainingmethod.h"

#include "base/error.h"
#include "base/random.h"
#include "model/model.h"
#include "train/causallm.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cmath>

namespace lathe {

namespace {

struct SatSettings {
    double omission = 0.5, hold = 0.6;
    int64_t rungs = 5;
    bool mlp = true, attention = true, magnitude = false, sample = false;
};

SatSettings settingsOf(const MethodParams &p) {
    SatSettings s;
    s.omission = p.get<double>("sat.omission");
    s.hold = p.get<double>("sat.hold");
    s.rungs = p.get<int64_t>("sat.rungs");
    s.mlp = p.get<bool>("sat.mlp");
    s.attention = p.get<bool>("sat.attention");
    s.magnitude = p.get<std::string>("sat.scores") == "magnitude";
    s.sample = p.get<std::string>("sat.selection") == "sample";
    return s;
}

// The ladder: ω0 until hold * total, then `rungs` equal phases at ω0 (rungs - 1) / rungs, ..., 0.
double ladder(const SatSettings &s, int64_t step, int64_t total) {
    const double t = double(step), start = s.hold * double(total);
    if (t < start)
        return s.omission;
    const double phase = std::floor((t - start) / ((double(total) - start) / double(s.rungs)));
    return std::max(0.0, s.omission * (double(s.rungs) - 1.0 - phase) / double(s.rungs));
}

class SatRun : public TrainingMethodRun {
public:
    SatRun(SatSettings s, uint64_t seed) : m_s(s), m_seed(seed) {}

    void prepare(train::CausalLm<float> &lm) override {
        const ModelConfig &c = lm.config();
        m_mlp.assign(size_t(c.numLayers), std::vector<float>(size_t(c.intermediateSize), -1.0f));
        m_groups.assign(size_t(c.numLayers), std::vector<float>(size_t(c.numKvHeads), -1.0f));
    }

    void beforeStep(train::CausalLm<float> &lm, int64_t step, int64_t total) override {
        m_omission = ladder(m_s, step, total);
        lm.clearSelections();
        m_omittedShare = 0;
        if (m_omission <= 0)
            return;
        if (m_s.magnitude)
            magnitudeScores(lm);
        else if (!m_scored)
            return; // the first step runs dense and scores every channel
        const ModelConfig &c = lm.config();
        // One stream per (seed, step, block, kind): a resumed run draws the same channels.
        const auto pick = [&](const std::vector<float> &scores, size_t keep, int layer, uint64_t kind) {
            if (!m_s.sample)
                return largestIndices(scores, keep);
            return weightedSample(scores, keep,
                                  splitmix(splitmix(m_seed ^ splitmix(uint64_t(step))) + uint64_t(layer) * 2 + kind));
        };
        double omittedShare = 0;
        for (int l = 0; l < int(c.numLayers); ++l) {
            train::BlockSelection sel;
            if (m_s.mlp) {
                sel.mlpChannels = pick(m_mlp[size_t(l)],
                                       size_t(std::llround(double(c.intermediateSize) * (1.0 - m_omission))), l, 0);
                double all = 0, kept = 0;
                for (const float v : m_mlp[size_t(l)])
                    all += double(v) * double(v);
                for (const int32_t j : sel.mlpChannels)
                    kept += double(m_mlp[size_t(l)][size_t(j)]) * double(m_mlp[size_t(l)][size_t(j)]);
                omittedShare += all > 0 ? (all - kept) / all / double(c.numLayers) : 0.0;
            }
            const int64_t dropGroups = std::min<int64_t>(int64_t(std::floor(m_omission * double(c.numKvHeads))),
                                                         c.numKvHeads - 1);
            if (m_s.attention && dropGroups > 0)
                sel.kvGroups = pick(m_groups[size_t(l)], size_t(c.numKvHeads - dropGroups), l, 1);
            lm.setSelection(l, std::move(sel));
        }
        m_omittedShare = omittedShare;
    }

    void afterStep(train::CausalLm<float> &lm, int64_t, int64_t) override {
        if (m_s.magnitude)
            return;
        // The last forward's norms replace the scores of the channels it ran.
        for (size_t l = 0; l < m_mlp.size(); ++l) {
            const auto &n = lm.channelNorms(int(l));
            for (size_t j = 0; j < n.mlp.size(); ++j)
                if (n.mlp[j] >= 0)
                    m_mlp[l][j] = n.mlp[j];
            for (size_t g = 0; g < n.kvGroups.size(); ++g)
                if (n.kvGroups[g] >= 0)
                    m_groups[l][g] = n.kvGroups[g];
        }
        m_scored = true;
    }

    // Magnitude scores: the norms of every block's gate and up rows, down columns and output projection's column
    // groups, when the step omits.
    std::vector<train::WeightNormRequest> weightNormsBeforeStep(const train::CausalLm<float> &lm, int64_t step,
                                                                int64_t total) const override {
        std::vector<train::WeightNormRequest> requests;
        if (!m_s.magnitude || ladder(m_s, step, total) <= 0)
            return requests;
        const ModelConfig &c = lm.config();
        const int64_t groupWidth = (c.numHeads / c.numKvHeads) * c.headDim;
        for (const auto &slot : lm.linears())
            if (scoredByMagnitude(slot.role))
                requests.push_back({slot.kind->weightName(), slot.role == TensorRole::MlpDown ? 1
                                                             : slot.role == TensorRole::AttnO ? groupWidth
                                                                                              : 0});
        return requests;
    }
    void setWeightNorms(std::vector<std::vector<float>> norms) override { m_weightNorms = std::move(norms); }

    void beforeEvaluation(train::CausalLm<float> &lm) override { lm.clearSelections(); }
    bool readsChannelNorms() const override { return !m_s.magnitude; }

    nlohmann::json stepReport() const override {
        return {{"omission", m_omission}, {"omitted_activation_share", m_omittedShare}};
    }

    nlohmann::json report(const train::CausalLm<float> &) const override {
        return {{"method", "sat"}, {"scores", m_s.magnitude ? "magnitude" : "activation"},
                {"selection", m_s.sample ? "sample" : "top"},
                {"initial_omission", m_s.omission}, {"hold", m_s.hold}, {"rungs", m_s.rungs},
                {"mlp", m_s.mlp}, {"attention", m_s.attention}};
    }

    nlohmann::json state() const override {
        return {{"mlp", m_mlp}, {"groups", m_groups}, {"scored", m_scored}, {"omission", m_omission}};
    }
    void restore(const nlohmann::json &j) override {
        auto mlp = j.at("mlp").get<std::vector<std::vector<float>>>();
        auto groups = j.at("groups").get<std::vector<std::vector<float>>>();
        require(mlp.size() == m_mlp.size() && groups.size() == m_groups.size(), "sat",
                "the checkpoint's method state does not fit the model", "resume with the job the run started with");
        m_mlp = std::move(mlp);
        m_groups = std::move(groups);
        m_scored = j.at("scored").get<bool>();
        m_omission = j.at("omission").get<double>();
    }

private:
    // The block linears whose weights the magnitude scores read: the MLP's and the attention's output projection.
    static bool scoredByMagnitude(TensorRole r) {
        return r == TensorRole::MlpUp || r == TensorRole::MlpGate || r == TensorRole::MlpDown || r == TensorRole::AttnO;
    }

    // Weight-based scores: per channel |up_j| |down_:,j| (times |gate_j| with a gate), per group the norm of the
    // output projection's columns of its query heads; from the norms handed over for this step, in the order of
    // weightNormsBeforeStep's requests (the linears scoredByMagnitude picks).
    void magnitudeScores(const train::CausalLm<float> &lm) {
        const char *missing =
            "magnitude scores need the weight norms of the step (TrainingMethodRun::weightNormsBeforeStep)";
        for (auto &v : m_mlp)
            std::fill(v.begin(), v.end(), 1.0f);
        size_t i = 0;
        for (const auto &slot : lm.linears()) {
            if (!scoredByMagnitude(slot.role))
                continue;
            require(i < m_weightNorms.size(), "SAT", missing);
            const std::vector<float> &norms = m_weightNorms[i++];
            std::vector<float> &scores = slot.role == TensorRole::AttnO ? m_groups[size_t(slot.layer)]
                                                                        : m_mlp[size_t(slot.layer)];
            require(norms.size() == scores.size(), "SAT", "the weight norms of " + slot.kind->weightName() +
                                                              " do not match its channels");
            for (size_t j = 0; j < norms.size(); ++j)
                scores[j] = slot.role == TensorRole::AttnO ? norms[j] : scores[j] * norms[j];
        }
        require(i == m_weightNorms.size(), "SAT", missing);
        m_weightNorms.clear(); // one step's
    }

    SatSettings m_s;
    uint64_t m_seed;
    std::vector<std::vector<float>> m_mlp, m_groups; // per block: per channel, per KV group
    std::vector<std::vector<float>> m_weightNorms;   // the step's (setWeightNorms), for magnitude scores
    bool m_scored = false;
    double m_omission = 0;
    double m_omittedShare = 0;
};

class SatMethod : public FineTuningMethod {
public:
    SatMethod() {
        m_info.name = "sat";
        m_info.title = "SAT (sparsity-accelerated training)";
        m_info.summary = "trains only the most active MLP channels and KV groups each step, with an omission rate "
                         "that falls to 0 (Ma et al., ACL Findings 2024)";
        m_info.kind = MethodKind::FineTuning;
        // The GPU trainer runs its gathered steps, with the selections set on the host each step and the channel
        // norms handed back after it (readsChannelNorms), or the weight norms before it (weightNormsBeforeStep).
        m_info.trainsOnGpu = true;
        m_info.ratioMeaning = "sat.omission: the fraction of MLP channels (and KV groups) a step skips at first";
        ParamSpec scores = declareChoice("sat.scores", "Scores", {"activation", "magnitude"},
                                         "activation: norms from the previous step's forward; magnitude: from the "
                                         "weights");
        ParamSpec selection =
            declareChoice("sat.selection", "Selection", {"top", "sample"},
                          "top: the highest scores; sample: drawn each step with probability proportional to the score");
        ParamSpec mlp = declareParam("sat.mlp", "MLP channels", ParamType::Bool, true,
                                     "omit MLP intermediate channels");
        ParamSpec attention = declareParam("sat.attention", "KV groups", ParamType::Bool, true,
                                           "omit whole key/value groups of the attention (never all of them)");
        m_info.params = {
            declareParam("sat.omission", "Omission rate", ParamType::Real, 0.5,
                         "fraction of MLP channels skipped per step in the first phase", 0.0, 0.95, "fraction"),
            declareParam("sat.hold", "First phase", ParamType::Real, 0.6,
                         "fraction of the steps at the first omission rate", 0.0, 1.0, "fraction"),
            declareParam("sat.rungs", "Ladder rungs", ParamType::Integer, int64_t(5),
                         "equal phases after the first, the rate falling by omission/rungs each, the last at 0",
                         1, 1000),
            scores,
            selection,
            mlp,
            attention,
        };
    }
    const MethodInfo &info() const override { return m_info; }
    std::string targetsKey() const override { return {}; }
    Schedule schedule(const MethodParams &params, int64_t steps) const override {
        const SatSettings s = settingsOf(params);
        return sampleSchedule("omission", steps, 0, [&](int64_t t) { return ladder(s, t, steps); });
    }
    void checkRun(const Model &model, double, const MethodParams &) const override {
        train::CausalLm<float>::checkSupported(model);
    }
    std::vector<std::string> preview(const Model &model, double, const MethodParams &params) const override {
        const double w = params.get<double>("sat.omission");
        const int64_t kept = std::llround(double(model.config.intermediateSize) * (1 - w));
        return {"first phase: " + std::to_string(kept) + " of " + std::to_string(model.config.intermediateSize) +
                " MLP channels per block"};
    }
    std::unique_ptr<TrainingMethodRun> startTraining(const Model &, const MethodParams &p, uint64_t seed) const override {
        return std::make_unique<SatRun>(settingsOf(p), seed);
    }

private:
    MethodInfo m_info;
};

} // namespace

const CompressionMethod &satMethod() {
    static const SatMethod method;
    return method;
}

} // namespace lathe
