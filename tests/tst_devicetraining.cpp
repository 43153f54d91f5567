// `lathe-cli train` on a GPU (issue 17 item 9), without one. First the GPU trainer's composition itself
// (train::OpsTrainer on the CPU reference ops, hosttrainops.h) against CausalLm, step by step, bit for bit
// (opsTrainerComposition). Then end to end: this test registers a GPU platform whose one device trains with
// train::OpsTrainer on the CPU reference ops instead of the CUDA ops (referencegpu.h).
// So runTraining's GPU path (trainer creation, accumulation, evaluation through the trainer, checkpoints of the
// device's values and moments, resume, export) runs here, and since the ops are the CPU's, in the same order, a
// run on the "GPU" must give the CPU run's steps, evaluations and exported bytes exactly:
// - device "cuda" against device "cpu": every step's loss and gradient norm, every evaluation, model.safetensors;
// - a "cuda" run cancelled after a checkpoint and resumed, on the "GPU" and on the CPU: the uninterrupted bytes;
// - "auto" takes the GPU trainer for plain fine-tuning (BERT's masked-LM training too) and every fine-tuning method
//   (SAT with magnitude scores too);
// - frozen parameters train on the "GPU" as on the CPU, without gradients and moments there;
// - "cuda" refuses a job it does not run (fp16 products) before any work.
// The same device also offers the forward pass (the CPU engine) and SliceGPT's engine (the CPU's), so compression
// runs take their GPU paths too: evaluation and SliceGPT there with the CPU's results, and a preflight that times
// the device's pass and estimates those phases with it.
// The CUDA ops themselves are compared with the CPU ones by `lathe-cli check-gpu` on a GPU.

#include "base/error.h"
#include "engine/evaluation.h"
#include "referencegpu.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "methods/slicegptengine.h"
#include "numeric/cpukernels.h"
#include "run/compressionrun.h"
#include "run/compressionspec.h"
#include "run/preflight.h"
#include "run/trainingrun.h"
#include "testsupport.h"
#include "train/opsmemory.h"
#include "train/opstrainer.h"
#include "train/schedule.h"

#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include <filesystem>

using namespace lathe;
namespace fs = std::filesystem;

namespace {

const test::ReferencePlatform kPlatform;

nlohmann::json job(const fs::path &out, const std::string &device) {
    return {{"model", test::sourceDir() + "/resources/demo/stories260K.bin"},
            {"data", {{"train", test::dataDir() + "/text/tinystories-excerpt.txt"}, {"holdout", 0.1}, {"seq_len", 48},
                      {"batch", 2}, {"accumulate", 2}, {"eval_windows", 2}, {"seed", uint64_t(7)}}},
            {"optimizer", {{"lr", 2e-3}, {"warmup", 2}, {"clip", 0.5}}},
            {"steps", 8},
            {"eval_every", 4},
            {"checkpoint_every", 3},
            {"device", device},
            {"precision", "fp32"},
            {"output", {{"dir", out.string()}}}};
}

TrainingResult run(const nlohmann::json &j) {
    const TrainingSpec spec = TrainingSpec::fromJson(j);
    validateTrainingSpec(spec);
    return runTraining(spec);
}

std::string exported(const fs::path &dir) { return readTextFile((dir / "model" / "model.safetensors").string()); }

// `j` run into `out`, cancelled at the 7th progress report (after the step-6 checkpoint) and resumed; the exported
// bytes.
std::string cancelledAndResumed(nlohmann::json j, const fs::path &out) {
    j["output"]["dir"] = out.string();
    TrainingSpec spec = TrainingSpec::fromJson(j);
    int calls = 0;
    try {
        runTraining(spec, [&](const Progress &) { return ++calls < 7; });
    } catch (const CancelledError &) {
    }
    if (!fs::exists(out / "checkpoint" / "state.json"))
        return "not cancelled after a checkpoint";
    spec.resume = true;
    runTraining(spec);
    return exported(out);
}

// A "cuda" run against the same job's "cpu" run: the same steps (loss, gradient norm, the method's values) and
// evaluations, bit for bit, and the same exported bytes.
void sameRun(const TrainingResult &gpu, const TrainingResult &cpu, const fs::path &gpuDir, const fs::path &cpuDir) {
    QVERIFY2(gpu.device.find("CPU (reference ops)") == 0, gpu.device.c_str());
    QCOMPARE(gpu.steps.size(), cpu.steps.size());
    for (size_t i = 0; i < cpu.steps.size(); ++i) {
        QCOMPARE(gpu.steps[i].loss, cpu.steps[i].loss);
        QCOMPARE(gpu.steps[i].gradNorm, cpu.steps[i].gradNorm);
        QCOMPARE(gpu.steps[i].method.dump(), cpu.steps[i].method.dump());
    }
    QCOMPARE(gpu.evals.size(), cpu.evals.size());
    for (size_t i = 0; i < cpu.evals.size(); ++i)
        QCOMPARE(gpu.evals[i].loss, cpu.evals[i].loss);
    QVERIFY(exported(gpuDir) == exported(cpuDir));
}

CompressionSpec compressionSpec(const std::string &method, const std::string &device) {
    CompressionSpec s;
    s.model = test::sourceDir() + "/resources/demo/stories260K.bin";
    s.setMethod(method);
    s.sparsities = {method == "slicegpt" ? 0.25 : 0.5};
    s.calibrationText = s.evalText = test::dataDir() + "/text/tinystories-excerpt.txt";
    s.calibrationSamples = 8;
    s.calibrationSeqLen = s.evalSeqLen = 128;
    s.evalMaxTokens = 2048;
    s.device = device;
    s.outputDir = test::tempDir("device-compress-" + method + "-" + device) + "/out";
    return s;
}

} // namespace

class TestDeviceTraining : public QObject {
    Q_OBJECT
    fs::path m_root;

private slots:
    void initTestCase() {
        registerGpuPlatform(&kPlatform); // before anything asks for the GPUs
        QCOMPARE(int(gpuDevices().size()), 1);
        m_root = test::tempDir("device-training");
    }

    void gpuRunEqualsCpuRun() {
        const TrainingResult cpu = run(job(m_root / "cpu", "cpu"));
        const TrainingResult gpu = run(job(m_root / "cuda", "cuda"));
        QCOMPARE(QString::fromStdString(cpu.device), QString("cpu"));
        QVERIFY2(gpu.device.find("CPU (reference ops), fp32 products") == 0, gpu.device.c_str());
        QCOMPARE(int(gpu.steps.size()), 8);
        QCOMPARE(int(gpu.evals.size()), 3); // before training, at step 4 and at the end
        sameRun(gpu, cpu, m_root / "cuda", m_root / "cpu");
        const std::string log = readTextFile((m_root / "cuda" / "run.log").string());
        QVERIFY2(log.find("training on the GPU: CPU (reference ops)") != std::string::npos, log.c_str());
    }

    // The GPU trainer's composition (train/opstrainer.h) run on the CPU reference ops (hosttrainops.h) against
    // CausalLm + clipGradNorm + AdamW: the same ops in the same order, so the same bits. A step, two accumulated
    // micro-batches and a step, an evaluation, and a trainer made from the downloaded values and moments (a
    // checkpoint) continuing as the first; tied head (tf-llama, hf-llama), q/k/v biases (tf-qwen2), frozen
    // parameters (the tied embedding, a block's norm and attention: no gradient, no moments), learned positions,
    // LayerNorm and GELU (tf-gpt2), positions offset by 2 and ReLU (tf-opt), the parallel block with partial RoPE
    // and a biased head (tf-phi), the fused q/k/v projection (tf-gpt2), BERT's post-norm blocks, bidirectional
    // attention, segment embeddings, embedding norm and masked-LM head with the batch masked from each call's seed
    // (tf-bert-mlm); and the methods' linears: recovery's fixed masks, LoSparse's low rank + sparse with changing
    // row masks, PST's with its mask selected at a sparsity that changes between steps. What the GPU trainer
    // refuses is refused by name.
    void opsTrainerComposition() {
        using Trainer = train::OpsTrainer<test::HostTrainOps>;
        for (const char *fixture : {"tf-llama", "tf-qwen2", "hf-llama", "tf-llama frozen", "tf-qwen2 recompute",
                                    "tf-opt", "tf-phi", "tf-phi recompute", "tf-gpt2", "tf-opt frozen",
                                    "tf-llama recovery", "tf-gpt2 recovery", "tf-phi recovery recompute",
                                    "tf-llama losparse", "tf-gpt2 losparse recompute", "tf-opt losparse",
                                    "tf-llama pst", "tf-gpt2 pst recompute", "tf-phi pst", "tf-llama sat",
                                    "tf-gpt2 sat recompute", "tf-phi sat", "tf-opt sat frozen", "tf-bert-mlm",
                                    "tf-bert-mlm recompute", "tf-bert-mlm frozen", "tf-bert-mlm losparse",
                                    "tf-bert-mlm pst recompute", "tf-bert-mlm sat", "tf-bert-mlm recovery"}) {
            const std::string name = fixture;
            const bool frozen = name.find(" frozen") != std::string::npos;
            auto model = openModel(test::sourceDir() + "/tests/fixtures/" + name.substr(0, name.find(' ')));
            const int64_t vocab = model->config.vocabSize;
            train::CausalLm<float> cpu(*model);
            // BERT: its masking on every model made here (the trainer reads it from the one it was made from); half
            // the tokens chosen, so that every kind of choice happens in a 16-token window.
            train::MlmMasking masking;
            masking.maskId = 3;
            masking.rate = 0.5;
            masking.special = {0};
            const auto batchFor = [&](int64_t batch, int64_t seq, uint64_t seed) {
                TokenBatch b = TokenBatch::random(vocab, batch, seq, seed);
                if (cpu.maskedLm()) { // segment ids: the second half of each window is segment 1
                    b.tokenTypes.assign(b.tokens.size(), 0);
                    for (size_t i = 0; i < b.tokens.size(); ++i)
                        b.tokenTypes[i] = int32_t(int64_t(i) % seq >= seq / 2);
                }
                return b;
            };
            cpu.setMasking(masking);
            // Recomputation: the trainer keeps block inputs only and runs each block again in backward; the
            // reference stays the CausalLm that keeps everything (recomputing changes no bit).
            const bool recompute = name.find(" recompute") != std::string::npos;
            if (frozen)
                for (const train::Parameter<float> &p : cpu.parameters())
                    if (p.role == TensorRole::TokenEmbedding || (p.layer == 0 && p.role != TensorRole::MlpDown))
                        cpu.parameters().setTrainable(p.name, false);
            QVERIFY(!frozen || cpu.parameters().count(true) < cpu.parameters().count(false));
            // The recovery method's fixed masks (half of every block linear pruned, the weights zeroed there).
            const bool recovery = name.find(" recovery") != std::string::npos;
            const auto &recoveryMethod = dynamic_cast<const FineTuningMethod &>(methodNamed("recovery"));
            const MethodParams recoveryParams(recoveryMethod.info().params);
            if (recovery)
                recoveryMethod.startTraining(*model, recoveryParams, 1)->prepare(cpu);
            // LoSparse's low-rank + sparse linears on every block linear; the row masks of S change between steps
            // (every third row of the first linear pruned before the first step, every second of the last one
            // before the second), as its masking does, in the model the trainer reads them from.
            const bool losparse = name.find(" losparse") != std::string::npos;
            const auto &losparseMethod = dynamic_cast<const FineTuningMethod &>(methodNamed("losparse"));
            const MethodParams losparseParams(losparseMethod.info().params);
            const auto pruneRows = [](train::CausalLm<float> &lm, bool last, int every) {
                const auto linearSlots = lm.linears();
                auto *k = dynamic_cast<train::LowRankSparseLinear<float> *>((last ? linearSlots.back() : linearSlots.front()).kind);
                QVERIFY(k);
                std::vector<uint8_t> mask(size_t(k->outFeatures()), 1);
                for (size_t r = 0; r < mask.size(); r += size_t(every))
                    mask[r] = 0;
                k->setRowMask(mask);
            };
            if (losparse) {
                losparseMethod.startTraining(*model, losparseParams, 1)->prepare(cpu);
                pruneRows(cpu, false, 3);
            }
            // PST's linears on every block linear (the checkpoint's parameters frozen), 30% of each pruned in the
            // first step and 60% in the second, the sparsity set on the model the trainer reads it from.
            const bool pst = name.find(" pst") != std::string::npos;
            const auto &pstMethod = dynamic_cast<const FineTuningMethod &>(methodNamed("pst"));
            const MethodParams pstParams(pstMethod.info().params);
            const auto setSparsity = [](train::CausalLm<float> &lm, double sparsity) {
                for (const auto &slot : lm.linears()) {
                    auto *k = dynamic_cast<train::PstLinear<float> *>(slot.kind);
                    QVERIFY(k);
                    k->setSparsity(sparsity);
                }
            };
            if (pst) {
                pstMethod.startTraining(*model, pstParams, 1)->prepare(cpu);
                setSparsity(cpu, 0.3);
            }
            // SAT's gathered steps: selections on the model the trainer reads them from, different in each step
            // (half the MLP channels and one KV group; then other channels and every group), so that AdamW updates
            // the selected rows and columns alone; the trainer's channel norms against CausalLm's after each step.
            const bool sat = name.find(" sat") != std::string::npos;
            const auto select = [&](train::CausalLm<float> &lm, int step) {
                const ModelConfig &c = model->config;
                for (int l = 0; l < int(c.numLayers); ++l) {
                    train::BlockSelection sel;
                    for (int32_t j = (step + l) % 2; j < int32_t(c.intermediateSize); j += 2 + step)
                        sel.mlpChannels.push_back(j);
                    if (step == 0 && c.numKvHeads > 1)
                        sel.kvGroups = {int32_t(c.numKvHeads - 1 - l % 2)};
                    lm.setSelection(l, sel);
                }
            };
            if (sat)
                select(cpu, 0);
            train::AdamW<float> adam;
            cpu.setRecompute(recompute);
            Trainer trainer(test::HostTrainOps(), cpu, adam);
            trainer.keepChannelNorms(sat);
            cpu.setRecompute(false);
            auto same = [&](train::CausalLm<float> &got, bool grads, const char *what) {
                for (size_t i = 0; i < cpu.parameters().size(); ++i) {
                    const train::Parameter<float> &a = got.parameters()[i], &b = cpu.parameters()[i];
                    QVERIFY2(grads ? a.grad == b.grad : a.value == b.value,
                             (std::string(fixture) + ": " + what + " of " + b.name).c_str());
                }
            };
            train::CausalLm<float> view(*model);
            // Another model built as the trainer's (a resumed run's): the method's linears, then cpu's frozen set.
            auto freezeLike = [&](train::CausalLm<float> &lm) {
                lm.setMasking(masking);
                if (recovery)
                    recoveryMethod.startTraining(*model, recoveryParams, 1)->prepare(lm);
                if (losparse) {
                    losparseMethod.startTraining(*model, losparseParams, 1)->prepare(lm);
                    pruneRows(lm, false, 3);
                }
                if (pst)
                    pstMethod.startTraining(*model, pstParams, 1)->prepare(lm);
                for (const train::Parameter<float> &p : cpu.parameters())
                    lm.parameters().setTrainable(p.name, p.trainable());
            };
            freezeLike(view);
            for (int step = 0; step < 2; ++step) {
                // Step 0: one batch; step 1: two micro-batches of half weight.
                const int micro = step == 0 ? 1 : 2;
                if (losparse && step == 1) {
                    pruneRows(cpu, true, 2);
                    pruneRows(view, true, 2);
                }
                if (pst && step == 1) {
                    setSparsity(cpu, 0.6);
                    setSparsity(view, 0.6); // the resumed trainer's model
                }
                if (sat && step == 1) {
                    select(cpu, 1);
                    select(view, 1); // the resumed trainer's model
                }
                trainer.zeroGradients();
                cpu.parameters().zeroGrad();
                for (int m = 0; m < micro; ++m) {
                    const uint64_t seed = uint64_t(10 * step + m); // the batch's and (BERT) its masking's
                    const TokenBatch b = batchFor(2, 16, seed);
                    const float got = trainer.forwardBackward(b, 1.0f / float(micro), seed);
                    const float want = cpu.forward(b, seed);
                    cpu.backward(1.0f / float(micro));
                    QCOMPARE(got, want);
                }
                trainer.download(view, true);
                same(view, true, "gradient");
                if (sat) {
                    trainer.downloadChannelNorms(view);
                    for (int l = 0; l < int(model->config.numLayers); ++l) {
                        QVERIFY(view.channelNorms(l).mlp == cpu.channelNorms(l).mlp);
                        QVERIFY(view.channelNorms(l).kvGroups == cpu.channelNorms(l).kvGroups);
                        QVERIFY(std::count(view.channelNorms(l).mlp.begin(), view.channelNorms(l).mlp.end(), -1.0f) > 0);
                    }
                }
                const double gotNorm = trainer.step(1e-3, 0.05), wantNorm = train::clipGradNorm(cpu.parameters(), 0.05);
                adam.step(cpu.parameters(), 1e-3);
                QCOMPARE(gotNorm, wantNorm);
                trainer.download(view, false);
                same(view, false, "value after the step");
            }
            const TokenBatch eval = batchFor(1, 20, 99);
            QCOMPARE(trainer.loss(eval, 5), cpu.forward(eval, 5));
            // A checkpoint: values and moments downloaded, a new trainer made from them.
            train::AdamW<float> state;
            trainer.downloadOptimizer(state);
            QCOMPARE(state.steps(), adam.steps());
            if (frozen)
                QCOMPARE(state.firstMoments()[0].size(), 0); // the frozen embedding has none
            Trainer resumed(test::HostTrainOps(), view, state);
            const TokenBatch b = batchFor(2, 16, 7);
            for (train::DeviceTrainer *t : {static_cast<train::DeviceTrainer *>(&trainer),
                                            static_cast<train::DeviceTrainer *>(&resumed)}) {
                t->zeroGradients();
                t->forwardBackward(b, 1.0f, 7);
                t->step(1e-3, 1.0);
            }
            train::CausalLm<float> first(*model), second(*model);
            freezeLike(first);
            freezeLike(second);
            trainer.download(first, true);
            resumed.download(second, true);
            for (size_t i = 0; i < first.parameters().size(); ++i)
                QVERIFY2(first.parameters()[i].value == second.parameters()[i].value &&
                             first.parameters()[i].grad == second.parameters()[i].grad,
                         first.parameters()[i].name.c_str());
            // The weight norms (SAT's magnitude scores) of the trainer's values: the host's of the same values, for
            // the rows, the columns and the output projections' column groups of every block linear's weight.
            const std::vector<train::WeightNormRequest> requests = train::everyWeightNormRequest(first);
            QVERIFY(pst || losparse || !requests.empty()); // their linears have no weight parameter
            QVERIFY(trainer.weightNorms(requests) == train::weightNorms(first.parameters(), requests));
            // A group width that does not divide the columns is refused, by the trainer and the host alike.
            if (!requests.empty()) {
                const std::vector<train::WeightNormRequest> odd = {{requests.front().name, 7}};
                QVERIFY_THROWS_EXCEPTION(LatheError, trainer.weightNorms(odd));
                QVERIFY_THROWS_EXCEPTION(LatheError, train::weightNorms(first.parameters(), odd));
            }
            QVERIFY(trainer.describe().find("CPU (reference ops), fp32 products") == 0);
        }
        auto refused = [](train::CausalLm<float> &lm, const std::string &words) {
            try {
                Trainer t(test::HostTrainOps(), lm, train::AdamW<float>());
            } catch (const LatheError &e) {
                QVERIFY2(std::string(e.what()).find(words) != std::string::npos, e.what());
                return;
            }
            QFAIL(("accepted: " + words).c_str());
        };
        auto llama = openModel(test::sourceDir() + "/tests/fixtures/tf-llama");
        train::CausalLm<float> masked(*llama), scored(*llama);
        const std::string weight = masked.linears().front().kind->weightName();
        masked.replaceLinear(weight, [](train::ParameterSet<float> &, train::Parameter<float> *w,
                                        train::Parameter<float> *b) { // prunes weights it leaves nonzero
            return std::make_unique<train::MaskedLinear<float>>(
                w, b, std::vector<uint8_t>(size_t(w->value.size()), uint8_t(0)));
        });
        refused(masked, "holds a nonzero value where its mask prunes");
        scored.replaceLinear(weight, [](train::ParameterSet<float> &ps, train::Parameter<float> *w,
                                        train::Parameter<float> *b) {
            return std::make_unique<train::MaskedLinear<float>>(ps, w, b, 0.5);
        });
        refused(scored, "learns its mask");
        // BERT without its tokenizer's [MASK] id: refused at the first batch, with the hint.
        auto bert = openModel(test::sourceDir() + "/tests/fixtures/tf-bert-mlm");
        train::CausalLm<float> unmasked(*bert);
        train::MlmMasking noMask;
        noMask.maskId = -1;
        unmasked.setMasking(noMask);
        Trainer t(test::HostTrainOps(), unmasked, train::AdamW<float>());
        t.zeroGradients();
        try {
            t.forwardBackward(TokenBatch::random(bert->config.vocabSize, 1, 8, 1), 1.0f, 1);
            QFAIL("a masked-LM batch without a [MASK] id was accepted");
        } catch (const LatheError &e) {
            QVERIFY2(std::string(e.what()).find("[MASK] id") != std::string::npos, e.what());
        }
    }

    // The trainer with ops whose attention saves each row's log-sum-exp instead of the probabilities (the GPU's fused
    // kernels' contract, AttentionStore::LogSumExp; the backward recomputes the probabilities from it and q, k):
    // the saved buffer per block shrinks from B H S^2 to B H S floats, and a step's loss, gradients and gradient
    // norm stay CausalLm's to within 1e-5 of each gradient's largest value (recomputed probabilities differ in their
    // last bits). Causal GQA (tf-llama), recomputed blocks, a gathered SAT step (fewer heads than the buffer
    // was made for), GPT-2's fused projection and BERT's bidirectional attention.
    void logSumExpAttention() {
        using Trainer = train::OpsTrainer<test::HostTrainOps>;
        for (const char *fixture : {"tf-llama", "tf-llama recompute", "tf-llama sat", "tf-gpt2", "tf-bert-mlm"}) {
            const std::string name = fixture;
            auto model = openModel(test::sourceDir() + "/tests/fixtures/" + name.substr(0, name.find(' ')));
            const ModelConfig &c = model->config;
            train::CausalLm<float> cpu(*model);
            train::MlmMasking masking;
            masking.maskId = 3;
            masking.rate = 0.5;
            cpu.setMasking(masking);
            if (name.find(" sat") != std::string::npos)
                for (int l = 0; l < int(c.numLayers); ++l) {
                    train::BlockSelection sel;
                    for (int32_t j = 0; j < int32_t(c.intermediateSize); j += 2)
                        sel.mlpChannels.push_back(j);
                    QVERIFY(c.numKvHeads > 1);
                    sel.kvGroups = {0};
                    cpu.setSelection(l, sel);
                }
            cpu.setRecompute(name.find(" recompute") != std::string::npos);
            train::AdamW<float> adam;
            Trainer plain(test::HostTrainOps(), cpu, adam);
            Trainer fused(test::HostTrainOps(train::AttentionStore::LogSumExp), cpu, adam);
            plain.keepChannelNorms(name.find(" sat") != std::string::npos);
            fused.keepChannelNorms(name.find(" sat") != std::string::npos);
            cpu.setRecompute(false);
            const int64_t B = 2, S = 16;
            const TokenBatch b = TokenBatch::random(c.vocabSize, B, S, 4);
            cpu.parameters().zeroGrad();
            const float want = cpu.forward(b, 4);
            cpu.backward(1.0f);
            plain.zeroGradients();
            fused.zeroGradients();
            QCOMPARE(plain.forwardBackward(b, 1.0f, 4), want);
            const float got = fused.forwardBackward(b, 1.0f, 4);
            QVERIFY2(std::abs(got - want) <= 1e-5f * std::abs(want), fixture);
            // What each holds: one block's probabilities (or, recomputing, the work set's) against its log-sum-exps.
            const int64_t blocks = name.find(" recompute") != std::string::npos ? 1 : c.numLayers;
            QCOMPARE(plain.deviceBytes() - fused.deviceBytes(),
                     uint64_t(4 * blocks * (B * c.numHeads * S * S - B * c.numHeads * S)));
            train::CausalLm<float> view(*model);
            view.setMasking(masking);
            fused.download(view, true);
            for (size_t i = 0; i < cpu.parameters().size(); ++i) {
                const auto &g = view.parameters()[i].grad, &w = cpu.parameters()[i].grad;
                const float scale = std::max(w.cwiseAbs().maxCoeff(), 1e-3f);
                QVERIFY2((g - w).cwiseAbs().maxCoeff() <= 1e-5f * scale,
                         (std::string(fixture) + ": gradient of " + cpu.parameters()[i].name).c_str());
            }
            // The global gradient norm the step clips by (values after AdamW are not compared: a gradient that is
            // zero analytically, as GPT-2's key biases', is rounding noise that AdamW scales to a full step).
            const double gotNorm = fused.step(1e-3, 1.0), wantNorm = train::clipGradNorm(cpu.parameters(), 1.0);
            QVERIFY2(std::abs(gotNorm - wantNorm) <= 1e-5 * wantNorm, fixture);
        }
    }

    // LATHE_GPU_TRAIN_ATTENTION: the fused kernels only where asked for and where they run; a request that is not
    // followed says why (the GPU trainer warns with it) instead of falling back in silence.
    void attentionChoice() {
        using train::AttentionStore;
        const auto choose = [](ComputePrecision p, int64_t headDim, const char *request) {
            return train::gpuAttentionChoice(p, headDim, request);
        };
        for (const char *request : {static_cast<const char *>(nullptr), "", "blocks"}) {
            const train::AttentionChoice c = choose(ComputePrecision::Bf16, 64, request);
            QCOMPARE(c.store, AttentionStore::Probabilities);
            QVERIFY(c.note.empty());
        }
        for (int64_t width : {8, 64, 80, 96}) {
            const train::AttentionChoice c = choose(ComputePrecision::Bf16, width, "fused");
            QCOMPARE(c.store, AttentionStore::LogSumExp);
            QVERIFY(c.note.empty());
        }
        const struct {
            ComputePrecision precision;
            int64_t headDim;
            const char *request, *why;
        } refused[] = {
            {ComputePrecision::Fp32, 64, "fused", "bf16 only (these products are fp32)"},
            {ComputePrecision::Bf16, 128, "fused", "heads are 128 wide"},
            {ComputePrecision::Bf16, 64, "flash", "the values are fused and blocks"},
        };
        for (const auto &r : refused) {
            const train::AttentionChoice c = choose(r.precision, r.headDim, r.request);
            QCOMPARE(c.store, AttentionStore::Probabilities);
            QVERIFY2(c.note.find(r.why) != std::string::npos, c.note.c_str());
            QVERIFY2(c.note.find(std::string("LATHE_GPU_TRAIN_ATTENTION=") + r.request + " ignored") == 0,
                     c.note.c_str());
        }
    }

    // BERT's masked-LM training (tf-bert-mlm and its WordPiece vocabulary), which "auto" now gives the GPU trainer:
    // the CPU run's steps (two accumulated micro-batches each, masked from their own seeds), evaluations (masked
    // from the window's index) and exported bytes; cancelled after a checkpoint and resumed, the same bytes.
    void bertOnTheDevice() {
        nlohmann::json j = job(m_root / "bert-cpu", "cpu");
        j["model"] = test::sourceDir() + "/tests/fixtures/tf-bert-mlm";
        j["data"]["seq_len"] = 32;
        const TrainingResult cpu = run(j);
        j["device"] = "auto";
        j["output"]["dir"] = (m_root / "bert-gpu").string();
        const TrainingResult gpu = run(j);
        QCOMPARE(int(gpu.steps.size()), 8);
        sameRun(gpu, cpu, m_root / "bert-gpu", m_root / "bert-cpu");
        QVERIFY(cancelledAndResumed(j, m_root / "bert-resumed") == exported(m_root / "bert-cpu"));
    }

    // Cancelled after the step-6 checkpoint, then resumed: on the "GPU", and on the CPU from the GPU's checkpoint.
    void resumeFromTheDevicesCheckpoint() {
        const std::string want = exported(m_root / "cuda");
        for (const char *resumeOn : {"cuda", "cpu"}) {
            const fs::path out = m_root / (std::string("resume-") + resumeOn);
            TrainingSpec spec = TrainingSpec::fromJson(job(out, "cuda"));
            int calls = 0;
            QVERIFY_THROWS_EXCEPTION(CancelledError,
                                     runTraining(spec, [&](const Progress &) { return ++calls < 7; }));
            QVERIFY(fs::exists(out / "checkpoint" / "state.json"));
            TrainingSpec again = TrainingSpec::fromJson(job(out, resumeOn));
            again.resume = true;
            const TrainingResult r = runTraining(again);
            QCOMPARE(int(r.steps.size()), 8);
            QCOMPARE(r.device == "cpu", std::string(resumeOn) == "cpu");
            QVERIFY2(exported(out) == want, resumeOn);
            QVERIFY(readTextFile((out / "run.log").string()).find("resumed at step 6") != std::string::npos);
        }
    }

    // The estimate of a run on the GPU: the probe's step is the trainer's, the GPU memory is the trainer's
    // formula, whose buffers part is what the trainer holds after a step, and a run that does not fit the GPU's
    // 2 GiB is refused before anything is created.
    void estimate() {
        nlohmann::json j = job(m_root / "estimate", "cuda");
        const TrainingPreflight pf = preflightTraining(TrainingSpec::fromJson(j));
        QVERIFY2(pf.probe.device.find("CPU (reference ops)") == 0, pf.probe.device.c_str());
        QCOMPARE(pf.estimate.device, pf.probe.device);
        QCOMPARE(pf.estimate.deviceAvailable, uint64_t(2) << 30);
        QVERIFY(pf.estimate.deviceBytes > (uint64_t(512) << 20));
        QVERIFY(pf.estimate.refusal.empty());
        QVERIFY(pf.estimate.summary().find("GPU memory about") != std::string::npos);
        QVERIFY(pf.probe.forwardSeconds > 0 && pf.probe.backwardSeconds >= 0);
        const TrainingPreflight cpu = preflightTraining(TrainingSpec::fromJson(job(m_root / "estimate", "cpu")));
        QCOMPARE(cpu.estimate.deviceBytes, uint64_t(0));
        QVERIFY(cpu.probe.device.empty());
        QVERIFY(cpu.estimate.hostBytes > pf.estimate.hostBytes); // the activations are on the GPU

        // The formula's buffers against the trainer's, at the job's batch, keeping every activation or
        // recomputing: exact, for every family's block (BERT's post-norm block, embedding norm and masked-LM head).
        for (const std::string path : {"/resources/demo/stories260K.bin", "/tests/fixtures/tf-gpt2",
                                       "/tests/fixtures/tf-opt", "/tests/fixtures/tf-phi", "/tests/fixtures/tf-bert-mlm"}) {
            auto m = openModel(test::sourceDir() + path);
            const ModelConfig &c = m->config;
            const int64_t B = 2, S = std::min<int64_t>(48, c.maxPositions);
            // One step of a trainer for `lm` (its recomputation, the channel norms kept when asked), with the
            // attention saving its probabilities and with it saving each row's log-sum-exp (the fused kernels'
            // store): the formula with the trainer's linears' part equals what each holds; `held` and `kinds`
            // receive the first's.
            const auto stepped = [&](train::CausalLm<float> &lm, bool keepNorms, uint64_t &held, uint64_t &kinds) {
                train::MlmMasking masking; // BERT's (unused by a decoder)
                masking.maskId = 3;
                lm.setMasking(masking);
                uint64_t heldBy[2] = {};
                for (const train::AttentionStore store :
                     {train::AttentionStore::Probabilities, train::AttentionStore::LogSumExp}) {
                    train::OpsTrainer<test::HostTrainOps> trainer(test::HostTrainOps(store), lm, train::AdamW<float>());
                    trainer.keepChannelNorms(keepNorms);
                    trainer.zeroGradients();
                    trainer.forwardBackward(TokenBatch::random(c.vocabSize, B, S, 1), 1.0f);
                    heldBy[int(store)] = trainer.deviceBytes();
                    kinds = trainer.linearKindBytes();
                    const train::OpsTrainerMemory formula =
                        train::opsTrainerMemory(c, lm.parameters().count(false), lm.parameters().count(true), B, S,
                                                ComputePrecision::Fp32, lm.recompute(), store, kinds);
                    QCOMPARE(formula.buffers + formula.linearKinds, heldBy[int(store)]);
                    QCOMPARE(formula.total(), train::opsTrainerDeviceBytes(c, lm.parameters().count(false),
                                                                           lm.parameters().count(true), B, S,
                                                                           ComputePrecision::Fp32, lm.recompute(),
                                                                           store, kinds));
                }
                held = heldBy[0];
                QVERIFY(heldBy[1] < held);
            };
            uint64_t held[2] = {}, kinds = 0;
            for (const bool recompute : {false, true}) {
                train::CausalLm<float> lm(*m);
                lm.setRecompute(recompute);
                stepped(lm, false, held[recompute], kinds);
                QCOMPARE(kinds, uint64_t(0)); // plain fine-tuning: nothing besides the parameters
            }
            QVERIFY2(held[1] < held[0], path.c_str());
            // With the recovery method's fixed masks on every block linear: their bytes and one gradient buffer.
            train::CausalLm<float> lm(*m);
            const auto &recovery = dynamic_cast<const FineTuningMethod &>(methodNamed("recovery"));
            recovery.startTraining(*m, MethodParams(recovery.info().params), 1)->prepare(lm);
            uint64_t withMasks = 0;
            stepped(lm, false, withMasks, kinds);
            // The masks (a byte per block-linear weight) and the largest linear's weight gradient.
            uint64_t maskBytes = 0, largest = 0;
            for (const auto &slot : lm.linears()) {
                const uint64_t n = uint64_t(slot.kind->outFeatures() * slot.kind->inFeatures());
                maskBytes += (n + 3) / 4 * 4; // the reference buffers hold whole floats
                largest = std::max(largest, n);
            }
            QCOMPARE(kinds, maskBytes + 4 * largest);
            QVERIFY(withMasks > held[0]);
            // With PST's linears: their masks, and the gradient, W_eff, W~, score and work buffers of the largest.
            train::CausalLm<float> plm(*m);
            const auto &pst = dynamic_cast<const FineTuningMethod &>(methodNamed("pst"));
            pst.startTraining(*m, MethodParams(pst.info().params), 1)->prepare(plm);
            uint64_t withPst = 0;
            stepped(plm, false, withPst, kinds);
            QCOMPARE(kinds, maskBytes + 5 * 4 * largest);
            // A gathered step (SAT's): its index lists, the gathered weight and bias buffers and the channel norms
            // are the trainer's too, counted in both.
            train::CausalLm<float> slm(*m);
            train::BlockSelection sel;
            for (int32_t j = 0; j < int32_t(c.intermediateSize); j += 2)
                sel.mlpChannels.push_back(j);
            if (c.numKvHeads > 1)
                sel.kvGroups = {0};
            for (int l = 0; l < int(c.numLayers); ++l)
                slm.setSelection(l, sel);
            uint64_t gathered = 0;
            stepped(slm, true, gathered, kinds);
            QVERIFY(kinds > 0);
        }
        auto model = openModel(test::sourceDir() + "/resources/demo/stories260K.bin");

        // Too large for the GPU: refused by the estimate, and by the run before it creates anything.
        j["data"]["batch"] = 4000;
        const TrainingSpec bigSpec = TrainingSpec::fromJson(j);
        const RunEstimate big = estimateTrainingRun(bigSpec, *model, planTraining(bigSpec), TrainingProbe{});
        QVERIFY2(big.refusal.find("of GPU memory and") != std::string::npos, big.refusal.c_str());
        try {
            run(j);
            QFAIL("a run larger than the GPU was accepted");
        } catch (const LatheError &e) {
            QVERIFY2(std::string(e.what()).find("does not fit") != std::string::npos, e.what());
        }
        QVERIFY(!fs::exists(m_root / "estimate"));
    }

    // The recovery method (fixed masks) on the "GPU": the CPU run's steps, evaluations and exported bytes, the
    // pruned weights zero in both, and `auto` taking the GPU for it.
    void recoveryOnTheDevice() {
        nlohmann::json cpuJob = job(m_root / "recovery-cpu", "cpu"), gpuJob = job(m_root / "recovery-cuda", "cuda");
        for (nlohmann::json *j : {&cpuJob, &gpuJob}) {
            (*j)["method"] = "recovery";
            (*j)["recovery"] = {{"sparsity", 0.6}};
            (*j)["steps"] = 5;
        }
        const TrainingResult cpu = run(cpuJob), gpu = run(gpuJob);
        sameRun(gpu, cpu, m_root / "recovery-cuda", m_root / "recovery-cpu");
        QVERIFY(fs::exists(m_root / "recovery-cuda" / "run.h5")); // the compact archive, as on the CPU
        auto model = openModel((m_root / "recovery-cuda" / "model").string());
        const TensorInfo *q = model->find(TensorRole::AttnQ, 0, false);
        const std::vector<float> w = model->loadFloat(*q);
        const int64_t zeros = std::count(w.begin(), w.end(), 0.0f); // floor(0.6 n) pruned, still zero
        QCOMPARE(zeros, int64_t(std::floor(0.6 * double(w.size()))));
        gpuJob["device"] = "auto";
        gpuJob["steps"] = 2;
        gpuJob["output"]["dir"] = (m_root / "recovery-auto").string();
        QVERIFY(run(gpuJob).device != "cpu");
    }

    // LoSparse on the "GPU": its linears, the importance's row sums and the zeroing of pruned rows on the trainer,
    // the running scores and the masking on the host: the CPU run's steps, evaluations, kept rows and exported bytes
    // (merged and compact), and a run cancelled after a checkpoint resuming to the same bytes. The official mask
    // (values zeroed at each masking step, rows regrowing in between) needs the zeroing done on the device.
    void losparseOnTheDevice_data() {
        QTest::addColumn<QString>("mask");
        QTest::newRow("persistent") << "persistent";
        QTest::newRow("official") << "official";
    }
    void losparseOnTheDevice() {
        QFETCH(QString, mask);
        const std::string tag = "losparse-" + mask.toStdString();
        nlohmann::json cpuJob = job(m_root / (tag + "-cpu"), "cpu"), gpuJob = job(m_root / (tag + "-cuda"), "cuda");
        for (nlohmann::json *j : {&cpuJob, &gpuJob}) {
            (*j)["method"] = "losparse";
            (*j)["losparse"] = {{"delta_t", 2}, {"initial_warmup", 0.1}, {"final_warmup", 0.5}, {"final_keep", 0.3},
                                {"mask", mask.toStdString()}};
        }
        const TrainingResult cpu = run(cpuJob), gpu = run(gpuJob);
        sameRun(gpu, cpu, m_root / (tag + "-cuda"), m_root / (tag + "-cpu"));
        QCOMPARE(gpu.method.dump(), cpu.method.dump()); // the kept rows of every S
        QVERIFY(cpu.method["sparse_fraction"].get<double>() < 0.5); // the masking ran
        QVERIFY(readTextFile((m_root / (tag + "-cuda") / "model-compact" / "model.safetensors").string()) ==
                readTextFile((m_root / (tag + "-cpu") / "model-compact" / "model.safetensors").string()));
        if (mask != "persistent")
            return;
        QVERIFY(cancelledAndResumed(gpuJob, m_root / "losparse-resumed") == exported(m_root / (tag + "-cuda")));
    }

    // PST on the "GPU": W~, the scores and the mask formed by the trainer's ops at every forward, at the sparsity the
    // method's schedule sets on the host: the CPU run's steps (with the sparsity of each), evaluations and exported
    // bytes, `auto` taking the GPU, and a run cancelled after a checkpoint resuming to the same bytes.
    void pstOnTheDevice() {
        nlohmann::json cpuJob = job(m_root / "pst-cpu", "cpu"), gpuJob = job(m_root / "pst-cuda", "cuda");
        for (nlohmann::json *j : {&cpuJob, &gpuJob}) {
            (*j)["method"] = "pst";
            (*j)["pst"] = {{"final_sparsity", 0.6}, {"rank", 4}, {"mask_rank", 2}};
        }
        const TrainingResult cpu = run(cpuJob), gpu = run(gpuJob);
        sameRun(gpu, cpu, m_root / "pst-cuda", m_root / "pst-cpu");
        QCOMPARE(gpu.method.dump(), cpu.method.dump());
        QCOMPARE(cpu.steps.back().method.value("sparsity", 0.0), 0.6); // the ramp ran to the end
        QVERIFY(fs::exists(m_root / "pst-cuda" / "run.h5")); // the compact archive, as on the CPU
        QVERIFY(cancelledAndResumed(gpuJob, m_root / "pst-resumed") == exported(m_root / "pst-cuda"));
        gpuJob["device"] = "auto";
        gpuJob["steps"] = 2;
        gpuJob["output"]["dir"] = (m_root / "pst-auto").string();
        QVERIFY(run(gpuJob).device != "cpu");
    }

    // SAT on the "GPU": the selections its schedule sets on the host read by the trainer at every forward, the
    // gathered linears, attention on the kept heads, AdamW on the computed rows and columns alone, and the channel
    // norms handed back after each step for the next selection: the CPU run's steps (with the omission of each),
    // evaluations and exported bytes, in the ladder's omitting and dense phases (GPT-2's fused q/k/v and biases:
    // opsTrainerComposition above). With magnitude scores the weights' norms are computed on the
    // "GPU" before each step instead (the host's model does not follow its values): the same run too.
    void satOnTheDevice_data() {
        QTest::addColumn<QString>("scores");
        QTest::newRow("activation") << "activation";
        QTest::newRow("magnitude") << "magnitude";
    }
    void satOnTheDevice() {
        QFETCH(QString, scores);
        const std::string tag = "sat-" + scores.toStdString();
        nlohmann::json cpuJob = job(m_root / (tag + "-cpu"), "cpu"), gpuJob = job(m_root / (tag + "-cuda"), "cuda");
        for (nlohmann::json *j : {&cpuJob, &gpuJob}) {
            (*j)["method"] = "sat";
            (*j)["sat"] = {{"omission", 0.5}, {"hold", 0.5}, {"rungs", 2}, {"scores", scores.toStdString()}};
        }
        const TrainingResult cpu = run(cpuJob), gpu = run(gpuJob);
        sameRun(gpu, cpu, m_root / (tag + "-cuda"), m_root / (tag + "-cpu"));
        QCOMPARE(cpu.steps[1].method.value("omission", 0.0), 0.5); // gathered steps ran
        QCOMPARE(cpu.steps.back().method.value("omission", 1.0), 0.0); // and dense ones
        // The selections followed the weights as trained: the omitted share of a magnitude-scored step is of the
        // scores it computed, so equal shares on both devices mean the same scores.
        QVERIFY(cpu.steps[1].method.value("omitted_activation_share", 0.0) > 0);
    }

    void autoAndRefusals() {
        // auto: plain fine-tuning on the GPU trainer, and every fine-tuning method (SAT with magnitude scores too).
        nlohmann::json j = job(m_root / "auto", "auto");
        j["steps"] = 2;
        QVERIFY(run(j).device != "cpu");
        for (const char *method : {"recovery", "losparse", "pst", "sat"}) {
            j = job(m_root / (std::string("auto-") + method), "auto");
            j["steps"] = 2;
            j["method"] = method;
            if (std::string(method) == "sat")
                j["sat"] = {{"scores", "magnitude"}};
            QVERIFY2(run(j).device != "cpu", method);
        }
        // cuda: a precision the trainer does not run is refused by the spec check.
        j["device"] = "cuda";
        j["precision"] = "fp16";
        j["output"]["dir"] = (m_root / "refused-fp16").string();
        QVERIFY_THROWS_EXCEPTION(LatheError, validateTrainingSpec(TrainingSpec::fromJson(j)));
    }

    // Frozen parameters (trainable: the blocks only) on the "GPU": the CPU run's steps and exported bytes, and a
    // GPU memory estimate without the frozen embedding's gradient and moments.
    void frozenParameters() {
        nlohmann::json cpuJob = job(m_root / "frozen-cpu", "cpu"), gpuJob = job(m_root / "frozen-cuda", "cuda");
        for (nlohmann::json *j : {&cpuJob, &gpuJob}) {
            (*j)["trainable"] = "layers";
            (*j)["steps"] = 4;
        }
        const TrainingResult cpu = run(cpuJob), gpu = run(gpuJob);
        QCOMPARE(gpu.plan.trainableParameters, cpu.plan.trainableParameters);
        QVERIFY(gpu.plan.trainableParameters < gpu.plan.parameters);
        sameRun(gpu, cpu, m_root / "frozen-cuda", m_root / "frozen-cpu");
        gpuJob["output"]["dir"] = (m_root / "frozen-estimate").string();
        const TrainingPreflight frozen = preflightTraining(TrainingSpec::fromJson(gpuJob));
        gpuJob.erase("trainable");
        const TrainingPreflight all = preflightTraining(TrainingSpec::fromJson(gpuJob));
        QCOMPARE(all.estimate.deviceBytes - frozen.estimate.deviceBytes,
                 12 * uint64_t(all.plan.trainableParameters - frozen.plan.trainableParameters));
    }
    // Compression runs (issue 19 item 3): on the "GPU" a run evaluates through its forward pass and SliceGPT runs
    // its engine there, with the CPU's results; the preflight times the GPU's pass and estimates those phases with
    // it.
    void runsOnTheDevice() {
        for (const char *method : {"wanda", "slicegpt"}) {
            const CompressionRunResult cpu = runCompression(compressionSpec(method, "cpu"));
            const CompressionSpec s = compressionSpec(method, "cuda");
            const CompressionRunResult gpu = runCompression(s);
            QCOMPARE(QString::fromStdString(gpu.status), QString("done"));
            // The same engine behind both: the sums differ in order only.
            QVERIFY(std::abs(gpu.densePerplexity - cpu.densePerplexity) < 1e-9 * cpu.densePerplexity);
            QVERIFY(std::abs(gpu.runs[0].perplexity - cpu.runs[0].perplexity) < 1e-9 * cpu.runs[0].perplexity);
            const std::string log = readTextFile((fs::path(s.outputDir) / "run.log").string());
            QVERIFY2(log.find("device: reference GPU") != std::string::npos, log.c_str());
        }
    }

    void preflightTimesTheDevice() {
        for (const char *method : {"wanda", "slicegpt"}) {
            const bool onDevice = std::string(method) == "slicegpt"; // its engine is a service of the device
            const Preflight gpu = preflightCompression(compressionSpec(method, "cuda"));
            QCOMPARE(QString::fromStdString(gpu.probe.device), QString("reference GPU (CPU engine), fp32"));
            QVERIFY(gpu.probe.deviceForwardSeconds > 0 && gpu.probe.devicePrecision == ComputePrecision::Fp32);
            const RunEstimate &e = gpu.estimate;
            QCOMPARE(e.device, gpu.probe.device);
            QCOMPARE(e.deviceAvailable, uint64_t(2) << 30);
            auto model = openModel(compressionSpec(method, "cuda").model);
            const uint64_t signalBytes = onDevice ? uint64_t(8 * 128 * model->config.hiddenSize) * 4 *
                                                    uint64_t(methodNamed(method).info().calibrationCopies)
                                              : 0;
            QCOMPARE(e.deviceBytes, compressionDeviceBytes(*model, 128, ComputePrecision::Fp32, signalBytes));
            bool gpuPhase = false;
            for (const RunEstimate::Phase &ph : e.phases)
                gpuPhase = gpuPhase || ph.name.find("(GPU)") != std::string::npos;
            QCOMPARE(gpuPhase, onDevice);
            const Preflight cpu = preflightCompression(compressionSpec(method, "cpu"));
            QVERIFY(cpu.probe.device.empty() && cpu.estimate.device.empty());
            QCOMPARE(cpu.estimate.deviceBytes, uint64_t(0));
            QCOMPARE(cpu.estimate.hostBytes - e.hostBytes, signalBytes); // SliceGPT's signals live on the device

            // The phases from the GPU's numbers where the run takes the GPU, the CPU's otherwise: 16 windows of
            // 128 tokens at the probe's length.
            ForwardProbe probe = gpu.probe;
            probe.buildSeconds = 2;
            probe.forwardSeconds = 1;
            probe.deviceBuildSeconds = 0.5;
            probe.deviceForwardSeconds = 0.001;
            CompressionSpec s = compressionSpec(method, "cuda");
            for (const char *device : {"cuda", "auto", "cpu"}) {
                s.device = device;
                const RunEstimate r = estimateCompressionRun(s, *model, probe, 20000, 20000);
                const bool gpuRun = std::string(device) != "cpu";
                QCOMPARE(r.phases[1].name, std::string("evaluation"));
                QCOMPARE(r.phases[1].seconds, gpuRun ? 0.5 + 16 * 0.001 : 2.0 + 16 * 1.0);
                const double passes = 8 * methodNamed(method).info().calibrationPasses;
                QCOMPARE(r.phases[2].seconds,
                         2.0 + 6.5 * forwardFlops(model->config, 256) / forwardFlops(model->config, 128) +
                             passes * (gpuRun && onDevice ? 0.001 : 1.0));
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestDeviceTraining)
#include "tst_devicetraining.moc"
