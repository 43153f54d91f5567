// The fused attention's launches for gpu::TrainOps (train::AttentionStore::LogSumExp); the kernels and what they
// do are in trainflashkernels.cuh.

#include "trainflashkernels.cuh"
#include "trainopskernels.cuh"

namespace lathe::gpu {

namespace {

// Dynamic shared memory above the default 48 KiB has to be asked for, per kernel (and device).
template <class K> void allowSharedBytes(K kernel, size_t bytes) {
    LATHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

} // namespace

void TrainOps::fusedAttentionForward(const float *q, const float *k, const float *v, const train::AttentionDims &d,
                                     float *ctx, float *lse) {
    const Timed timed(*this, __func__);
    const FlashDims f = flashDims(d);
    if (d.batch * d.seq == 0)
        return;
    withHeadWidth(d.headDim, [&](auto width) {
        constexpr int D = decltype(width)::value;
        constexpr size_t bytes = forwardSharedBytes<D>();
        allowSharedBytes(flashForwardKernel<D>, bytes);
        flashForwardKernel<D><<<queryTileGrid(f), kFlashThreads, bytes>>>(q, k, v, f, ctx, lse);
        checkLaunch();
    });
}

void TrainOps::fusedAttentionBackward(const float *dctx, const float *q, const float *k, const float *v,
                                      const float *ctx, const train::AttentionDims &d, const float *lse, float *dq,
                                      float *dk, float *dv) {
    const Timed timed(*this, __func__);
    const FlashDims f = flashDims(d);
    const int64_t pairs = d.batch * d.seq * d.heads;
    if (pairs == 0)
        return;
    m_dP.ensure(size_t(pairs) * sizeof(float));
    float *delta = m_dP.as<float>();
    flashDeltaKernel<<<deltaBlocks(f), kDeltaThreads>>>(dctx, ctx, f, delta);
    checkLaunch();
    withHeadWidth(d.headDim, [&](auto width) {
        constexpr int D = decltype(width)::value;
        constexpr size_t bytes = backwardSharedBytes<D>();
        allowSharedBytes(flashBackwardKeysKernel<D>, bytes);
        allowSharedBytes(flashBackwardQueriesKernel<D>, bytes);
        flashBackwardKeysKernel<D><<<keyTileGrid(f), kFlashThreads, bytes>>>(q, k, v, dctx, lse, delta, f, dk, dv);
        checkLaunch();
        flashBackwardQueriesKernel<D><<<queryTileGrid(f), kFlashThreads, bytes>>>(q, k, v, dctx, lse, delta, f, dq);
        checkLaunch();
    });
}

} // namespace lathe::gpu
