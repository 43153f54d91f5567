#include "engine/evaluation.h"

#include "base/error.h"
#include "base/parallel.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "numeric/cpukernels.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

namespace lathe {

std::string readTextFile(const std::string &path) {
    // Only regular files: a folder would read as nothing and a FIFO or device could block forever.
    std::error_code ec;
    const std::filesystem::file_status st = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(st))
        throw LatheError(path + ": the text file does not exist", "check the path");
    if (!std::filesystem::is_regular_file(st))
        throw LatheError(path + ": is not a regular file", "give a text file (one dataset row per line)");
    const uintmax_t size = std::filesystem::file_size(path, ec);
    std::ifstream in(path, std::ios::binary);
    if (!in || ec)
        throw LatheError(path + ": cannot open the text file", "check the path and the file's permissions");
    // Read straight into a string of the file's size: one copy of the text in memory, not two.
    std::string text(size_t(size), '\0');
    in.read(text.data(), std::streamsize(size));
    text.resize(size_t(in.gcount()));
    return text;
}

namespace {

// Sum of -log softmax(logits[r])[target[r]] over rows [first, rows), in double; false when a logit is not finite.
bool addNll(const Mat &logits, const int32_t *targets, double &sum, int64_t first = 0) {
    const int64_t rows = logits.rows(), vocab = logits.cols();
    std::vector<double> totals(static_cast<size_t>(rows), 0.0);
    const cpu::CpuKernels &kernels = cpu::cpuKernels();
    parallelFor(rows - first, 8, [&](int64_t i0, int64_t i1) {
        for (int64_t r = first + i0; r < first + i1; ++r) {
            const float *row = logits.data() + r * vocab;
            totals[size_t(r)] = kernels.logSumExp(row, vocab) - double(row[targets[r]]);
        }
    });
    for (double v : totals) {
        if (!std::isfinite(v))
            return false;
        sum += v;
    }
    return true;
}

} // namespace

namespace {

// The protocol's bookkeeping around `windowNll(window tokens) -> sum of NLL over its seqLen-1 predictions`, shared
// by the CPU and GPU passes.
template <typename WindowNll>
PerplexityResult runPerplexity(const std::vector<int32_t> &tokens, int64_t maxPositions, const PerplexityParams &params,
                               const ProgressCallback &progress, WindowNll &&windowNll) {
    const int64_t n = params.seqLen;
    if (n < 2)
        throw LatheError("sequence length " + std::to_string(n) + " is too short", "use --seq-len 2 or more");
    if (maxPositions > 0 && n > maxPositions)
        throw LatheError("sequence length " + std::to_string(n) + " is above the model's maximum of " +
                             std::to_string(maxPositions) + " positions",
                         "use --seq-len " + std::to_string(maxPositions) + " or less");
    int64_t usable = int64_t(tokens.size());
    if (params.maxTokens > 0)
        usable = std::min(usable, params.maxTokens);
    PerplexityResult r;
    r.textTokens = int64_t(tokens.size());
    r.windows = usable / n;
    if (r.windows == 0)
        throw LatheError("the text has " + std::to_string(usable) + " tokens, fewer than one window of " +
                             std::to_string(n),
                         "use a longer text or a shorter --seq-len");
    const auto start = std::chrono::steady_clock::now();
    double nllSum = 0;
    for (int64_t w = 0; w < r.windows; ++w) {
        reportProgress(progress, double(w) / double(r.windows),
                       "window " + std::to_string(w + 1) + "/" + std::to_string(r.windows));
        TokenBatch batch;
        batch.seq = n;
        batch.tokens.assign(tokens.begin() + w * n, tokens.begin() + (w + 1) * n);
        const double nll = windowNll(batch);
        if (!std::isfinite(nll))
            throw LatheError("the model produced non-finite logits in window " + std::to_string(w + 1),
                             "the weights may hold NaN or Inf values: run lathe-cli inspect MODEL --scan");
        nllSum += nll;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.predictedTokens = r.windows * (n - 1);
    r.meanNll = nllSum / double(r.predictedTokens);
    r.perplexity = std::exp(r.meanNll);
    r.tokensPerSecond = double(r.windows * n) / std::max(r.seconds, 1e-9);
    reportProgress(progress, 1.0, "done");
    return r;
}

} // namespace

PerplexityResult evaluatePerplexity(Transformer &model, const std::vector<int32_t> &tokens,
                                    const PerplexityParams &params, const ProgressCallback &progress) {
    require(model.isDecoder(), "perplexity", "BERT is an encoder: perplexity needs a causal language model");
    constexpr int64_t kHeadRows = 256; // LM head in row blocks: (256 x vocab) logits at a time
    Mat logits;                        // one buffer for every block and window (see Transformer::logits)
    return runPerplexity(tokens, model.config().maxPositions, params, progress, [&](const TokenBatch &batch) {
        const int64_t n = batch.seq;
        const Mat h = model.hiddenStates(batch);
        const Mat f = model.finalHidden(h.topRows(n - 1));
        double sum = 0;
        for (int64_t r0 = 0; r0 < n - 1; r0 += kHeadRows) {
            // Every block has the same shape, so `logits` is never reallocated: a short last block is moved back
            // to end at the last row and its rows already counted are skipped.
            const int64_t rows = std::min(kHeadRows, n - 1), start = std::min(r0, n - 1 - rows);
            model.logits(f.middleRows(start, rows), logits);
            if (!addNll(logits, batch.tokens.data() + start + 1, sum, r0 - start))
                return std::numeric_limits<double>::quiet_NaN();
        }
        return sum;
    });
}

PerplexityResult evaluatePerplexity(DeviceForward &model, int64_t maxPositions, const std::vector<int32_t> &tokens,
                                    const PerplexityParams &params, const ProgressCallback &progress) {
    return runPerplexity(tokens, maxPositions, params, progress, [&](const TokenBatch &batch) {
        int64_t count = 0;
        return model.sumNextTokenNll(batch, &count);
    });
}

std::string joinDatasetRows(const std::string &fileText) {
    std::string out;
    size_t pos = 0;
    bool first = true;
    while (pos < fileText.size()) {
        size_t end = fileText.find('\n', pos);
        if (end == std::string::npos)
            end = fileText.size();
        if (!first)
            out += "\n\n";
        first = false;
        if (end > pos)
            out.append(fileText, pos, end - pos).push_back('\n');
        pos = end + 1;
    }
    return out;
}

std::vector<int32_t> generateGreedy(Transformer &model, std::vector<int32_t> ids, int64_t maxNew, int32_t stopToken,
                                    const ProgressCallback &progress) {
    require(model.isDecoder(), "generate", "BERT is an encoder and cannot generate text");
    require(!ids.empty(), "generate", "the prompt is empty", "give at least one token (BOS counts)");
    // No KV cache yet: each step runs the whole prefix. Fine for the demo model and short continuations.
    for (int64_t step = 0; step < maxNew; ++step) {
        reportProgress(progress, double(step) / double(maxNew), "token " + std::to_string(step + 1));
        const int64_t maxPos = model.config().maxPositions;
        if (maxPos > 0 && int64_t(ids.size()) >= maxPos)
            break;
        const Mat h = model.hiddenStates(TokenBatch::single(ids));
        const Mat logits = model.logits(model.finalHidden(h.bottomRows(1)));
        Eigen::Index best = 0;
        logits.row(0).maxCoeff(&best);
        ids.push_back(int32_t(best));
        if (int32_t(best) == stopToken)
            break;
    }
    return ids;
}

} // namespace lathe
