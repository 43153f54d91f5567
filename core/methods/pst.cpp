// PST, parameter-efficient sparse training (Li et al., "Parameter-Efficient Sparsity for Large Language Models
// Fine-Tuning", IJCAI 2022, arXiv 2205.11005). Every target linear keeps its weight W frozen and learns a rank-r
// update U V and a mask: the scores |W + U V| + A B + (R 1^T + 1 C^T) combine the data-free magnitude with a
// low-rank, row- and column-structured learned importance, and the mask prunes the smallest floor(s n) scores of
// each matrix (train/linearkinds.h, PstLinear). Gradients reach the scores straight through the mask. Only U, V,
// A, B, R and C train: about 1.5% of SmolLM2's weights at rank 8, and no Adam state for the rest. The sparsity
// follows a cubic schedule from 0 to the final value (flat for the first 10% of steps, cubic until 70%, then
// final). The export is mask ⊙ (W + U V) as an ordinary Hugging Face folder (zeros stored). Registered as "pst".
// The GPU trainer runs the same passes on the device (train/opstrainer.h), the mask selected there too.
//
// Differs from the official code (alibaba/AliceMind S4/PST): the mask is found by selection (a radix select split
// over the threads) instead of a full argsort; U and A come from a counter-based normal generator seeded from the job's seed and the linear's
// name (the same on every machine); it applies to causal LMs with a language-model objective (the official
// examples fine-tune GPT-2 on generation tasks and BERT on GLUE with a task head, which we do not have); the
// schedule's phase boundaries are parameters.

#include "methods/trainingmethod.h"

#include "base/error.h"
#include "model/model.h"
#include "train/linearkinds.h"

namespace lathe {

namespace {

struct PstSettings {
    std::string targets;
    double finalSparsity = 0.9, rampBegin = 0.1, rampEnd = 0.7;
    train::PstOptions kind;
};

PstSettings settingsOf(const MethodParams &p) {
    PstSettings s;
    s.targets = p.get<std::string>("pst.targets");
    s.finalSparsity = p.get<double>("pst.final_sparsity");
    s.rampBegin = p.get<double>("pst.ramp_begin");
    s.rampEnd = p.get<double>("pst.ramp_end");
    s.kind.rank = int(p.get<int64_t>("pst.rank"));
    s.kind.maskRank = int(p.get<int64_t>("pst.mask_rank"));
    s.kind.beta = p.get<double>("pst.beta");
    s.kind.alpha1 = p.get<double>("pst.alpha1");
    s.kind.alpha2 = p.get<double>("pst.alpha2");
    return s;
}

// The sparsity of step `step` (0-based) of `total`.
double sparsityAt(const PstSettings &s, int64_t step, int64_t total) {
    return cubicSchedule(step, total, s.rampBegin, s.rampEnd, 0.0, s.finalSparsity);
}

class PstRun : public TrainingMethodRun {
public:
    PstRun(PstSettings s, uint64_t seed) : m_s(std::move(s)), m_seed(seed) {}

    void prepare(train::CausalLm<float> &lm) override {
        // Only the method's matrices train: the checkpoint's parameters are frozen (no gradient, no Adam state).
        for (train::Parameter<float> &p : lm.parameters())
            if (!p.extra)
                lm.parameters().setTrainable(p.name, false);
        for (const auto &slot : targetLinears(lm, m_s.targets)) {
            lm.replaceLinear(slot.kind->weightName(), [&](auto &params, auto *w, auto *b) {
                auto kind = std::make_unique<train::PstLinear<float>>(params, w, b, m_s.kind, m_seed);
                m_kinds.push_back(kind.get());
                return kind;
            });
        }
    }
    void beforeStep(train::CausalLm<float> &, int64_t step, int64_t total) override {
        m_sparsity = sparsityAt(m_s, step, total);
        for (train::PstLinear<float> *k : m_kinds)
            k->setSparsity(m_sparsity);
    }
    nlohmann::json stepReport() const override { return {{"sparsity", m_sparsity}}; }
    nlohmann::json report(const train::CausalLm<float> &lm) const override {
        int64_t weights = 0, kept = 0;
        for (const train::PstLinear<float> *k : m_kinds) {
            weights += k->outFeatures() * k->inFeatures();
            kept += k->activeWeights();
        }
        const int64_t trainable = lm.parameters().count(true);
        int64_t dense = 0;
        for (const train::Parameter<float> &p : lm.parameters())
            if (!p.extra)
                dense += p.value.size();
        return {{"method", "pst"},
                {"linears", m_kinds.size()},
                {"sparsity", m_sparsity},
                {"target_weights", weights},
                {"kept_weights", kept},
                {"trainable_parameters", trainable},
                {"trainable_fraction_of_model", double(trainable) / double(std::max<int64_t>(1, dense))},
                {"optimizer_state_bytes", 2 * 4 * trainable},
                {"full_fine_tuning_optimizer_state_bytes", 2 * 4 * dense}};
    }
    std::optional<SparsityPattern> sparseExport() const override {
        SparsityPattern p; // each matrix pruned to the same fraction by its own scores
        p.ratio = m_sparsity;
        return p;
    }
    nlohmann::json state() const override { return {{"sparsity", m_sparsity}}; }
    void restore(const nlohmann::json &j) override {
        m_sparsity = j.value("sparsity", 0.0);
        for (train::PstLinear<float> *k : m_kinds)
            k->setSparsity(m_sparsity);
    }

private:
    PstSettings m_s;
    uint64_t m_seed;
    std::vector<train::PstLinear<float> *> m_kinds;
    double m_sparsity = 0;
};

class PstMethod : public FineTuningMethod {
public:
    PstMethod() {
        m_info.name = "pst";
        m_info.title = "PST (parameter-efficient sparse fine-tuning)";
        m_info.summary = "learns a low-rank weight update and low-rank + structured importance scores; only those "
                         "train (Li et al., IJCAI 2022)";
        m_info.kind = MethodKind::FineTuning;
        m_info.needsGradients = true;
        m_info.trainsOnGpu = true; // the GPU trainer forms W~, the scores and the mask on the device every step
        m_info.ratioMeaning = "pst.final_sparsity: the fraction of each target matrix's weights pruned at the end";
        m_info.params = {
            targetsParam("pst.targets", ".*"),
            declareParam("pst.final_sparsity", "Final sparsity", ParamType::Real, 0.9,
                         "fraction of each target matrix pruned from the end of the ramp on", 0.0, 0.999, "fraction"),
            declareParam("pst.ramp_begin", "Ramp begins", ParamType::Real, 0.1,
                         "fraction of the steps before the sparsity starts to rise", 0.0, 1.0, "fraction"),
            declareParam("pst.ramp_end", "Ramp ends", ParamType::Real, 0.7,
                         "fraction of the steps at which the final sparsity is reached (cubic in between)",
                         0.0, 1.0, "fraction"),
            declareParam("pst.rank", "Weight rank", ParamType::Integer, int64_t(8), "rank of the update U V", 1, 4096),
            declareParam("pst.mask_rank", "Score rank", ParamType::Integer, int64_t(8),
                         "rank of the learned importance A B", 1, 4096),
            declareParam("pst.beta", "Update scale", ParamType::Real, 1.0, "W~ = W + beta U V", 0.0, 1e6),
            declareParam("pst.alpha1", "Low-rank score scale", ParamType::Real, 1.0,
                         "weight of A B in the scores (0 with alpha2 = 0: magnitude of W~ only)", 0.0, 1e6),
            declareParam("pst.alpha2", "Structured score scale", ParamType::Real, 1.0,
                         "weight of the row and column scores R 1^T + 1 C^T", 0.0, 1e6),
        };
    }
    const MethodInfo &info() const override { return m_info; }
    void checkJob(const MethodParams &p, const std::vector<double> &) const override {
        if (p.get<double>("pst.ramp_end") < p.get<double>("pst.ramp_begin"))
            throw LatheError("pst.ramp_end is before pst.ramp_begin", "the ramp runs from ramp_begin to ramp_end");
    }
    std::string targetsKey() const override { return "pst.targets"; }
    Schedule schedule(const MethodParams &params, int64_t steps) const override {
        const PstSettings s = settingsOf(params);
        return sampleSchedule("sparsity", steps, 0, [&](int64_t t) { return sparsityAt(s, t, steps); });
    }
    ParameterCounts planParameters(const MethodParams &params, const std::vector<PlannedLinear> &targets,
                                   ParameterCounts c) const override {
        const PstSettings s = settingsOf(params);
        c.trainable = 0; // the checkpoint's parameters freeze; only U, V, A, B, R, C train
        for (const PlannedLinear &t : targets) {
            const int64_t added = train::PstLinear<float>::addedParameters(t.out, t.in, s.kind);
            c.total += added;
            c.trainable += added;
        }
        return c;
    }
    std::unique_ptr<TrainingMethodRun> startTraining(const Model &, const MethodParams &params,
                                                     uint64_t seed) const override {
        return std::make_unique<PstRun>(settingsOf(params), seed);
    }

private:
    MethodInfo m_info;
};

} // namespace

const CompressionMethod &pstMethod() {
    static const PstMethod method;
    return method;
}

} // namespace lathe
