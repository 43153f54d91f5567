// The whole-step checks of trainopscheck.h: the GPU trainer's step against CausalLm<float> + clipGradNorm + AdamW
// on every family and method (the op-by-op checks are in trainopscheck.cpp).

#include "trainopscheck.h"

#include "methods/registry.h"
#include "methods/trainingmethod.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "model/syntheticmodel.h"
#include "numeric/backend.h"
#include "train/adamw.h"
#include "train/causallm.h"
#include "train/devicetraining.h"
#include "train/linearkinds.h"
#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace lathe::gpu {

GpuCheck runTrainStepCheck(ComputeBackend &device, const Model &model, const std::string &name, bool bf16,
                           const std::string &methodName) {
    auto *service = deviceService<train::DeviceTrainingService>(device);
    if (!service)
        throw LatheError("the device has no training service");
    // The method's linears on every block linear, in every model the check builds; BERT's masking (half the tokens
    // chosen: every kind of choice happens in a 24-token window), which the trainer reads from the model.
    const auto withMethod = [&](train::CausalLm<float> &lm) {
        if (lm.maskedLm()) {
            train::MlmMasking masking;
            masking.maskId = 3;
            masking.rate = 0.5;
            lm.setMasking(masking);
        }
        if (methodName.empty())
            return;
        const auto &method = dynamic_cast<const FineTuningMethod &>(methodNamed(methodName));
        const std::unique_ptr<TrainingMethodRun> run =
            method.startTraining(model, MethodParams(method.info().params), 1);
        run->prepare(lm);
        // Low rank + sparse: every third row of the first S pruned, so that the row mask takes part.
        if (auto *k = dynamic_cast<train::LowRankSparseLinear<float> *>(lm.linears().front().kind)) {
            std::vector<uint8_t> mask(size_t(k->outFeatures()), 1);
            for (size_t r = 0; r < mask.size(); r += 3)
                mask[r] = 0;
            k->setRowMask(mask);
        }
        // PST: half of every matrix pruned, so that the mask takes part.
        for (const auto &slot : lm.linears())
            if (auto *k = dynamic_cast<train::PstLinear<float> *>(slot.kind))
                k->setSparsity(0.5);
        // A method that scores channels (SAT): a gathered step in every block (every other MLP channel, the last KV
        // group left out).
        if (run->readsChannelNorms())
            for (int l = 0; l < int(model.config.numLayers); ++l) {
                train::BlockSelection sel;
                for (int32_t j = l % 2; j < int32_t(model.config.intermediateSize); j += 2)
                    sel.mlpChannels.push_back(j);
                for (int32_t grp = 0; grp + 1 < int32_t(model.config.numKvHeads); ++grp)
                    sel.kvGroups.push_back(grp);
                lm.setSelection(l, sel);
            }
    };
    train::CausalLm<float> cpu(model), fromGpu(model), after(model);
    for (train::CausalLm<float> *lm : {&cpu, &fromGpu, &after})
        withMethod(*lm);
    const TokenBatch batch = TokenBatch::random(model.config.vocabSize, 2, 24, 11);
    const train::AdamWOptions options; // weight decay 0.1: the decayed and undecayed paths both run
    auto trainer = service->create(cpu, train::AdamW<float>(options),
                                   bf16 ? ComputePrecision::Bf16 : ComputePrecision::Fp32);
    trainer->keepChannelNorms(true);
    trainer->zeroGradients();
    const float gpuLoss = trainer->forwardBackward(batch);
    const float cpuLoss = cpu.forward(batch);
    cpu.backward();
    trainer->download(fromGpu, true);
    // SAT's scores: the channel norms of the forward, mapped back to the full numbering (-1 where skipped).
    trainer->downloadChannelNorms(fromGpu);
    double channelErr = 0;
    for (int l = 0; l < int(model.config.numLayers); ++l) {
        const auto &got = fromGpu.channelNorms(l), &want = cpu.channelNorms(l);
        if (got.mlp.size() != want.mlp.size() || got.kvGroups.size() != want.kvGroups.size()) {
            channelErr = INFINITY;
            continue;
        }
        // Relative to the block's largest norm of the kind (a channel that ReLU nearly always zeroes has a norm
        // near zero that bf16 rounding moves by more than itself); a skipped entry (-1) must be skipped on both.
        const auto compare = [&](const std::vector<float> &a, const std::vector<float> &b) {
            double scale = 1e-30;
            for (const float x : b)
                scale = std::max(scale, double(x));
            for (size_t i = 0; i < a.size(); ++i)
                channelErr = std::max(channelErr, (b[i] < 0) != (a[i] < 0)
                                                      ? double(INFINITY)
                                                      : std::abs(double(a[i]) - double(b[i])) / scale);
        };
        compare(got.mlp, want.mlp);
        compare(got.kvGroups, want.kvGroups);
    }
    const double lossErr = std::abs(double(gpuLoss) - double(cpuLoss)) / std::abs(double(cpuLoss));
    // Per parameter: max |difference| over max |CPU value|; the worst one. A gradient that is zero analytically
    // (OPT's key bias: softmax ignores a constant added to a row of scores) holds rounding noise on both sides (4e-10
    // in PyTorch's, against a largest gradient of 0.2 in tf-opt): gradients are measured against at least 1e-3 of
    // the model's largest one, below every gradient that is not zero in the decoder fixtures' PyTorch references
    // (the smallest: 2.2e-3 of the largest, phi's key bias).
    const auto worst = [](const train::ParameterSet<float> &got, const train::ParameterSet<float> &want, bool grads,
                          std::string *which) {
        double err = 0, floor = 0;
        for (size_t i = 0; grads && i < want.size(); ++i)
            if (want[i].grad.size())
                floor = std::max(floor, 1e-3 * double(want[i].grad.cwiseAbs().maxCoeff()));
        for (size_t i = 0; i < want.size(); ++i) {
            const train::Matrix<float> &g = grads ? got[i].grad : got[i].value;
            const train::Matrix<float> &w = grads ? want[i].grad : want[i].value;
            if (w.size() == 0 && g.size() == 0) // a frozen parameter's gradient (PST freezes the checkpoint's)
                continue;
            if (g.size() != w.size()) {
                *which = want[i].name + " (sizes differ)";
                return double(INFINITY);
            }
            const double scale = std::max({double(w.cwiseAbs().maxCoeff()), floor, 1e-30});
            const double diff = double((g - w).cwiseAbs().maxCoeff());
            const double e = std::isnan(diff) ? INFINITY : diff / scale;
            if (e >= err) {
                err = e;
                *which = want[i].name;
            }
        }
        return err;
    };
    std::string gradWorst, stepWorst;
    const double gradErr = worst(fromGpu.parameters(), cpu.parameters(), true, &gradWorst);
    // The step from the same (the GPU's) gradients on both sides, clipped: the norm is well above 1e-3.
    const double lr = 1e-3, maxNorm = 1e-3;
    // A gathered step updates only the rows and columns its forward computed (Parameter::activeRows): the CPU's
    // forward marked them on its own parameters.
    for (size_t i = 0; i < cpu.parameters().size(); ++i) {
        fromGpu.parameters()[i].activeRows = cpu.parameters()[i].activeRows;
        fromGpu.parameters()[i].activeCols = cpu.parameters()[i].activeCols;
    }
    const double cpuNorm = train::clipGradNorm(fromGpu.parameters(), maxNorm);
    train::AdamW<float> adam(options);
    adam.step(fromGpu.parameters(), lr);
    const double gpuNorm = trainer->step(lr, maxNorm);
    trainer->download(after, false);
    const double stepErr = worst(after.parameters(), fromGpu.parameters(), false, &stepWorst);
    // SAT's magnitude scores: the weight norms of the updated values (rows, columns, the output projection's column
    // groups of every dense block linear) against the host's of the same values, relative to each one's largest.
    const std::vector<train::WeightNormRequest> requests = train::everyWeightNormRequest(after);
    double normsErr = 0;
    {
        const auto got = trainer->weightNorms(requests), want = train::weightNorms(after.parameters(), requests);
        for (size_t i = 0; i < want.size(); ++i) {
            const float largest = *std::max_element(want[i].begin(), want[i].end());
            for (size_t j = 0; j < want[i].size(); ++j)
                normsErr = std::max(normsErr, got[i].size() != want[i].size()
                                                  ? double(INFINITY)
                                                  : std::abs(double(got[i][j]) - double(want[i][j])) /
                                                        std::max(double(largest), 1e-30));
        }
    }
    const double normErr = std::abs(gpuNorm - cpuNorm) / cpuNorm;
    // Evaluation (forward only) of the updated model against the CPU's forward on the same values.
    const float gpuEval = trainer->loss(batch), cpuEval = after.forward(batch);
    const double evalErr = std::abs(double(gpuEval) - double(cpuEval)) / std::abs(double(cpuEval));
    // A checkpoint: a second trainer made from the downloaded values and moments must continue exactly as the
    // first one does (two accumulated micro-batches and a step each).
    train::AdamW<float> state(options);
    trainer->downloadOptimizer(state);
    auto resumed = service->create(after, state, bf16 ? ComputePrecision::Bf16 : ComputePrecision::Fp32);
    const TokenBatch micro1 = TokenBatch::random(model.config.vocabSize, 1, 24, 12),
                     micro2 = TokenBatch::random(model.config.vocabSize, 1, 24, 13);
    for (train::DeviceTrainer *t : {trainer.get(), resumed.get()}) {
        t->zeroGradients();
        t->forwardBackward(micro1, 0.5f);
        t->forwardBackward(micro2, 0.5f);
        t->step(lr, 0);
    }
    train::CausalLm<float> first(model), second(model);
    withMethod(first);
    withMethod(second);
    trainer->download(first, true);
    resumed->download(second, true);
    std::string resumeWorst;
    const bool resumeExact = worst(second.parameters(), first.parameters(), false, &resumeWorst) == 0 &&
                             worst(second.parameters(), first.parameters(), true, &resumeWorst) == 0;
    // With ReLU (OPT) in bf16 the gate flips where the operands' rounding moves a pre-activation across zero: each
    // flip moves a row of fc1's gradient by one token's whole contribution, a quarter of the largest value on
    // tf-opt's 48 tokens (0.26 measured on an H200, the smooth activations' 0.01). The fp32 check holds its wiring
    // to 1e-4.
    const std::string activation =
        model.config.activation.empty() ? defaultActivation(model.config.family) : model.config.activation;
    const double lossTol = bf16 ? 2e-2 : 1e-5, gradTol = bf16 ? (activation == "relu" ? 0.5 : 1e-1) : 1e-4,
                 stepTol = 1e-6;
    GpuCheck c;
    c.name = name;
    // clipGradNorm sums each parameter's squares in fp32 (Eigen), the GPU in fp64: 1e-5 covers the fp32 sums.
    c.passed = lossErr <= lossTol && gradErr <= gradTol && stepErr <= stepTol && normErr <= 1e-5 &&
               evalErr <= lossTol && resumeExact && channelErr <= lossTol && normsErr <= 1e-5;
    c.error = gradErr;
    c.tolerance = gradTol;
    c.detail = "loss " + std::to_string(gpuLoss) + " vs " + std::to_string(cpuLoss) + " (" +
               std::to_string(lossErr) + ", tolerance " + std::to_string(lossTol) + "); worst gradient " + gradWorst +
               "; step " + std::to_string(stepErr) + " (" + stepWorst + ", tolerance 1e-6); gradient norm " +
               std::to_string(gpuNorm) + " vs " + std::to_string(cpuNorm) + "; evaluation after the step " +
               std::to_string(evalErr) + "; channel norms " + std::to_string(channelErr) + "; weight norms " +
               std::to_string(normsErr) + " (tolerance 1e-5); resumed trainer " +
               (resumeExact ? "bit-identical" : "differs at " + resumeWorst) +
               "; " + trainer->describe();
    return c;
}

std::vector<GpuCheck> runTrainStepChecks(ComputeBackend &device, const std::string &fixtures) {
    std::vector<GpuCheck> out;
    const auto guarded = [&](const std::string &name, const std::function<void()> &fn) { runGuarded(out, name, fn); };
    // A whole training step against CausalLm + clipGradNorm + AdamW: tied head (llama), q/k/v biases (qwen2),
    // learned positions, LayerNorm, GELU and the fused q/k/v product (gpt2), ReLU and offset positions (opt), the
    // parallel block with partial RoPE and a biased head (phi), post-norm blocks with bidirectional attention,
    // segment embeddings and the masked-LM head (bert-mlm); in fp32, in bf16, and in bf16 with the fused attention
    // kernels (LATHE_GPU_TRAIN_ATTENTION=fused while the trainer is made; the fixtures' 8-wide heads padded to 16).
    // Then the fused kernels at an unpadded head width (the tiny synthetic Llama's 16) and under SAT's gathered
    // step (fewer heads than the model's). A fused check fails if the trainer did not take the fused kernels.
    const auto stepCheck = [&](const std::string &name, const std::function<std::unique_ptr<Model>()> &open,
                               bool bf16, bool fused, const std::string &method) {
        guarded(name, [&] {
            const ScopedEnvironment env("LATHE_GPU_TRAIN_ATTENTION", fused ? "fused" : "blocks");
            const std::unique_ptr<Model> m = open();
            GpuCheck c = runTrainStepCheck(device, *m, name, bf16, method);
            if (fused && c.detail.find("fused attention") == std::string::npos) {
                c.passed = false;
                c.detail = "the trainer did not run the fused attention: " + c.detail;
            }
            out.push_back(std::move(c));
        });
    };
    const auto fixture = [&](const std::string &family) {
        return [&fixtures, family] { return openModel(fixtures + "/tf-" + family); };
    };
    for (const char *family : {"llama", "qwen2", "gpt2", "opt", "phi", "bert-mlm"})
        for (const char *variant : {"fp32", "bf16", "bf16 fused"}) {
            const std::string v = variant;
            stepCheck(std::string("train step ") + family + " " + v, fixture(family), v != "fp32",
                      v.find("fused") != std::string::npos, "");
        }
    stepCheck("train step tiny bf16 fused", [] { return makeSyntheticModel(*syntheticShape("tiny")); }, true, true,
              "");
    stepCheck("train step llama sat bf16 fused", fixture("llama"), true, true, "sat");
    // The same with the methods the GPU trainer runs: recovery's fixed masks (the masked weight gradient, zeros
    // kept through AdamW), LoSparse's low-rank + sparse linears (W_eff, the gradients of L, R and S's rows) and
    // PST's (W~, the scores, the mask selected on the device at 50% sparsity, the gradients of U, V, A, B, R, C),
    // and SAT's gathered steps (half the MLP channels and a KV group left out; the channel norms).
    for (const char *method : {"recovery", "losparse", "pst", "sat"}) {
        const std::string name = std::string("train step llama ") + method + " fp32";
        guarded(name, [&] {
            auto m = openModel(fixtures + "/tf-llama");
            out.push_back(runTrainStepCheck(device, *m, name, false, method));
        });
    }
    return out;
}

} // namespace lathe::gpu
