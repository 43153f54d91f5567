// Sparse recovery fine-tuning: the baseline every sparse fine-tuning method is compared with ("magnitude pruning +
// fine-tuning", as in the LoSparse and PST papers' tables), and the way to heal a model pruned elsewhere. Before the
// first step every target linear is pruned by magnitude to `sparsity` of its own weights (the floor(s n) smallest
// |W| of that matrix: the unstructured, per-matrix magnitude pruning of the compression method), and weights that
// are already zero in the loaded model stay pruned whatever the ratio (so a Wanda or magnitude export fine-tunes
// with its own mask at sparsity 0). The mask is then fixed (train/linearkinds.h, MaskedLinear): pruned weights
// get no gradient and stay zero; everything `trainable` matches fine-tunes. The export is the masked model as an
// ordinary Hugging Face folder with its zeros stored, plus the compact sparse archive (run.h5) the pruning runs
// write. Registered as "recovery".
//
// No paper of its own: this is the "magnitude + fine-tuning" row of Li et al. (ICML 2023) Table 1 and of the PST
// paper (IJCAI 2022), with the mask chosen once, at the start (one-shot), not on a schedule.

#include "methods/trainingmethod.h"

#include "base/error.h"
#include "model/model.h"
#include "train/linearkinds.h"

#include <algorithm>

namespace lathe {

namespace {

class RecoveryRun : public TrainingMethodRun {
public:
    RecoveryRun(std::string targets, double sparsity) : m_targets(std::move(targets)), m_sparsity(sparsity) {}

    void prepare(train::CausalLm<float> &lm) override {
        for (const auto &slot : targetLinears(lm, m_targets)) {
            lm.replaceLinear(slot.kind->weightName(), [&](auto &, train::Parameter<float> *w, auto *b) {
                std::vector<uint8_t> mask = train::pruneSmallestMask<float>(w->value.cwiseAbs(), m_sparsity);
                float *values = w->value.data();
                for (size_t i = 0; i < mask.size(); ++i) {
                    mask[i] = mask[i] && values[i] != 0.0f;
                    if (!mask[i])
                        values[i] = 0.0f; // the checkpoint and the export hold the zeros themselves
                }
                auto kind = std::make_unique<train::MaskedLinear<float>>(w, b, std::move(mask));
                m_kinds.push_back(kind.get());
                return kind;
            });
        }
    }

    nlohmann::json report(const train::CausalLm<float> &lm) const override {
        int64_t weights = 0, kept = 0;
        for (const train::MaskedLinear<float> *k : m_kinds) {
            weights += k->outFeatures() * k->inFeatures();
            kept += k->activeWeights();
        }
        return {{"method", "recovery"},
                {"linears", m_kinds.size()},
                {"requested_sparsity", m_sparsity},
                {"sparsity", 1.0 - double(kept) / double(std::max<int64_t>(1, weights))},
                {"target_weights", weights},
                {"kept_weights", kept},
                {"trainable_parameters", lm.parameters().count(true)}};
    }
    std::optional<SparsityPattern> sparseExport() const override {
        SparsityPattern p; // each matrix pruned by its own magnitudes
        p.ratio = m_sparsity;
        return p;
    }
    // No state() of its own: on resume prepare() rebuilds the mask from the loaded model, as at the start, before
    // the checkpoint's weights (zero where pruned) are read back.

private:
    std::string m_targets;
    double m_sparsity;
    std::vector<train::MaskedLinear<float> *> m_kinds;
};

class RecoveryMethod : public FineTuningMethod {
public:
    RecoveryMethod() {
        m_info.name = "recovery";
        m_info.title = "Sparse recovery fine-tuning (magnitude mask, fixed)";
        m_info.summary = "prunes each target linear by magnitude once, keeps the model's own zeros, and fine-tunes "
                         "with that mask fixed: the magnitude + fine-tuning baseline";
        m_info.kind = MethodKind::FineTuning;
        m_info.ratioMeaning = "recovery.sparsity: the fraction of each target matrix's weights pruned before training";
        m_info.trainsOnGpu = true; // a fixed mask over zeroed weights, no per-step work
        m_info.params = {
            targetsParam("recovery.targets", ".*"),
            declareParam("recovery.sparsity", "Sparsity", ParamType::Real, 0.5,
                         "fraction of each target matrix pruned by magnitude before the first step (0: only the "
                         "loaded model's zeros)", 0.0, 0.999, "fraction"),
        };
    }
    const MethodInfo &info() const override { return m_info; }
    std::string targetsKey() const override { return "recovery.targets"; }
    Schedule schedule(const MethodParams &params, int64_t steps) const override {
        const double s = params.get<double>("recovery.sparsity");
        return sampleSchedule("sparsity", steps, 0, [&](int64_t) { return s; });
    }
    std::unique_ptr<TrainingMethodRun> startTraining(const Model &, const MethodParams &params,
                                                     uint64_t) const override {
        return std::make_unique<RecoveryRun>(params.get<std::string>("recovery.targets"),
                                             params.get<double>("recovery.sparsity"));
    }

private:
    MethodInfo m_info;
};

} // namespace

const CompressionMethod &recoveryMethod() {
    static const RecoveryMethod method;
    return method;
}

} // namespace lathe
