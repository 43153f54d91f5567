#include "methods/trainingmethod.h"

#include "base/error.h"
#include "base/unicodetext.h"
#include "model/model.h"
#include "train/causallm.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cmath>

namespace lathe {

namespace {

// A block linear's weight (not the head, not a bias).
bool isBlockLinear(const TensorInfo &t) { return !t.isBias && t.layer >= 0 && isLinearRole(t.role); }

} // namespace

void FineTuningMethod::checkRun(const Model &model, double, const MethodParams &params) const {
    train::CausalLm<float>::checkSupported(model); // what the training engine runs (BERT with its masked-LM head too)
    const unicode::NamePattern re(params.get<std::string>(targetsKey()));
    for (const TensorInfo &t : model.tensors())
        if (isBlockLinear(t) && re.search(t.name))
            return;
    throw LatheError(targetsKey() + ": '" + params.get<std::string>(targetsKey()) +
                         "' matches none of the block linears",
                     "names look like model.layers.0.mlp.down_proj.weight");
}

std::vector<std::string> FineTuningMethod::preview(const Model &model, double, const MethodParams &params) const {
    const unicode::NamePattern re(params.get<std::string>(targetsKey()));
    int64_t n = 0, weights = 0;
    for (const TensorInfo &t : model.tensors())
        if (isBlockLinear(t) && re.search(t.name)) {
            ++n;
            weights += t.shape.size() == 2 ? t.shape[0] * t.shape[1] : 0;
        }
    return {std::to_string(n) + " linears, " + std::to_string(weights) + " weights"};
}

MethodOutcome FineTuningMethod::run(Model &, const MethodParams &, const MethodContext &,
                                    const ProgressCallback &) const {
    throw LatheError(info().name + " is a fine-tuning method: it runs as a training job",
                     "write a training job spec with \"method\": \"" + info().name +
                         "\" and run lathe-cli train JOB.json (docs/training.md)");
}

FineTuningMethod::Schedule FineTuningMethod::sampleSchedule(const std::string &name, int64_t steps, int64_t first,
                                                            const std::function<double(int64_t)> &at) {
    Schedule out{name, {}};
    out.values.reserve(size_t(std::max<int64_t>(0, steps)));
    for (int64_t t = first; t < first + steps; ++t)
        out.values.push_back(at(t));
    return out;
}

namespace {
[[noreturn]] void throwNoTargets(const std::string &pattern) {
    throw LatheError("'" + pattern + "' matches none of the block linears",
                     "names look like model.layers.0.mlp.down_proj.weight");
}
} // namespace

std::vector<train::CausalLm<float>::LinearSlot> targetLinears(const train::CausalLm<float> &lm,
                                                              const std::string &pattern) {
    const unicode::NamePattern re(pattern);
    std::vector<train::CausalLm<float>::LinearSlot> out;
    for (const auto &s : lm.linears())
        if (re.search(s.kind->weightName()))
            out.push_back(s);
    if (out.empty())
        throwNoTargets(pattern);
    return out;
}

std::vector<PlannedLinear> plannedTargets(const Model &model, const std::string &pattern,
                                          const std::string &trainable) {
    const unicode::NamePattern re(pattern), train(trainable);
    std::vector<PlannedLinear> out;
    for (const TensorInfo &t : model.tensors())
        if (isBlockLinear(t) && t.shape.size() == 2 && re.search(t.name))
            out.push_back({t.name, t.shape[0], t.shape[1], train.search(t.name)});
    if (out.empty())
        throwNoTargets(pattern);
    return out;
}

double cubicSchedule(int64_t step, int64_t total, double begin, double end, double from, double to) {
    const double t = double(step), t0 = begin * double(total), t1 = end * double(total);
    if (t < t0)
        return from;
    if (t >= t1 || t1 <= t0)
        return to;
    const double rest = 1.0 - (t - t0) / (t1 - t0);
    return to + (from - to) * rest * rest * rest;
}

ParamSpec targetsParam(const std::string &key, const std::string &defaultPattern) {
    ParamSpec p;
    p.key = key;
    p.label = "Target linears";
    p.type = ParamType::Text;
    p.defaultValue = defaultPattern;
    p.help = "regular expression over the weight names of the block linears the method changes";
    p.check = [](const ParamValue &v) { unicode::NamePattern check(std::get<std::string>(v)); };
    return p;
}

} // namespace lathe
