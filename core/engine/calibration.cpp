#include "engine/calibration.h"

#include "engine/transformer.h"
#include "model/model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>

namespace lathe {

CalibrationSet makeCalibrationSet(const std::vector<int32_t> &tokens, const CalibrationParams &params) {
    if (params.samples <= 0 || params.seqLen <= 1)
        throw LatheError("calibration needs at least one sample of at least 2 tokens",
                         "set the number of samples and their length, e.g. 128 x 2048");
    CalibrationSet set;
    set.seqLen = params.seqLen;
    set.textTokens = int64_t(tokens.size());
    const int64_t fit = set.textTokens / params.seqLen;
    if (fit == 0)
        throw LatheError("the calibration text has " + std::to_string(tokens.size()) +
                             " tokens, fewer than one sample of " + std::to_string(params.seqLen),
                         "use a longer calibration text or a shorter sample length");
    std::vector<int64_t> windows(static_cast<size_t>(fit));
    std::iota(windows.begin(), windows.end(), 0);
    int64_t take = std::min(fit, params.samples);
    if (take < params.samples)
        set.note = "the calibration text holds " + std::to_string(fit) + " samples of " +
                   std::to_string(params.seqLen) + " tokens, fewer than the " + std::to_string(params.samples) +
                   " asked: using " + std::to_string(take);
    std::mt19937_64 rng(params.seed);
    std::shuffle(windows.begin(), windows.end(), rng);
    windows.resize(size_t(take));
    std::sort(windows.begin(), windows.end());
    set.windows = windows;
    for (int64_t w : windows)
        set.sequences.emplace_back(tokens.begin() + w * params.seqLen, tokens.begin() + (w + 1) * params.seqLen);
    return set;
}

bool linearInputSignal(TensorRole role, BlockSignal &signal) {
    switch (role) {
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV:
    case TensorRole::AttnQkv: signal = BlockSignal::AttnInput; return true;
    case TensorRole::AttnO: signal = BlockSignal::AttnContext; return true;
    case TensorRole::MlpGate:
    case TensorRole::MlpUp: signal = BlockSignal::MlpInput; return true;
    case TensorRole::MlpDown: signal = BlockSignal::MlpHidden; return true;
    default: return false;
    }
}

BlockHooks InputSquareSums::hooks() {
    BlockHooks hooks;
    hooks.mask = BlockHooks::bit(BlockSignal::AttnInput) | BlockHooks::bit(BlockSignal::AttnContext) |
                 BlockHooks::bit(BlockSignal::MlpInput) | BlockHooks::bit(BlockSignal::MlpHidden);
    // fp64 so that millions of tokens add up exactly enough.
    hooks.observe = [this](int layer, BlockSignal signal, const Mat &x) {
        std::vector<double> &acc = m_sums[size_t(layer)][size_t(signal)];
        if (acc.empty())
            acc.assign(size_t(x.cols()), 0.0);
        for (int64_t r = 0; r < x.rows(); ++r) {
            const float *row = x.data() + r * x.cols();
            for (int64_t c = 0; c < x.cols(); ++c)
                acc[size_t(c)] += double(row[c]) * double(row[c]);
        }
    };
    return hooks;
}

std::vector<float> InputSquareSums::norms(int layer, BlockSignal signal) const {
    const auto &sums = m_sums[size_t(layer)];
    const std::vector<double> *acc = &sums[size_t(signal)];
    if (acc->empty() && signal == BlockSignal::MlpInput)
        acc = &sums[size_t(BlockSignal::AttnInput)];
    std::vector<float> out(acc->size());
    for (size_t c = 0; c < acc->size(); ++c)
        out[c] = float(std::sqrt((*acc)[c]));
    return out;
}

void InputSquareSums::clearLayer(int layer) {
    for (auto &v : m_sums[size_t(layer)])
        v.clear();
}

InputNorms collectInputNorms(Transformer &engine, const Model &model, const CalibrationSet &set,
                             const ProgressCallback &progress) {
    const int layers = engine.numLayers();
    InputSquareSums sums(layers);
    const BlockHooks hooks = sums.hooks();
    InputNorms out;
    const auto n = double(set.sequences.size());
    for (size_t i = 0; i < set.sequences.size(); ++i) {
        const TokenBatch batch = TokenBatch::single(set.sequences[i]);
        ProgressCallback inner;
        if (progress)
            inner = [&](const Progress &p) {
                return progress(Progress{(double(i) + p.fraction) / n,
                                         "calibration sample " + std::to_string(i + 1) + "/" +
                                             std::to_string(set.sequences.size())});
            };
        engine.hiddenStates(batch, &hooks, inner);
        out.tokens += int64_t(batch.tokens.size());
    }
    for (const TensorInfo &t : model.tensors()) {
        BlockSignal signal;
        if (t.isBias || t.layer < 0 || t.layer >= layers || t.shape.size() != 2 || !linearInputSignal(t.role, signal))
            continue;
        std::vector<float> norms = sums.norms(t.layer, signal);
        if (int64_t(norms.size()) == t.shape[1])
            out.norms[t.name] = std::move(norms);
    }
    return out;
}

} // namespace lathe
