#include "clioptions.h"
#include "enginesetup.h"

#include "base/error.h"
#include "engine/evaluation.h"
#include "engine/transformer.h"
#include "export/hfwriter.h"
#include "numeric/blas.h"
#include "train/causallm.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace lathe::cli {

// lathe-cli grad (issue 17 item 7): the gradient of the evaluation protocol's loss over the first K windows.
int runGrad(int argc, char **argv) {
    CliOptions o(argc, argv, 2, {"model", "text", "seq-len", "windows", "tokenizer", "threads", "out"}, {"json"});
    if (!o.ok() || !o.value("model") || !o.value("text") || !o.positional().empty()) {
        std::fprintf(stderr,
                     "usage: lathe-cli grad --model MODEL --text FILE [--seq-len N] [--windows K] [--tokenizer FILE]\n"
                     "                      [--threads T] [--out GRADS.safetensors] [--json]\n"
                     "  the mean next-token loss over the K x (N - 1) predictions of the first K windows of the text\n"
                     "  (the evaluation protocol's windows, default K = 1, N = min(512, the model's maximum); BERT: the\n"
                     "  masked-LM loss, 15%% of each window masked, window w by seed w), and the\n"
                     "  L2 norm of every parameter's gradient of it; --out writes every gradient as fp32 safetensors\n"
                     "  keyed by the Hugging Face tensor name, in the Hugging Face layout (a new file only)\n%s\n",
                     o.error().c_str());
        return 2;
    }
    if (o.value("threads"))
        setBlasThreads(int(o.integer("threads", 0, 0, 1024)));
    const std::optional<std::string> out = o.value("out");
    if (out && std::filesystem::exists(*out))
        throw LatheError("--out: " + *out + " exists", "give a new file name: grad never replaces a file");
    LoadedModel m = openModelWithTokenizer(*o.value("model"), o.value("tokenizer"));
    const int64_t maxPos = m.model->config.maxPositions;
    const int64_t seq = o.integer("seq-len", maxPos > 0 ? std::min<int64_t>(512, maxPos) : 512, 2, 1 << 20);
    const int64_t windows = o.integer("windows", 1, 1, 1 << 20);
    const std::vector<int32_t> ids = m.tokenizer->encodeForModel(joinDatasetRows(readTextFile(*o.value("text"))));
    if (int64_t(ids.size()) < windows * seq)
        throw LatheError(*o.value("text") + ": " + std::to_string(ids.size()) + " tokens, fewer than " +
                             std::to_string(windows) + " windows of " + std::to_string(seq),
                         "use fewer windows or a shorter --seq-len");

    const auto t0 = std::chrono::steady_clock::now();
    train::CausalLm<float> lm(*m.model);
    lm.setMasking(train::mlmMaskingFor(m.model->config, *m.tokenizer));
    // One window at a time (the activations of one window only), each contributing 1/K of the mean.
    double loss = 0;
    for (int64_t w = 0; w < windows; ++w) {
        TokenBatch batch;
        batch.batch = 1;
        batch.seq = seq;
        batch.tokens.assign(ids.begin() + w * seq, ids.begin() + (w + 1) * seq);
        loss += double(lm.forward(batch, uint64_t(w))) / double(windows); // masked LM: window w masked by seed w
        lm.backward(1.0f / float(windows));
        spdlog::info("grad: window {}/{}", w + 1, windows);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    nlohmann::json grads = nlohmann::json::array();
    std::vector<NamedFloats> tensors;
    std::vector<train::Matrix<float>> transposed; // GPT-2's Conv1D weights, in the checkpoint's (in x out) layout
    transposed.reserve(lm.parameters().all().size());
    for (const train::Parameter<float> &p : lm.parameters().all()) {
        std::vector<int64_t> shape = {p.value.rows()};
        if (p.value.cols() > 1)
            shape.push_back(p.value.cols());
        grads.push_back({{"name", p.name}, {"shape", shape}, {"norm", double(p.grad.norm())}});
        if (p.transposedInFile) {
            transposed.push_back(p.grad.transpose());
            tensors.push_back({p.name, {shape[1], shape[0]}, transposed.back().data()});
        } else {
            tensors.push_back({p.name, shape, p.grad.data()});
        }
    }
    if (out)
        writeFloatSafetensors(*out, tensors,
                              {{"model", m.model->sourcePath}, {"text", *o.value("text")},
                               {"seq_len", std::to_string(seq)}, {"windows", std::to_string(windows)},
                               {"loss", std::to_string(loss)}});
    const nlohmann::json j = {{"model", m.model->sourcePath},
                              {"text", *o.value("text")},
                              {"seq_len", seq},
                              {"windows", windows},
                              {"predictions", windows * (seq - 1)},
                              {"loss", loss},
                              {"perplexity", std::exp(loss)},
                              {"parameters", lm.parameters().count(false)},
                              {"gradients", grads},
                              {"seconds", seconds},
                              {"out", out.value_or("")}};
    if (o.flag("json")) {
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    std::printf("Model        %s\nText         %s (%lld x %lld tokens)\nLoss         %.6f (perplexity %.4f)\n\n",
                m.model->sourcePath.c_str(), o.value("text")->c_str(), (long long)windows, (long long)seq, loss,
                std::exp(loss));
    std::printf("%-60s %14s\n", "parameter", "|grad|");
    for (const nlohmann::json &g : grads)
        std::printf("%-60s %14.6g\n", g["name"].get<std::string>().c_str(), g["norm"].get<double>());
    std::printf("\n%.2f s%s%s\n", seconds, out ? "; gradients written to " : "", out ? out->c_str() : "");
    return 0;
}

} // namespace lathe::cli
