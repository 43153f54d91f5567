// LoSparse (Li et al., "LoSparse: Structured Compression of Large Language Models based on Low-Rank and Sparse
// Approximation", ICML 2023, arXiv 2306.11222). Every target linear becomes W = L R + S: L = U_r sqrt(Σ_r),
// R = sqrt(Σ_r) V_r^T from W's SVD with r = ceil(ρ d1 d2 / (d1 + d2)) (ρ: the low-rank part's share of the
// matrix's parameters), S = W - L R (train/linearkinds.h, LowRankSparseLinear). The whole model fine-tunes;
// whole rows of S are pruned by an importance score: after each optimizer step I = |S ⊙ dL/dS|, its row means
// summed over a window of ΔT steps, and every ΔT steps Ī <- β Ī + (1 - β) (window mean); one global threshold over
// the rows of every S keeps the target fraction of S's parameters (kept fractions differ per matrix). The kept
// fraction follows a cubic schedule: 1 until t_i, the final p_f for the last t_f of the steps, cubic in between
// (masks updated every ΔT steps on the ramp and every step in the final phase, as the official code does). The
// export merges W = L R + S into an ordinary Hugging Face folder (model/) and writes the compact form beside it
// (model-compact/: L, R, the kept rows of S and their index, with modelling code transformers loads with
// trust_remote_code). Registered as "losparse". "losparse.low_rank_only" drops S from the start: the SVD
// truncation baseline at the same parameter count (one-shot at step 0, then with L, R and the rest fine-tuned).
//
// Differs from the official code (yxli2123/LoSparse): by default a pruned row stays pruned (a persistent mask: it
// takes no gradient and its values are zeroed), while the official code zeroes the pruned rows' values at each
// masking step and lets them regrow in between ("losparse.mask": "official" does that); the importance keeps only
// row means (the official code keeps the whole |S ⊙ G| matrices and averages rows when masking: the same numbers,
// for out x in fewer values); the official PLATON uncertainty term (beta2) is not used, as the protocol
// specifies; t_i and t_f are fractions of the run instead of multiples of a warm-up unit. On the GPU trainer the
// linears run on the device, and so do the importance's row sums (one float per row of S comes back each step) and
// the zeroing of pruned rows; the running scores and the masking stay here.

#include "methods/trainingmethod.h"

#include "base/error.h"
#include "base/parallel.h"
#include "numeric/blas.h"
#include "model/model.h"
#include "numeric/spectrum.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace lathe {

namespace {

struct LoSparseSettings {
    std::string targets;
    double rankRatio = 0.1, finalKeep = 0.1, initialWarmup = 0.05, finalWarmup = 0.27, beta = 0.85;
    int64_t deltaT = 10;
    bool persistent = true, lowRankOnly = false;
};

LoSparseSettings settingsOf(const MethodParams &p) {
    LoSparseSettings s;
    s.targets = p.get<std::string>("losparse.targets");
    s.rankRatio = p.get<double>("losparse.rank_ratio");
    s.finalKeep = p.get<double>("losparse.final_keep");
    s.initialWarmup = p.get<double>("losparse.initial_warmup");
    s.finalWarmup = p.get<double>("losparse.final_warmup");
    s.beta = p.get<double>("losparse.beta");
    s.deltaT = p.get<int64_t>("losparse.delta_t");
    s.persistent = p.get<std::string>("losparse.mask") == "persistent";
    s.lowRankOnly = p.get<bool>("losparse.low_rank_only");
    return s;
}


// r = ceil(ρ d1 d2 / (d1 + d2)), at least 1.
int rankFor(const LoSparseSettings &s, int64_t out, int64_t in) {
    return int(std::max<int64_t>(1, losparseRank(out, in, s.rankRatio)));
}

// The kept fraction of S after `t` steps of `total`: 1 until t_i, cubic to p_f, p_f for the last t_f (0 throughout
// for the low-rank-only baseline).
double keptFractionAt(const LoSparseSettings &s, int64_t t, int64_t total) {
    if (s.lowRankOnly)
        return 0.0;
    return cubicSchedule(t, total, s.initialWarmup, 1.0 - s.finalWarmup, 1.0, s.finalKeep);
}

class LoSparseRun : public TrainingMethodRun {
public:
    explicit LoSparseRun(LoSparseSettings s) : m_s(std::move(s)) {}

    void prepare(train::CausalLm<float> &lm) override {
        // The SVDs of as many linears as there are threads at once, one single-threaded LAPACK call each (a
        // quarter of a SmolLM2 run's set-up before); a batch at a time, so that only that many factorisations
        // are held.
        const std::vector<train::CausalLm<float>::LinearSlot> slots = targetLinears(lm, m_s.targets);
        const int threads = cpuWorkThreads();
        for (size_t first = 0; first < slots.size(); first += size_t(threads)) {
            const size_t count = std::min(slots.size() - first, size_t(threads));
            std::vector<ThinSvd> svds(count);
            {
                const BlasSplitScope singleThreadedBlas(threads > 1);
                parallelFor(int64_t(count), 1, [&](int64_t i0, int64_t i1) {
                    for (int64_t i = i0; i < i1; ++i) {
                        const std::string &name = slots[first + size_t(i)].kind->weightName();
                        svds[size_t(i)] = thinSvd(lm.parameters().find(name)->value);
                    }
                }, threads);
            }
            for (size_t i = 0; i < count; ++i) {
                const auto &slot = slots[first + i];
                const int rank = rankFor(m_s, slot.kind->outFeatures(), slot.kind->inFeatures());
                lm.replaceLinear(slot.kind->weightName(), [&](auto &params, auto *w, auto *b) {
                    auto kind = std::make_unique<train::LowRankSparseLinear<float>>(params, w, b, rank, svds[i]);
                    m_kinds.push_back(kind.get());
                    return kind;
                });
            }
        }
        if (m_s.lowRankOnly) // the SVD truncation baseline: no S from the start, L R and the rest train
            for (train::LowRankSparseLinear<float> *k : m_kinds) {
                k->setRowMask(std::vector<uint8_t>(size_t(k->outFeatures()), 0));
                k->sparse()->value.setZero();
                lm.parameters().setTrainable(k->sparse()->name, false);
            }
        m_window.resize(m_kinds.size());
        m_score.resize(m_kinds.size());
        for (size_t i = 0; i < m_kinds.size(); ++i) {
            m_window[i].assign(size_t(m_kinds[i]->outFeatures()), 0.0);
            m_score[i].assign(size_t(m_kinds[i]->outFeatures()), 0.0);
        }
    }

    void afterStep(train::CausalLm<float> &, int64_t step, int64_t total) override {
        // Importance with this step's gradient, after the update: row means of |S ⊙ G|, from the sums the GPU
        // trainer handed over (setRowSums), or from the model's S and gradient (a pass over every S each step).
        m_zeroed.clear();
        const std::vector<std::vector<float>> given = std::exchange(m_given, {});
        size_t next = 0; // the trainable S's, in rowSumsAfterStep's order
        std::vector<float> sums;
        for (size_t i = 0; i < m_kinds.size(); ++i) {
            const train::Parameter<float> *s = m_kinds[i]->sparse();
            if (!s->trainable())
                continue;
            const int64_t rows = s->value.rows(), cols = s->value.cols();
            if (given.empty()) {
                sums.resize(size_t(rows));
                train::rowAbsProductSums(s->value.data(), s->grad.data(), rows, cols, sums.data());
            } else {
                require(next < given.size() && int64_t(given[next].size()) == rows, "losparse",
                        "the row sums of " + s->name + " do not fit");
                sums = given[next++];
            }
            for (int64_t r = 0; r < rows; ++r)
                m_window[i][size_t(r)] += double(sums[size_t(r)]) / double(cols);
        }
        ++m_windowSteps;
        const int64_t t = step + 1; // steps done
        if (m_windowSteps == m_s.deltaT) {
            for (size_t i = 0; i < m_kinds.size(); ++i)
                for (size_t r = 0; r < m_score[i].size(); ++r) {
                    m_score[i][r] = m_s.beta * m_score[i][r] + (1 - m_s.beta) * m_window[i][r] / double(m_windowSteps);
                    m_window[i][r] = 0;
                }
            m_windowSteps = 0;
            m_haveScores = true;
        }
        m_keep = keptFractionAt(m_s, t, total);
        if (m_s.lowRankOnly)
            return;
        const bool finalPhase = double(t) > double(total) * (1.0 - m_s.finalWarmup);
        const bool ramp = double(t) > double(total) * m_s.initialWarmup;
        if (m_haveScores && ramp && (finalPhase || t % m_s.deltaT == 0))
            mask(m_keep);
    }

    // afterStep reads the row sums of |S ⊙ G| of every trainable S (the importance) and zeroes the pruned rows'
    // values (takeZeroedRows).
    std::vector<std::string> rowSumsAfterStep() const override {
        std::vector<std::string> names;
        for (const train::LowRankSparseLinear<float> *k : m_kinds)
            if (k->sparse()->trainable())
                names.push_back(k->sparse()->name);
        return names;
    }
    void setRowSums(std::vector<std::vector<float>> sums) override { m_given = std::move(sums); }
    std::vector<std::pair<std::string, std::vector<uint8_t>>> takeZeroedRows() override {
        return std::exchange(m_zeroed, {});
    }

    nlohmann::json stepReport() const override { return {{"kept_fraction_of_s", m_keep}}; }

    nlohmann::json report(const train::CausalLm<float> &lm) const override {
        int64_t dense = 0, lowRank = 0, sparseKept = 0, sparseAll = 0;
        nlohmann::json perMatrix = nlohmann::json::array();
        for (const train::LowRankSparseLinear<float> *k : m_kinds) {
            const int64_t rows = int64_t(std::count(k->rowMask().begin(), k->rowMask().end(), uint8_t(1)));
            const int64_t keptRows = m_s.persistent ? rows : int64_t(keptRowsByValue(*k));
            dense += k->outFeatures() * k->inFeatures();
            lowRank += int64_t(k->rank()) * (k->outFeatures() + k->inFeatures());
            sparseKept += keptRows * k->inFeatures();
            sparseAll += k->outFeatures() * k->inFeatures();
            perMatrix.push_back({{"weight", k->weightName()},
                                 {"rank", k->rank()},
                                 {"kept_rows", keptRows},
                                 {"rows", k->outFeatures()}});
        }
        int64_t other = 0;
        for (const train::Parameter<float> &p : lm.parameters())
            if (!p.extra)
                other += p.value.size();
        return {{"method", "losparse"},
                {"linears", m_kinds.size()},
                {"target_parameters_dense", dense},
                {"low_rank_parameters", lowRank},
                {"sparse_parameters_kept", sparseKept},
                {"low_rank_fraction", double(lowRank) / double(std::max<int64_t>(1, dense))},
                {"sparse_fraction", double(sparseKept) / double(std::max<int64_t>(1, sparseAll))},
                {"budget_fraction", double(lowRank + sparseKept) / double(std::max<int64_t>(1, dense))},
                {"other_parameters", other},
                {"mask", m_s.persistent ? "persistent" : "official"},
                {"matrices", perMatrix}};
    }

    bool lowRankSparseExport() const override { return true; }

    nlohmann::json state() const override {
        nlohmann::json masks = nlohmann::json::array();
        for (const train::LowRankSparseLinear<float> *k : m_kinds)
            masks.push_back(k->rowMask());
        return {{"scores", m_score}, {"window", m_window}, {"window_steps", m_windowSteps},
                {"have_scores", m_haveScores}, {"keep", m_keep}, {"row_masks", masks}};
    }
    void restore(const nlohmann::json &j) override {
        m_score = j.at("scores").get<std::vector<std::vector<double>>>();
        m_window = j.at("window").get<std::vector<std::vector<double>>>();
        m_windowSteps = j.at("window_steps").get<int64_t>();
        m_haveScores = j.at("have_scores").get<bool>();
        m_keep = j.at("keep").get<double>();
        const auto masks = j.at("row_masks").get<std::vector<std::vector<uint8_t>>>();
        require(masks.size() == m_kinds.size() && m_score.size() == m_kinds.size(), "losparse",
                "the checkpoint's method state does not fit the model", "resume with the job the run started with");
        for (size_t i = 0; i < m_kinds.size(); ++i)
            m_kinds[i]->setRowMask(masks[i]);
    }

private:

    static size_t keptRowsByValue(const train::LowRankSparseLinear<float> &k) {
        size_t n = 0;
        for (int64_t r = 0; r < k.sparse()->value.rows(); ++r)
            n += k.sparse()->value.row(r).cwiseAbs().maxCoeff() > 0;
        return n;
    }

    // Keeps the highest-scoring rows of all S until `keep` of S's parameters; zeroes the values of the others.
    void mask(double keep) {
        struct Row {
            double score;
            uint32_t kind, row;
        };
        std::vector<Row> rows;
        int64_t total = 0;
        for (size_t i = 0; i < m_kinds.size(); ++i) {
            total += m_kinds[i]->outFeatures() * m_kinds[i]->inFeatures();
            for (size_t r = 0; r < m_score[i].size(); ++r)
                // A persistent mask never brings a pruned row back: it competes below every live row.
                rows.push_back({m_s.persistent && !m_kinds[i]->rowMask()[r] ? -1.0 : m_score[i][r], uint32_t(i),
                                uint32_t(r)});
        }
        std::stable_sort(rows.begin(), rows.end(), [](const Row &a, const Row &b) { return a.score > b.score; });
        std::vector<std::vector<uint8_t>> keepRows(m_kinds.size());
        for (size_t i = 0; i < m_kinds.size(); ++i)
            keepRows[i].assign(size_t(m_kinds[i]->outFeatures()), 0);
        const double budget = keep * double(total);
        double used = 0;
        for (const Row &r : rows) {
            const double width = double(m_kinds[r.kind]->inFeatures());
            if (r.score < 0 || used + width > budget)
                break;
            used += width;
            keepRows[r.kind][r.row] = 1;
        }
        for (size_t i = 0; i < m_kinds.size(); ++i) {
            train::Parameter<float> *s = m_kinds[i]->sparse();
            for (size_t r = 0; r < keepRows[i].size(); ++r)
                if (!keepRows[i][r])
                    s->value.row(int64_t(r)).setZero();
            m_zeroed.emplace_back(s->name, keepRows[i]);
            if (m_s.persistent)
                m_kinds[i]->setRowMask(keepRows[i]);
        }
    }

    LoSparseSettings m_s;
    std::vector<train::LowRankSparseLinear<float> *> m_kinds;
    std::vector<std::vector<double>> m_window, m_score; // per linear, per row of S
    int64_t m_windowSteps = 0;
    bool m_haveScores = false;
    double m_keep = 1.0;
    std::vector<std::vector<float>> m_given; // this step's row sums from the GPU trainer (setRowSums), or none
    std::vector<std::pair<std::string, std::vector<uint8_t>>> m_zeroed; // by this step's masking (takeZeroedRows)
};

class LoSparseMethod : public FineTuningMethod {
public:
    LoSparseMethod() {
        m_info.name = "losparse";
        m_info.title = "LoSparse (low-rank + sparse fine-tuning)";
        m_info.summary = "splits each linear into an SVD low-rank part and a sparse residual whose rows are pruned "
                         "by gradient importance while the model fine-tunes (Li et al., ICML 2023)";
        m_info.kind = MethodKind::FineTuning;
        m_info.needsGradients = true;
        // The GPU trainer runs its linears, the importance's row sums and the zeroing of pruned rows
        // (rowSumsAfterStep, takeZeroedRows); the running scores and the masking stay on the host.
        m_info.trainsOnGpu = true;
        m_info.ratioMeaning = "losparse.rank_ratio + losparse.final_keep: the low-rank part's and the kept sparse "
                              "part's shares of the target parameters";
        ParamSpec mask = declareChoice("losparse.mask", "Mask", {"persistent", "official"},
                                       "persistent: pruned rows stay pruned; official: zeroed at each masking step, "
                                       "free to regrow");
        m_info.params = {
            targetsParam("losparse.targets", ".*"),
            declareParam("losparse.rank_ratio", "Low-rank share", ParamType::Real, 0.1,
                         "rho: the low-rank part's parameters as a fraction of the matrix's, r = ceil(rho d1 d2 / "
                         "(d1 + d2))", 0.0, 1.0, "fraction"),
            declareParam("losparse.final_keep", "Sparse part kept", ParamType::Real, 0.1,
                         "fraction of S's parameters kept at the end (whole rows)", 0.0, 1.0, "fraction"),
            declareParam("losparse.initial_warmup", "Ramp begins", ParamType::Real, 0.05,
                         "fraction of the steps before pruning starts", 0.0, 1.0, "fraction"),
            declareParam("losparse.final_warmup", "Final phase", ParamType::Real, 0.27,
                         "fraction of the steps, at the end, trained at the final budget", 0.0, 1.0, "fraction"),
            declareParam("losparse.delta_t", "Window", ParamType::Integer, int64_t(10),
                         "steps per importance window and between masking steps on the ramp", 1, 100000, "steps"),
            declareParam("losparse.beta", "Score smoothing", ParamType::Real, 0.85,
                         "moving-average factor of the importance across windows", 0.0, 0.999999),
            mask,
            declareParam("losparse.low_rank_only", "Low-rank only", ParamType::Bool, false,
                         "drop S at the start and fine-tune L R alone: the SVD truncation baseline at "
                         "rank_ratio's parameter count (the step-0 evaluation is the one-shot truncation)"),
        };
    }
    const MethodInfo &info() const override { return m_info; }
    void checkJob(const MethodParams &p, const std::vector<double> &) const override {
        if (p.get<double>("losparse.initial_warmup") + p.get<double>("losparse.final_warmup") > 1.0)
            throw LatheError("losparse.initial_warmup + losparse.final_warmup exceed the run",
                             "their sum must be at most 1");
    }
    std::string targetsKey() const override { return "losparse.targets"; }
    Schedule schedule(const MethodParams &params, int64_t steps) const override {
        const LoSparseSettings s = settingsOf(params);
        // Reported after step t (1-based), as afterStep computes it.
        return sampleSchedule("kept_fraction_of_s", steps, 1, [&](int64_t t) { return keptFractionAt(s, t, steps); });
    }
    ParameterCounts planParameters(const MethodParams &params, const std::vector<PlannedLinear> &targets,
                                   ParameterCounts c) const override {
        const LoSparseSettings s = settingsOf(params);
        for (const PlannedLinear &t : targets) {
            const int64_t added = train::LowRankSparseLinear<float>::addedParameters(t.out, t.in, rankFor(s, t.out, t.in));
            c.total += added;
            // L, R and S are new trainable parameters in W's place; S is frozen when low_rank_only.
            c.trainable += added + (s.lowRankOnly ? 0 : t.out * t.in) - (t.trainable ? t.out * t.in : 0);
        }
        return c;
    }
    std::unique_ptr<TrainingMethodRun> startTraining(const Model &, const MethodParams &params,
                                                     uint64_t) const override {
        return std::make_unique<LoSparseRun>(settingsOf(params));
    }

private:
    MethodInfo m_info;
};

} // namespace

const CompressionMethod &loSparseMethod() {
    static const LoSparseMethod method;
    return method;
}

} // namespace lathe
