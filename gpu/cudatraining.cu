// The training step on the GPU (core/train/devicetraining.h): train::OpsTrainer (core/train/opstrainer.h, the
// composition CausalLm's CPU reference checks in tst_trainmodel) on the CUDA ops of gpu/trainops.h, whose results
// `lathe-cli check-gpu` compares with the CPU op by op and for a whole step.

#include "cudatraining.h"

#include "cudacheck.h"
#include "devicememory.h"
#include "gpucontext.h"
#include "trainops.h"

#include "train/opstrainer.h"

#include <spdlog/spdlog.h>

#include <string>

namespace lathe::gpu {

namespace {

// gpu::TrainOps with what OpsTrainer asks of a backend beyond the ops: buffers, copies and the device.
class CudaTrainOps : public TrainOps {
public:
    using Buffer = DeviceMemory;
    CudaTrainOps(GpuContext &ctx, ComputePrecision precision, train::AttentionStore store)
        : TrainOps((ctx.activate(), ctx.blas()), precision, store), m_ctx(&ctx) {}
    void activate() const { m_ctx->activate(); }
    std::string deviceName() const { return m_ctx->info().label(); }
    void upload(float *to, const float *host, int64_t n) const {
        LATHE_CUDA_CHECK(cudaMemcpy(to, host, size_t(n) * sizeof(float), cudaMemcpyHostToDevice));
    }
    void uploadBytes(void *to, const void *host, size_t n) const {
        LATHE_CUDA_CHECK(cudaMemcpy(to, host, n, cudaMemcpyHostToDevice));
    }
    void download(float *host, const float *from, int64_t n) const {
        LATHE_CUDA_CHECK(cudaMemcpy(host, from, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost));
    }
    void zero(float *x, int64_t n) { LATHE_CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float))); }
    void copy(float *to, const float *from, int64_t n) {
        LATHE_CUDA_CHECK(cudaMemcpyAsync(to, from, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    void copyColumns(float *to, int64_t toStride, const float *from, int64_t fromStride, int64_t rows, int64_t cols) {
        LATHE_CUDA_CHECK(cudaMemcpy2DAsync(to, size_t(toStride) * sizeof(float), from,
                                           size_t(fromStride) * sizeof(float), size_t(cols) * sizeof(float),
                                           size_t(rows), cudaMemcpyDeviceToDevice));
    }
    void synchronize() const { LATHE_CUDA_CHECK(cudaDeviceSynchronize()); }

private:
    GpuContext *m_ctx;
};

} // namespace

std::unique_ptr<train::DeviceTrainer> makeCudaTrainer(GpuContext &ctx, const train::CausalLm<float> &model,
                                                      const train::AdamW<float> &optimizer,
                                                      ComputePrecision precision) {
    const train::AttentionChoice attention = train::gpuAttentionChoice(precision, model.config().headDim);
    if (!attention.note.empty())
        spdlog::warn("GPU training: {}", attention.note);
    return std::make_unique<train::OpsTrainer<CudaTrainOps>>(CudaTrainOps(ctx, precision, attention.store), model,
                                                             optimizer);
}

} // namespace lathe::gpu
