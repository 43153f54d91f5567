#pragma once

// A stand-in GPU for tests without one: a platform whose one device trains with train::OpsTrainer on the CPU
// reference ops (hosttrainops.h), runs the forward pass on the CPU engine and SliceGPT on the CPU's engine. So the
// GPU paths of runs, preflights and dialogs run here, with the CPU's results (tst_devicetraining,
// tst_devicedialogs). Register it with registerGpuPlatform before anything asks for the GPUs.

#include "engine/deviceforward.h"
#include "engine/transformer.h"
#include "hosttrainops.h"
#include "methods/slicegptengine.h"
#include "numeric/backend.h"
#include "numeric/cpukernels.h"
#include "train/opstrainer.h"
#include "train/devicetraining.h"

#include <memory>
#include <string>
#include <vector>

namespace lathe::test {

class ReferenceTrainingService final : public train::DeviceTrainingService {
public:
    std::unique_ptr<train::DeviceTrainer> create(const train::CausalLm<float> &model,
                                                 const train::AdamW<float> &optimizer,
                                                 ComputePrecision precision) override {
        require(precision == ComputePrecision::Fp32, "reference GPU", "the reference ops multiply in fp32 only");
        return std::make_unique<train::OpsTrainer<test::HostTrainOps>>(test::HostTrainOps(), model, optimizer);
    }
};

// The GPU forward pass's contract on the CPU engine: what a compression run evaluates with, and what its
// preflight times, on a GPU.
class ReferenceForward final : public DeviceForward {
public:
    explicit ReferenceForward(const Model &model) : m_engine(model) {}
    std::string describe() const override { return "reference GPU (CPU engine), fp32"; }
    Mat logits(const TokenBatch &batch) override { return m_engine.forward(batch); }
    double sumNextTokenNll(const TokenBatch &batch, int64_t *count) override {
        const Mat l = m_engine.forward(batch);
        double sum = 0;
        *count = 0;
        for (int64_t r = 0; r + 1 < int64_t(batch.tokens.size()); ++r) {
            if ((r + 1) % batch.seq == 0)
                continue;
            const float *row = l.data() + r * l.cols();
            sum += cpu::cpuKernels().logSumExp(row, l.cols()) - double(row[batch.tokens[size_t(r + 1)]]);
            ++*count;
        }
        return sum;
    }
    void run(const TokenBatch &batch) override { (void)m_engine.forward(batch); }
    double gemmPeakGflops(int64_t) override { return 1; }

private:
    Transformer m_engine;
};

class ReferenceForwardService final : public DeviceForwardService {
public:
    std::unique_ptr<DeviceForward> create(const Model &model, const DeviceForwardOptions &) override {
        return std::make_unique<ReferenceForward>(model);
    }
};

// SliceGPT's engine "on the device": the CPU's.
class ReferenceSliceGptService final : public SliceGptEngineService {
public:
    std::unique_ptr<SliceGptEngine> create(const Model &model, const CalibrationSet &calibration,
                                           const SliceGptEngineOptions &options) override {
        return makeCpuSliceGptEngine(model, calibration, options);
    }
};

// The CPU backend's solvers, plus the training, forward and SliceGPT services.
class ReferenceBackend final : public ComputeBackend {
public:
    std::string name() const override { return "cuda"; }
    DeviceInfo device() const override { return {"reference GPU (CPU ops)", uint64_t(2) << 30, 9, 0, 0}; }
    void dequantize(DType type, const void *src, size_t elems, float *dst) override {
        m_cpu->dequantize(type, src, elems, dst);
    }
    void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                        std::vector<double> *vectors) override {
        m_cpu->symmetricEigen(a, n, values, vectors);
    }
    std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) override {
        return m_cpu->singularValues(a, rows, cols);
    }
    void *service(const std::string &key) override {
        if (key == train::DeviceTrainingService::kServiceKey)
            return &m_training;
        if (key == DeviceForwardService::kServiceKey)
            return &m_forward;
        if (key == SliceGptEngineService::kServiceKey)
            return &m_slicegpt;
        return nullptr;
    }

private:
    std::unique_ptr<ComputeBackend> m_cpu = makeCpuBackend();
    ReferenceTrainingService m_training;
    ReferenceForwardService m_forward;
    ReferenceSliceGptService m_slicegpt;
};

class ReferencePlatform final : public GpuPlatform {
public:
    std::vector<DeviceInfo> devices(std::string *) const override { return {ReferenceBackend().device()}; }
    std::unique_ptr<ComputeBackend> backend(int index) const override {
        require(index == 0, "reference GPU", "one device only");
        return std::make_unique<ReferenceBackend>();
    }
};

} // namespace lathe::test
