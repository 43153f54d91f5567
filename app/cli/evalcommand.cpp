#include "clioptions.h"
#include "enginesetup.h"

#include "base/error.h"
#include "engine/deviceforward.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "io/tokenizerloader.h"
#include "numeric/blas.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace lathe::cli {

int runEval(int argc, char **argv) {
    CliOptions o(argc, argv, 2,
                 {"model", "text", "seq-len", "max-tokens", "device", "precision", "tokenizer", "threads"},
                 {"json", "no-bos"});
    if (!o.ok() || !o.value("model") || !o.value("text") || !o.positional().empty()) {
        std::fprintf(stderr,
                     "usage: lathe-cli eval --model MODEL --text FILE [--seq-len N] [--max-tokens K]\n"
                     "                      [--device auto|cpu|cuda[:N]] [--precision bf16|fp16|fp32] [--tokenizer FILE]\n"
                     "                      [--threads N] [--no-bos] [--json]\n"
                     "  perplexity by the standard protocol: the file's lines as dataset rows joined with \"\\n\\n\",\n"
                     "  tokenized once (with the model's BOS unless --no-bos), non-overlapping windows of N tokens\n"
                     "  (default: min(2048, the model's maximum)), remainder dropped, PPL = exp(mean NLL)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    const std::unique_ptr<ComputeBackend> backend = chooseForwardDevice(o.value("device"));
    const std::string device = backend->name();
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    LoadedModel m = openModelWithTokenizer(*o.value("model"), o.value("tokenizer"));
    const std::string text = joinDatasetRows(readTextFile(*o.value("text")));
    const std::vector<int32_t> ids = o.flag("no-bos") ? m.tokenizer->encode(text) : m.tokenizer->encodeForModel(text);
    PerplexityParams p;
    const int64_t maxPos = m.model->config.maxPositions;
    p.seqLen = o.integer("seq-len", maxPos > 0 ? std::min<int64_t>(2048, maxPos) : 2048, 2, 1 << 20);
    p.maxTokens = o.integer("max-tokens", 0, 0);
    int lastPct = -1;
    const ProgressCallback progress = [&](const Progress &pr) {
        const int pct = int(pr.fraction * 100);
        if (pct / 10 != lastPct / 10) {
            spdlog::info("eval: {} ({}%)", pr.stage, pct);
            lastPct = pct;
        }
        return true;
    };
    PerplexityResult r;
    std::string precision = "fp32";
    if (hasDeviceForward(*backend)) {
        const DeviceForwardOptions options = forwardOptions(o.value("precision"));
        precision = precisionName(options.precision);
        auto gpu = createDeviceForward(*backend, *m.model, options);
        spdlog::info("GPU forward pass: {}", gpu->describe());
        r = evaluatePerplexity(*gpu, maxPos, ids, p, progress);
    } else {
        Transformer t(*m.model);
        r = evaluatePerplexity(t, ids, p, progress);
    }
    nlohmann::json j = {{"model", m.model->sourcePath}, {"text", *o.value("text")}, {"device", device},
                        {"precision", precision},
                        {"tokenizer", m.tokenizer->kind()}, {"seq_len", p.seqLen}, {"perplexity", r.perplexity},
                        {"mean_nll", r.meanNll}, {"text_tokens", r.textTokens}, {"windows", r.windows},
                        {"predicted_tokens", r.predictedTokens}, {"seconds", r.seconds},
                        {"tokens_per_second", r.tokensPerSecond}};
    if (o.flag("json")) {
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("Model          %s\n", m.model->sourcePath.c_str());
        std::printf("Text           %s (%lld tokens, %s)\n", o.value("text")->c_str(), (long long)r.textTokens,
                    m.tokenizer->kind().c_str());
        std::printf("Windows        %lld x %lld tokens (%lld predicted, remainder dropped)\n", (long long)r.windows,
                    (long long)p.seqLen, (long long)r.predictedTokens);
        std::printf("Perplexity     %.4f (mean NLL %.5f nats)\n", r.perplexity, r.meanNll);
        std::printf("Speed          %.1f tokens/s on %s, %s (%.1f s)\n", r.tokensPerSecond, device.c_str(),
                    precision.c_str(), r.seconds);
    }
    return 0;
}

int runGenerate(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "prompt", "max-new", "device", "tokenizer"}, {"json"});
    if (!o.ok() || !o.value("model") || !o.positional().empty()) {
        std::fprintf(stderr, "usage: lathe-cli generate --model MODEL [--prompt TEXT] [--max-new N] [--tokenizer FILE]"
                             " [--json]\n  greedy decoding\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (parseDevice(o.value("device")).preference == DevicePreference::Cuda)
        throw LatheError("generation runs on the CPU in this version (the GPU runs eval and bench)", "use --device cpu");
    LoadedModel m = openModelWithTokenizer(*o.value("model"), o.value("tokenizer"));
    const std::string prompt = o.value("prompt").value_or("");
    std::vector<int32_t> ids = m.tokenizer->encodeForModel(prompt);
    if (ids.empty() && m.tokenizer->bos >= 0)
        ids.push_back(m.tokenizer->bos);
    const size_t promptLen = ids.size();
    Transformer t(*m.model);
    ids = generateGreedy(t, ids, o.integer("max-new", 64, 0, 1 << 20), m.tokenizer->eos);
    const std::vector<int32_t> fresh(ids.begin() + long(promptLen), ids.end());
    const std::string continuation = m.tokenizer->decode(fresh);
    if (o.flag("json")) {
        nlohmann::json j = {{"prompt", prompt}, {"prompt_ids", std::vector<int32_t>(ids.begin(), ids.begin() + long(promptLen))},
                            {"ids", fresh}, {"text", continuation}};
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("%s%s\n", prompt.c_str(), continuation.c_str());
    }
    return 0;
}

int runTokenize(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "tokenizer", "text", "string"}, {"rows", "no-special", "json"});
    if (!o.ok() || (!o.value("model") && !o.value("tokenizer")) || (!o.value("text") && !o.value("string"))) {
        std::fprintf(stderr, "usage: lathe-cli tokenize (--model MODEL | --tokenizer FILE) (--text FILE | --string S)\n"
                             "                          [--rows] [--no-special] [--json]\n"
                             "  --rows joins the file's lines as eval does; prints the ids (JSON list with --json)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    std::unique_ptr<Tokenizer> tok;
    if (o.value("model"))
        tok = openModelWithTokenizer(*o.value("model"), o.value("tokenizer")).tokenizer;
    else
        tok = loadTokenizerFile(*o.value("tokenizer"));
    std::string text = o.value("string") ? *o.value("string") : readTextFile(*o.value("text"));
    if (o.flag("rows"))
        text = joinDatasetRows(text);
    const std::vector<int32_t> ids = o.flag("no-special") ? tok->encode(text) : tok->encodeForModel(text);
    if (o.flag("json")) {
        std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    } else {
        for (size_t i = 0; i < ids.size(); ++i)
            std::printf("%s%d", i ? " " : "", ids[i]);
        std::printf("\n");
        spdlog::info("{} tokens ({})", ids.size(), tok->kind());
    }
    return 0;
}

} // namespace lathe::cli
