#include "run/trainingrun.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/outputfiles.h"
#include "base/unicodetext.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "export/ggufwriter.h"
#include "export/hfwriter.h"
#include "export/losparseexport.h"
#include "export/sparsearchive.h"
#include "io/modelloader.h"
#include "io/safetensorsfile.h"
#include "io/tokenizerloader.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "run/runfolder.h"
#include "run/speckeys.h"
#include "tokenizers/tokenizer.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/schedule.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

namespace {

// The model and the tokenized texts: what a run needs before it writes anything.
struct Prepared {
    std::unique_ptr<Model> model;
    std::vector<int32_t> train, eval;
    train::MlmMasking masking; // BERT's masked-LM objective: the tokenizer's [MASK] and specials
};

Prepared prepare(const TrainingSpec &spec) {
    validateTrainingSpec(spec);
    Prepared p;
    p.model = openModel(spec.model);
    if (ggufExportDType(spec.gguf) && spec.exportModel)
        if (const std::optional<std::string> why = ggufExportBlocker(*p.model))
            throw LatheError("output.gguf: this model cannot be written as GGUF: " + *why,
                             "leave out output.gguf; the Hugging Face folder is still written");
    if (spec.seqLen > p.model->config.maxPositions)
        throw LatheError("data.seq_len " + std::to_string(spec.seqLen) + " is above the model's " +
                             std::to_string(p.model->config.maxPositions) + " positions",
                         "use data.seq_len <= " + std::to_string(p.model->config.maxPositions));
    auto tokenizer = spec.tokenizer.empty() ? loadTokenizer(*p.model) : loadTokenizerFile(spec.tokenizer);
    p.masking = train::mlmMaskingFor(p.model->config, *tokenizer); // LatheError: a BERT tokenizer without [MASK]
    p.train = tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.trainText)));
    if (int64_t(p.train.size()) < spec.seqLen)
        throw LatheError(spec.trainText + ": " + std::to_string(p.train.size()) + " tokens, fewer than one window of " +
                             std::to_string(spec.seqLen),
                         "use a longer text or a shorter data.seq_len");
    if (spec.holdout > 0) {
        const size_t keep = p.train.size() - size_t(double(p.train.size()) * spec.holdout);
        p.eval.assign(p.train.begin() + std::ptrdiff_t(keep), p.train.end());
        p.train.resize(keep);
        if (int64_t(p.train.size()) < spec.seqLen || int64_t(p.eval.size()) < spec.seqLen)
            throw LatheError("data.holdout " + std::to_string(spec.holdout) + " leaves less than one window on a side",
                             "use a longer text or a holdout nearer 0.1");
    } else if (!spec.evalText.empty()) {
        p.eval = tokenizer->encodeForModel(joinDatasetRows(readTextFile(spec.evalText)));
        if (int64_t(p.eval.size()) < spec.seqLen)
            throw LatheError(spec.evalText + ": fewer tokens than one evaluation window of " + std::to_string(spec.seqLen));
    }
    return p;
}

[[noreturn]] void throwNothingTrainable(const std::string &pattern) {
    throw LatheError("trainable: '" + pattern + "' matches none of the model's parameters",
                     "names look like model.layers.0.mlp.down_proj.weight");
}

// Marks the parameters the `trainable` regex does not match as frozen.
void applyTrainable(train::ParameterSet<float> &params, const std::string &pattern) {
    const unicode::NamePattern re(pattern);
    int64_t kept = 0;
    for (train::Parameter<float> &p : params.all()) {
        const bool on = re.search(p.name);
        params.setTrainable(p.name, on);
        kept += on;
    }
    if (!kept)
        throwNothingTrainable(pattern);
}

// The order in which training windows are read: a permutation of the windows per epoch from the seed, and where
// the run is in it. The state (epoch, cursor) is all a checkpoint needs to continue the same sequence.
class DataOrder {
public:
    DataOrder(int64_t windows, uint64_t seed) : m_windows(windows), m_seed(seed) { shuffle(); }
    int64_t next() {
        if (m_cursor == m_windows) {
            ++m_epoch;
            m_cursor = 0;
            shuffle();
        }
        return m_order[size_t(m_cursor++)];
    }
    int64_t epoch() const { return m_epoch; }
    int64_t cursor() const { return m_cursor; }
    void restore(int64_t epoch, int64_t cursor) {
        m_epoch = epoch;
        m_cursor = cursor;
        shuffle();
    }

private:
    void shuffle() {
        m_order.resize(size_t(m_windows));
        std::iota(m_order.begin(), m_order.end(), int64_t(0));
        std::mt19937_64 rng(m_seed + uint64_t(m_epoch) * 0x9E3779B97F4A7C15ull);
        for (int64_t i = m_windows - 1; i > 0; --i) // Fisher-Yates with our own draws: the same on every platform
            std::swap(m_order[size_t(i)], m_order[size_t(rng() % uint64_t(i + 1))]);
    }
    int64_t m_windows;
    uint64_t m_seed;
    int64_t m_epoch = 0, m_cursor = 0;
    std::vector<int64_t> m_order;
};

json stepJson(const TrainingStep &s) {
    json j = {{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.gradNorm},
              {"tokens_per_s", s.tokensPerSecond}};
    if (!s.method.empty())
        j["method"] = s.method;
    return j;
}
json evalJson(const TrainingEval &e) { return {{"step", e.step}, {"eval_loss", e.loss}, {"eval_ppl", e.perplexity}}; }

// The seed of the masks of micro-batch `micro` of step `step` (masked LM): a function of the run's seed and the
// position in the run alone, so that a resumed run masks as the uninterrupted one did.
uint64_t stepMaskSeed(uint64_t seed, int64_t step, int64_t micro) {
    return seed * 0x9E3779B97F4A7C15ull + uint64_t(step) * 0x100000001B3ull + uint64_t(micro);
}

// The method's beforeStep, with the weight norms it reads computed where the parameters are (on the GPU trainer
// when the steps run there) and handed over first.
void beforeStep(TrainingMethodRun &method, train::CausalLm<float> &lm, train::DeviceTrainer *trainer, int64_t step,
                int64_t total) {
    if (const auto requests = method.weightNormsBeforeStep(lm, step, total); !requests.empty())
        method.setWeightNorms(trainer ? trainer->weightNorms(requests) : train::weightNorms(lm.parameters(), requests));
    method.beforeStep(lm, step, total);
}

// The method's afterStep; on the GPU trainer with what it reads computed there and handed over first (the row sums
// it asks for, the channel norms of the step's forward), and the rows it zeroed zeroed there after it.
void afterStep(TrainingMethodRun &method, train::CausalLm<float> &lm, train::DeviceTrainer *trainer, int64_t step,
               int64_t total) {
    if (trainer) {
        if (const std::vector<std::string> names = method.rowSumsAfterStep(); !names.empty())
            method.setRowSums(trainer->rowAbsProductSums(names));
        if (method.readsChannelNorms())
            trainer->downloadChannelNorms(lm);
    }
    method.afterStep(lm, step, total);
    const auto zeroed = method.takeZeroedRows(); // taken on the CPU too: the method keeps one step's
    if (trainer)
        for (const auto &[name, keep] : zeroed)
            trainer->zeroRows(name, keep);
}

// Mean loss of the model on the first `windows` windows of `ids` (the perplexity protocol for decoders; for the
// masked LM the same masks at every evaluation, window w masked with seed w, so that evaluations compare).
// `trainer`: the GPU trainer when the steps run there (its forward pass, on its parameters).

TrainingEval evaluate(train::CausalLm<float> &lm, train::DeviceTrainer *trainer, const std::vector<int32_t> &ids,
                      int64_t seq, int64_t windows, int64_t step) {
    const int64_t n = std::min<int64_t>(windows, int64_t(ids.size()) / seq);
    double loss = 0;
    for (int64_t w = 0; w < n; ++w) {
        TokenBatch b;
        b.seq = seq;
        b.tokens.assign(ids.begin() + w * seq, ids.begin() + (w + 1) * seq);
        loss += double(trainer ? trainer->loss(b, uint64_t(w)) : lm.forward(b, uint64_t(w))) / double(n);
    }
    return {step, loss, std::exp(loss)};
}

// The GPU trainer for the spec's device, or null for the CPU: "cuda[:N]" creates it or throws the reason; "auto"
// creates it where trainingGpu says the steps go there, else `log` receives why the CPU trains. It keeps the
// channel norms when the method reads them.
std::unique_ptr<train::DeviceTrainer> deviceTrainer(const TrainingSpec &spec, const train::CausalLm<float> &lm,
                                                    const train::AdamW<float> &adam, const TrainingMethodRun *method,
                                                    const std::function<void(const std::string &)> &log) {
    const DeviceChoice choice = DeviceChoice::parse(spec.device);
    if (choice.preference == DevicePreference::Cpu)
        return nullptr;
    std::string why;
    if (!trainingGpu(spec, &why)) {
        if (choice.preference == DevicePreference::Cuda)
            throw LatheError("device " + spec.device + ": " + why, "train on the CPU (device cpu)");
        log("device auto: training on the CPU (" + why + ")");
        return nullptr;
    }
    try {
        const std::unique_ptr<ComputeBackend> backend = createBackend(choice);
        auto *service = deviceService<train::DeviceTrainingService>(*backend);
        if (!service)
            throw LatheError(backend->device().label() + " does not train", "train on the CPU (device cpu)");
        std::unique_ptr<train::DeviceTrainer> trainer = service->create(lm, adam, parsePrecision(spec.precision));
        trainer->keepChannelNorms(method && method->readsChannelNorms());
        log("training on the GPU: " + trainer->describe());
        return trainer;
    } catch (const LatheError &e) {
        if (choice.preference == DevicePreference::Cuda)
            throw;
        log(std::string("device auto: training on the CPU (") + e.what() + ")");
        return nullptr;
    }
}

// The checkpoint: checkpoint/state.safetensors (every parameter's value, the AdamW moments of the trainable ones)
// and checkpoint/state.json (step, AdamW steps, data position, the evaluations and steps so far), built in a
// temporary folder and swapped in, so that a kill leaves either the previous checkpoint or the new one.
void writeCheckpoint(const fs::path &dir, train::CausalLm<float> &lm, train::AdamW<float> &adam, const DataOrder &order,
                     const TrainingResult &result, int64_t step, const TrainingMethodRun *method) {
    std::vector<NamedFloats> tensors;
    auto &params = lm.parameters().all();
    auto &m1 = adam.firstMoments();
    auto &m2 = adam.secondMoments();
    auto shape = [](const train::Matrix<float> &m) { return std::vector<int64_t>{m.rows(), m.cols()}; };
    for (size_t i = 0; i < params.size(); ++i) {
        tensors.push_back({"value." + params[i].name, shape(params[i].value), params[i].value.data()});
        if (i < m1.size() && m1[i].size()) {
            tensors.push_back({"adam_m." + params[i].name, shape(m1[i]), m1[i].data()});
            tensors.push_back({"adam_v." + params[i].name, shape(m2[i]), m2[i].data()});
        }
    }
    json steps = json::array(), evals = json::array();
    for (const TrainingStep &s : result.steps)
        steps.push_back(stepJson(s));
    for (const TrainingEval &e : result.evals)
        evals.push_back(evalJson(e));
    const json state = {{"step", step},   {"adam_steps", adam.steps()}, {"epoch", order.epoch()},
                        {"cursor", order.cursor()}, {"steps", steps}, {"evals", evals},
                        {"method", method ? method->state() : json::object()}};
    const fs::path dest = dir / "checkpoint", tmp = temporarySibling(dest, "lathe-tmp");
    fs::create_directories(tmp);
    try {
        writeFloatSafetensors((tmp / "state.safetensors").string(), tensors);
        writeFileAtomic(tmp / "state.json", state.dump() + "\n");
        installFolder(tmp, dest);
    } catch (...) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw;
    }
}

// Restores what writeCheckpoint saved; returns the step it was taken at.
int64_t readCheckpoint(const fs::path &dir, train::CausalLm<float> &lm, train::AdamW<float> &adam, DataOrder &order,
                       TrainingResult &result, TrainingMethodRun *method) {
    const fs::path cp = dir / "checkpoint";
    json state;
    try {
        state = json::parse(readTextFile((cp / "state.json").string()));
    } catch (const std::exception &e) {
        throw LatheError((cp / "state.json").string() + ": " + e.what(),
                         "the run has no usable checkpoint: start afresh with output.overwrite");
    }
    const std::string path = (cp / "state.safetensors").string();
    const SafetensorsFile file(path, "the checkpoint is damaged");
    auto tensor = [&](const std::string &name, train::Matrix<float> &into, bool required) {
        const SafetensorsEntry *e = file.find(name);
        require(e || !required, path, "no tensor " + name, "the checkpoint is damaged");
        if (!e)
            return;
        require(e->shape.size() == 2, path, name + " has the wrong type or shape", "the checkpoint is damaged");
        into.resize(e->shape[0], e->shape[1]);
        std::memcpy(into.data(), file.bytes(name, DType::F32, e->shape), size_t(into.size()) * 4);
    };
    auto &params = lm.parameters().all();
    adam.firstMoments().assign(params.size(), {});
    adam.secondMoments().assign(params.size(), {});
    for (size_t i = 0; i < params.size(); ++i) {
        train::Matrix<float> v;
        tensor("value." + params[i].name, v, true);
        require(v.rows() == params[i].value.rows() && v.cols() == params[i].value.cols(), path,
                params[i].name + " has another shape than the model's", "resume with the model the run started from");
        params[i].value = std::move(v);
        if (params[i].trainable()) {
            tensor("adam_m." + params[i].name, adam.firstMoments()[i], false);
            tensor("adam_v." + params[i].name, adam.secondMoments()[i], false);
        }
    }
    try {
        adam.setSteps(state.at("adam_steps").get<int64_t>());
        order.restore(state.at("epoch").get<int64_t>(), state.at("cursor").get<int64_t>());
        result.steps.clear();
        for (const json &s : state.at("steps"))
            result.steps.push_back({s.at("step").get<int64_t>(), s.at("loss").get<double>(), s.at("lr").get<double>(),
                                    s.at("grad_norm").get<double>(), s.at("tokens_per_s").get<double>(),
                                    s.value("method", json::object())});
        if (method)
            method->restore(state.at("method"));
        result.evals.clear();
        for (const json &e : state.at("evals"))
            result.evals.push_back({e.at("step").get<int64_t>(), e.at("eval_loss").get<double>(),
                                    e.at("eval_ppl").get<double>()});
        return state.at("step").get<int64_t>();
    } catch (const json::exception &e) {
        throw LatheError((cp / "state.json").string() + ": " + e.what(), "the checkpoint is damaged");
    }
}

} // namespace

json TrainingPlan::toJson() const {
    return {{"objective", objective},
            {"parameters", parameters},         {"trainable_parameters", trainableParameters},
            {"weight_bytes", weightBytes},      {"gradient_bytes", gradientBytes},
            {"optimizer_bytes", optimizerBytes}, {"activation_bytes", activationBytes},
            {"total_bytes", totalBytes()},      {"train_tokens", trainTokens},
            {"train_windows", trainWindows},    {"eval_windows", evalWindows}};
}

namespace {

TrainingPlan planFor(const TrainingSpec &spec, const Model &model, ParameterCounts counts, const Prepared &p) {
    TrainingPlan plan;
    plan.objective = train::objectiveName(model.config, p.masking);
    plan.parameters = counts.total;
    plan.trainableParameters = counts.trainable;
    plan.weightBytes = uint64_t(plan.parameters) * 4;
    plan.gradientBytes = uint64_t(plan.trainableParameters) * 4;
    plan.optimizerBytes = 2 * plan.gradientBytes;
    plan.activationBytes =
        train::CausalLm<float>::activationBytes(model.config, spec.batch, spec.seqLen, 4096, spec.recompute);
    plan.trainTokens = int64_t(p.train.size());
    plan.trainWindows = int64_t(p.train.size()) / spec.seqLen;
    plan.evalWindows = std::min<int64_t>(spec.evalWindows, int64_t(p.eval.size()) / spec.seqLen);
    return plan;
}

// The model for training: every parameter, the `trainable` ones marked, and the method's linears swapped in.
std::unique_ptr<TrainingMethodRun> prepareModel(const TrainingSpec &spec, const Model &model, train::CausalLm<float> &lm) {
    applyTrainable(lm.parameters(), spec.trainable);
    lm.setRecompute(spec.recompute);
    if (!spec.method)
        return nullptr;
    spec.method->checkRun(model, 0.0, spec.methodParams);
    std::unique_ptr<TrainingMethodRun> run = spec.method->startTraining(model, spec.methodParams, spec.seed);
    run->prepare(lm);
    return run;
}

// The plan from the model's tensor table and the method's arithmetic (see planTraining).
TrainingPlan planFromTable(const TrainingSpec &spec, const Prepared &p) {
    train::CausalLm<float>::checkSupported(*p.model);
    const unicode::NamePattern trainable(spec.trainable);
    ParameterCounts counts;
    for (const TensorInfo &t : p.model->tensors())
        if (t.role != TensorRole::Buffer) {
            counts.total += t.numel();
            counts.trainable += trainable.search(t.name) ? t.numel() : 0;
        }
    if (!counts.trainable)
        throwNothingTrainable(spec.trainable);
    if (spec.method) {
        spec.method->checkRun(*p.model, 0.0, spec.methodParams);
        const std::string key = spec.method->targetsKey();
        counts = spec.method->planParameters(
            spec.methodParams,
            key.empty() ? std::vector<PlannedLinear>{}
                        : plannedTargets(*p.model, spec.methodParams.get<std::string>(key), spec.trainable),
            counts);
    }
    return planFor(spec, *p.model, counts, p);
}

} // namespace

// From the model's tensor table and the method's arithmetic: no weight is loaded and no method initialisation (an
// SVD per linear for LoSparse) runs, so a plan for a model that would not fit in memory is still made.
// tst_finetune checks it against the counts of the model a run builds, for every method.
TrainingPlan planTraining(const TrainingSpec &spec) { return planFromTable(spec, prepare(spec)); }

TrainingPreflight preflightTraining(const TrainingSpec &spec, const std::atomic<bool> *cancel) {
    const auto checkCancel = [cancel] {
        if (cancel && cancel->load())
            throw CancelledError();
    };
    Prepared prepared = prepare(spec);
    TrainingPreflight pf;
    pf.plan = planFromTable(spec, prepared);
    const Model &model = *prepared.model;
    TrainingProbe &probe = pf.probe;
    probe.seqLen = std::min<int64_t>(spec.seqLen, 256);
    probe.batch = std::clamp<int64_t>(512 / probe.seqLen, 1, spec.batch);
    checkCancel();
    double t = steadySeconds();
    train::CausalLm<float> lm(model);
    lm.setMasking(prepared.masking);
    std::unique_ptr<TrainingMethodRun> method = prepareModel(spec, model, lm);
    probe.setupSeconds = steadySeconds() - t;
    train::AdamW<float> adam(train::AdamWOptions{});
    const TokenBatch batch = TokenBatch::random(model.config.vocabSize, probe.batch, probe.seqLen, 7);
    // Where the run's steps go, the probe's go too: on the GPU trainer, its step is timed instead.
    const std::unique_ptr<train::DeviceTrainer> trainer =
        deviceTrainer(spec, lm, adam, method.get(), [](const std::string &) {});
    if (trainer)
        probe.device = trainer->describe();
    // Step 0 is not timed (allocations, thread start-up). Then steps are timed, part by part, until 1 s of them or
    // five; the median one is kept (a small model's step is short enough for a busy machine to disturb any one).
    struct Timed {
        double total, forward, backward, fixed;
    };
    std::vector<Timed> steps;
    double timed = 0;
    // The steps are those of the middle of the run: a method's per-step work follows its schedule (PST's and
    // LoSparse's masks only from the end of their warm-up, SAT's omission from its ladder).
    const int64_t middle = spec.steps / 2;
    for (int step = 0; step < 6 && (step < 2 || timed < 1.0); ++step) {
        checkCancel();
        const double t0 = steadySeconds();
        if (trainer) { // forward alone, then forward and backward: the backward is their difference (at least 0)
            const int64_t at = std::min<int64_t>(middle + step, spec.steps - 1);
            if (method)
                beforeStep(*method, lm, trainer.get(), at, spec.steps);
            trainer->zeroGradients();
            const double t1 = steadySeconds();
            (void)trainer->loss(batch, uint64_t(step));
            const double t2 = steadySeconds();
            (void)trainer->forwardBackward(batch, 1.0f, uint64_t(step));
            const double t3 = steadySeconds();
            trainer->step(spec.lr, spec.clip);
            if (method) // with its copies of what it touches: part of the step's fixed cost
                afterStep(*method, lm, trainer.get(), at, spec.steps);
            const double t4 = steadySeconds();
            const double forward = t2 - t1, backward = std::max(0.0, (t3 - t2) - forward);
            if (step > 0) {
                steps.push_back({forward + backward + (t1 - t0) + (t4 - t3), forward, backward, (t1 - t0) + (t4 - t3)});
                timed += t4 - t0;
            }
            continue;
        }
        if (method)
            beforeStep(*method, lm, nullptr, std::min<int64_t>(middle + step, spec.steps - 1), spec.steps);
        lm.parameters().zeroGrad();
        const double t1 = steadySeconds();
        (void)lm.forward(batch, uint64_t(step));
        const double t2 = steadySeconds();
        lm.backward(1.0f);
        const double t3 = steadySeconds();
        train::clipGradNorm(lm.parameters(), spec.clip);
        adam.step(lm.parameters(), float(spec.lr));
        if (method)
            method->afterStep(lm, std::min<int64_t>(middle + step, spec.steps - 1), spec.steps);
        const double t4 = steadySeconds();
        if (step == 0)
            continue;
        steps.push_back({t4 - t0, t2 - t1, t3 - t2, (t1 - t0) + (t4 - t3)});
        timed += t4 - t0;
    }
    std::sort(steps.begin(), steps.end(), [](const Timed &a, const Timed &b) { return a.total < b.total; });
    const Timed &median = steps[steps.size() / 2];
    if (trainer) // after the steps: a gathered step's buffers exist from its first selection on
        probe.deviceLinearKindBytes = trainer->linearKindBytes();
    probe.forwardSeconds = median.forward;
    probe.backwardSeconds = median.backward;
    probe.fixedSeconds = median.fixed;
    pf.estimate = estimateTrainingRun(spec, model, pf.plan, probe);
    return pf;
}

json TrainingResult::toJson() const {
    json steps = json::array(), ev = json::array();
    for (const TrainingStep &s : this->steps)
        steps.push_back(stepJson(s));
    for (const TrainingEval &e : evals)
        ev.push_back(evalJson(e));
    return {{"status", status},         {"error", error},     {"plan", plan.toJson()},   {"steps", steps},
            {"evals", ev},              {"export_dir", exportDir}, {"gguf_file", ggufFile}, {"seconds", seconds},
            {"method", method},         {"device", device}};
}

TrainingResult runTraining(const TrainingSpec &spec, const ProgressCallback &progress,
                           const TrainingObserver &observer) {
    const double t0 = steadySeconds();
    Prepared prepared = prepare(spec);
    // Memory and disk before any weight is loaded or anything created (the time needs a probe: --estimate).
    const RunEstimate fit = estimateTrainingRun(spec, *prepared.model, planFromTable(spec, prepared), TrainingProbe{});
    if (!fit.refusal.empty())
        throw LatheError("this run does not fit: " + fit.refusal, "lathe-cli train JOB.json --estimate shows the plan");
    train::CausalLm<float> lm(*prepared.model);
    lm.setMasking(prepared.masking);
    std::unique_ptr<TrainingMethodRun> method = prepareModel(spec, *prepared.model, lm);
    const fs::path dir(spec.outputDir);
    const bool resuming = spec.resume && fs::exists(dir / "checkpoint" / "state.json");
    if (resuming) {
        // Only the same job continues: its spec.json must say what this spec says (overwrite, and where it runs,
        // aside: a checkpoint holds the values and moments whichever device took the steps).
        json before;
        try {
            before = TrainingSpec::fromJson(json::parse(readTextFile((dir / "spec.json").string()))).toJson();
        } catch (const std::exception &e) {
            throw LatheError((dir / "spec.json").string() + ": " + e.what(), "the run folder is damaged: start afresh");
        }
        json now = spec.toJson();
        before["output"].erase("overwrite");
        now["output"].erase("overwrite");
        for (const char *key : {"device", "precision"}) {
            before.erase(key);
            now.erase(key);
        }
        if (before != now)
            throw LatheError("--resume: the run folder " + spec.outputDir + " holds another training job",
                             "resume with the job spec the run was started with (lathe-cli train --resume DIR reads it)");
    }

    // The run folder: replaced only when allowed (validateTrainingSpec checked its marker), kept when resuming.
    // Metrics after the checkpoint were of steps that will run again: a resumed run's log restarts from it.
    if (resuming) {
        std::error_code ec;
        fs::remove(dir / "metrics.jsonl", ec);
    }
    RunFolder files(spec.outputDir, OutputKind::TrainingRun, resuming, spec.toJson(), "metrics.jsonl");

    TrainingResult result;
    result.plan = planFor(spec, *prepared.model, {lm.parameters().count(false), lm.parameters().count(true)}, prepared);
    if (observer.plan)
        observer.plan(result.plan);
    train::AdamWOptions ao;
    ao.beta1 = spec.beta1;
    ao.beta2 = spec.beta2;
    ao.eps = spec.eps;
    ao.weightDecay = spec.weightDecay;
    train::AdamW<float> adam(ao);
    DataOrder order(result.plan.trainWindows, spec.seed);
    train::LrSchedule schedule;
    schedule.peak = spec.lr;
    schedule.shape = train::parseLrShape(spec.schedule);
    schedule.warmup = spec.warmup;
    schedule.total = spec.steps;
    schedule.minRatio = spec.minLrRatio;

    int64_t step = 0;
    try {
        files.log("job: train " + spec.model + " -> " + spec.outputDir);
        files.log("memory plan: " + result.plan.toJson().dump());
        if (resuming) {
            step = readCheckpoint(dir, lm, adam, order, result, method.get());
            files.log("resumed at step " + std::to_string(step));
            for (const TrainingEval &e : result.evals) {
                files.line(evalJson(e));
                if (observer.eval)
                    observer.eval(e);
            }
            for (const TrainingStep &s : result.steps) {
                files.line(stepJson(s));
                if (observer.step)
                    observer.step(s);
            }
        }
        // From here on the GPU trainer, when there is one, holds the parameters and moments; lm and adam receive
        // them back for checkpoints and the export.
        const std::unique_ptr<train::DeviceTrainer> trainer =
            deviceTrainer(spec, lm, adam, method.get(), [&](const std::string &line) { files.log(line); });
        if (trainer)
            result.device = trainer->describe();
        if (!resuming && !prepared.eval.empty()) {
            if (method)
                method->beforeEvaluation(lm);
            result.evals.push_back(evaluate(lm, trainer.get(), prepared.eval, spec.seqLen, spec.evalWindows, 0));
            files.line(evalJson(result.evals.back()));
            if (observer.eval)
                observer.eval(result.evals.back());
            files.log("step 0: eval perplexity " + std::to_string(result.evals.back().perplexity));
        }
        files.results(result.toJson());
        const int64_t tokensPerStep = spec.batch * spec.accumulate * spec.seqLen;
        for (; step < spec.steps; ++step) {
            const double ts = steadySeconds();
            if (method)
                beforeStep(*method, lm, trainer.get(), step, spec.steps);
            if (trainer)
                trainer->zeroGradients();
            else
                lm.parameters().zeroGrad();
            double loss = 0;
            for (int64_t a = 0; a < spec.accumulate; ++a) {
                TokenBatch b;
                b.batch = spec.batch;
                b.seq = spec.seqLen;
                for (int64_t w = 0; w < spec.batch; ++w) {
                    const int64_t win = order.next();
                    b.tokens.insert(b.tokens.end(), prepared.train.begin() + win * spec.seqLen,
                                    prepared.train.begin() + (win + 1) * spec.seqLen);
                }
                const uint64_t maskSeed = stepMaskSeed(spec.seed, step, a);
                if (trainer) {
                    loss += double(trainer->forwardBackward(b, 1.0f / float(spec.accumulate), maskSeed)) /
                            double(spec.accumulate);
                    continue;
                }
                loss += double(lm.forward(b, maskSeed)) / double(spec.accumulate);
                lm.backward(1.0f / float(spec.accumulate));
            }
            TrainingStep rec;
            rec.step = step + 1;
            rec.loss = loss;
            rec.lr = schedule.at(step);
            if (trainer) {
                rec.gradNorm = trainer->step(rec.lr, spec.clip);
            } else {
                rec.gradNorm = train::clipGradNorm(lm.parameters(), spec.clip);
                adam.step(lm.parameters(), rec.lr);
            }
            if (method) {
                afterStep(*method, lm, trainer.get(), step, spec.steps);
                rec.method = method->stepReport();
            }
            rec.tokensPerSecond = double(tokensPerStep) / std::max(1e-9, steadySeconds() - ts);
            result.steps.push_back(rec);
            files.line(stepJson(rec));
            if (observer.step)
                observer.step(rec);
            const bool last = step + 1 == spec.steps;
            if (!prepared.eval.empty() && (last || (spec.evalEvery > 0 && (step + 1) % spec.evalEvery == 0))) {
                if (method)
                    method->beforeEvaluation(lm);
                result.evals.push_back(
                    evaluate(lm, trainer.get(), prepared.eval, spec.seqLen, spec.evalWindows, step + 1));
                files.line(evalJson(result.evals.back()));
                if (observer.eval)
                    observer.eval(result.evals.back());
                files.log("step " + std::to_string(step + 1) + ": eval perplexity " +
                          std::to_string(result.evals.back().perplexity));
            }
            if (spec.checkpointEvery > 0 && (step + 1) % spec.checkpointEvery == 0 && !last) {
                if (trainer) {
                    trainer->download(lm, false);
                    trainer->downloadOptimizer(adam);
                }
                writeCheckpoint(dir, lm, adam, order, result, step + 1, method.get());
                files.log("checkpoint at step " + std::to_string(step + 1));
            }
            const double fraction = double(step + 1) / double(spec.steps);
            const double elapsed = steadySeconds() - t0;
            char stage[160];
            std::snprintf(stage, sizeof stage, "step %lld/%lld: loss %.4f, lr %.2e, |g| %.3f, %.0f tokens/s — ETA %s",
                          (long long)(step + 1), (long long)spec.steps, rec.loss, rec.lr, rec.gradNorm,
                          rec.tokensPerSecond, formatDuration(elapsed * (1 - fraction) / fraction).c_str());
            reportProgress(progress, fraction, stage); // cancellation: at a step boundary
        }
        if (trainer)
            trainer->download(lm, false);
        if (spec.exportModel) {
            std::unique_ptr<Model> out = openModel(spec.model); // the source is never written
            lm.forEachExportTensor([&](const std::string &name, const train::Matrix<float> &value) {
                std::vector<int64_t> shape = {value.rows()};
                if (value.cols() > 1)
                    shape.push_back(value.cols());
                out->setFloat(name, std::vector<float>(value.data(), value.data() + value.size()), shape);
            });
            HfWriteOptions wo;
            wo.dtype = exportDType(spec.dtype);
            wo.overwrite = true;
            result.exportDir = (dir / "model").string();
            writeHfFolder(*out, result.exportDir, wo);
            files.log("exported to " + result.exportDir);
            if (const std::optional<DType> type = ggufExportDType(spec.gguf)) {
                GgufWriteOptions go;
                go.dtype = *type;
                go.overwrite = true;
                go.notes = {{"method", spec.method ? spec.method->info().name : "fine-tuning"},
                            {"model", fs::path(spec.model).filename().string()}};
                result.ggufFile = (dir / "model.gguf").string();
                for (const std::string &n : writeGgufFile(*out, result.ggufFile, go).notes)
                    files.log("GGUF: " + n);
                files.log("GGUF for llama.cpp: " + result.ggufFile);
            }
            if (method && method->lowRankSparseExport() && lm.maskedLm()) {
                files.log("compact low-rank + sparse export: not written for BERT (its remote code builds causal "
                          "LMs); model/ holds the trained weights, L R + S merged");
            } else if (method && method->lowRankSparseExport()) {
                std::unique_ptr<Model> copy = openModel(spec.model);
                const std::string compact = (dir / "model-compact").string();
                exportLoSparseCompact(*copy, lm, compact, wo);
                files.log("compact low-rank + sparse export: " + compact);
            }
            if (const std::optional<SparsityPattern> pattern = method ? method->sparseExport() : std::nullopt) {
                if (sparseArchiveAvailable()) {
                    std::vector<std::string> pruned;
                    for (const auto &slot : lm.linears())
                        if (!dynamic_cast<const train::DenseLinear<float> *>(slot.kind))
                            pruned.push_back(slot.kind->weightName());
                    writeSparseArchive((dir / "run.h5").string(), *out, pruningFromZeros(*out, pruned, *pattern),
                                       {{"method", spec.method->info().name}, {"model", spec.model}});
                    files.log("compact sparse archive: " + (dir / "run.h5").string());
                } else {
                    files.log("built without HDF5: no compact sparse archive");
                }
            }
        }
        if (method) {
            result.method = method->report(lm);
            files.log("method: " + result.method.dump());
        }
        result.status = "done";
        result.seconds = steadySeconds() - t0;
        files.results(result.toJson());
        files.log("done in " + formatDuration(result.seconds));
        return result;
    } catch (const CancelledError &) {
        result.status = "cancelled";
        result.seconds = steadySeconds() - t0;
        files.resultsNoThrow(result.toJson(), "cancelled by the user at step " + std::to_string(step + 1));
        throw;
    } catch (const std::exception &e) {
        result.status = "failed";
        result.error = e.what();
        result.seconds = steadySeconds() - t0;
        files.resultsNoThrow(result.toJson(), std::string("failed: ") + e.what());
        throw;
    }
}

} // namespace lathe
