// CUDA implementation of ComputeBackend. Dequantization runs one thread per block of the storage format, using the
// same block functions as the CPU reference (core/quantblocks.h), so results are bit-identical.

#include "cudabackend.h"
#include "cudacheck.h"
#include "cudaforward.h"
#include "cudaslicegpt.h"
#include "cudatraining.h"
#include "devicememory.h"
#include "gpucontext.h"

#include "engine/deviceforward.h"
#include "methods/slicegptengine.h"
#include "train/devicetraining.h"

#include "numeric/backend.h"
#include "numeric/linalg.h"
#include "numeric/quantblocks.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace lathe::gpu {

namespace {

template <DType Kind>
__global__ void dequantKernel(const uint8_t *src, float *dst, size_t blocks, uint32_t blockElems, uint32_t blockBytes) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= blocks)
        return;
    const uint8_t *b = src + i * blockBytes;
    float *y = dst + i * blockElems;
    switch (Kind) {
    case DType::F16: y[0] = quant::rdHalf(b); break;
    case DType::BF16: y[0] = bf16ToFloat(uint16_t(b[0] | (uint16_t(b[1]) << 8))); break;
    case DType::Q4_0: quant::blockQ4_0(b, y); break;
    case DType::Q4_1: quant::blockQ4_1(b, y); break;
    case DType::Q5_0: quant::blockQ5_0(b, y); break;
    case DType::Q5_1: quant::blockQ5_1(b, y); break;
    case DType::Q8_0: quant::blockQ8_0(b, y); break;
    case DType::Q4_K: quant::blockQ4_K(b, y); break;
    case DType::Q5_K: quant::blockQ5_K(b, y); break;
    case DType::Q6_K: quant::blockQ6_K(b, y); break;
    default: break;
    }
}

// The forward pass and SliceGPT's engine as services of a GPU's backend: they run on its context.
class ForwardService final : public DeviceForwardService {
public:
    explicit ForwardService(GpuContext &ctx) : m_ctx(ctx) {}
    std::unique_ptr<DeviceForward> create(const Model &model, const DeviceForwardOptions &options) override {
        return makeCudaForward(m_ctx, model, options);
    }

private:
    GpuContext &m_ctx;
};

class SliceGptService final : public SliceGptEngineService {
public:
    explicit SliceGptService(GpuContext &ctx) : m_ctx(ctx) {}
    std::unique_ptr<SliceGptEngine> create(const Model &model, const CalibrationSet &calibration,
                                           const SliceGptEngineOptions &options) override {
        return makeCudaSliceGptEngine(m_ctx, model, calibration, options);
    }

private:
    GpuContext &m_ctx;
};

class TrainingService final : public train::DeviceTrainingService {
public:
    explicit TrainingService(GpuContext &ctx) : m_ctx(ctx) {}
    std::unique_ptr<train::DeviceTrainer> create(const train::CausalLm<float> &model,
                                                 const train::AdamW<float> &optimizer,
                                                 ComputePrecision precision) override {
        return makeCudaTrainer(m_ctx, model, optimizer, precision);
    }

private:
    GpuContext &m_ctx;
};

class CudaBackend final : public ComputeBackend {
public:
    explicit CudaBackend(GpuContext &ctx) : m_ctx(ctx), m_forward(ctx), m_sliceGpt(ctx), m_training(ctx) {}
    std::string name() const override { return "cuda"; }
    DeviceInfo device() const override { return m_ctx.info(); }
    void *service(const std::string &key) override {
        if (key == DeviceForwardService::kServiceKey)
            return static_cast<DeviceForwardService *>(&m_forward);
        if (key == SliceGptEngineService::kServiceKey)
            return static_cast<SliceGptEngineService *>(&m_sliceGpt);
        if (key == train::DeviceTrainingService::kServiceKey)
            return static_cast<train::DeviceTrainingService *>(&m_training);
        return nullptr;
    }

    void dequantize(DType type, const void *src, size_t elems, float *dst) override {
        m_ctx.activate();
        const DTypeInfo &info = dtypeInfo(type);
        const size_t inBytes = *dtypeBytes(type, elems);
        if (type == DType::F32) {
            std::memcpy(dst, src, inBytes);
            return;
        }
        DeviceMemory dIn(inBytes), dOut(elems * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(dIn.as(), src, inBytes, cudaMemcpyHostToDevice));
        const size_t blocks = elems / info.blockElems;
        const unsigned threads = 256;
        const unsigned grid = unsigned((blocks + threads - 1) / threads);
        auto *in = static_cast<const uint8_t *>(dIn.as());
        auto *out = static_cast<float *>(dOut.as());
        switch (type) {
#define LATHE_CASE(T)                                                                                                  \
    case DType::T:                                                                                                     \
        dequantKernel<DType::T><<<grid, threads>>>(in, out, blocks, info.blockElems, info.blockBytes);                 \
        break;
            LATHE_CASE(F16)
            LATHE_CASE(BF16)
            LATHE_CASE(Q4_0)
            LATHE_CASE(Q4_1)
            LATHE_CASE(Q5_0)
            LATHE_CASE(Q5_1)
            LATHE_CASE(Q8_0)
            LATHE_CASE(Q4_K)
            LATHE_CASE(Q5_K)
            LATHE_CASE(Q6_K)
#undef LATHE_CASE
        default:
            throw LatheError(std::string("CUDA dequantize: type ") + dtypeName(type) + " is not supported on the GPU");
        }
        LATHE_CUDA_CHECK(cudaGetLastError());
        LATHE_CUDA_CHECK(cudaMemcpy(dst, dOut.as(), elems * sizeof(float), cudaMemcpyDeviceToHost));
    }

    void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                        std::vector<double> *vectors) override {
        m_ctx.activate();
        require(n > 0 && n < 46341, "cuSOLVER dsyevd", "matrix size " + std::to_string(n) + " is out of range");
        cusolverDnHandle_t h = m_ctx.solver();
        const size_t bytes = size_t(n * n) * sizeof(double);
        DeviceMemory dA(bytes), dW(size_t(n) * sizeof(double)), dInfo(sizeof(int));
        LATHE_CUDA_CHECK(cudaMemcpy(dA.as(), a, bytes, cudaMemcpyHostToDevice));
        // The lower triangle of the row-major input is the upper triangle of the column-major matrix cuSOLVER sees.
        const cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
        const cublasFillMode_t uplo = CUBLAS_FILL_MODE_UPPER;
        int lwork = 0;
        LATHE_CUDA_CHECK(cusolverDnDsyevd_bufferSize(h, jobz, uplo, int(n), dA.as<double>(), int(n), dW.as<double>(), &lwork));
        DeviceMemory work(size_t(std::max(lwork, 1)) * sizeof(double));
        LATHE_CUDA_CHECK(cusolverDnDsyevd(h, jobz, uplo, int(n), dA.as<double>(), int(n), dW.as<double>(),
                                          work.as<double>(), lwork, dInfo.as<int>()));
        checkInfo(dInfo, "dsyevd", n, n);
        std::vector<double> w(static_cast<size_t>(n));
        LATHE_CUDA_CHECK(cudaMemcpy(w.data(), dW.as(), w.size() * sizeof(double), cudaMemcpyDeviceToHost));
        values.assign(w.rbegin(), w.rend()); // ascending from cuSOLVER, descending by contract
        if (vectors) {
            std::vector<double> v(size_t(n * n));
            LATHE_CUDA_CHECK(cudaMemcpy(v.data(), dA.as(), bytes, cudaMemcpyDeviceToHost));
            eigenvectorsDescendingRowMajor(v.data(), n, *vectors);
        }
    }

    std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) override {
        m_ctx.activate();
        // The row-major (rows x cols) input is the column-major (cols x rows) A^T, same singular values. gesvd
        // wants m >= n, so a tall input is transposed on the device first.
        int64_t m = cols, n = rows;
        const size_t elems = size_t(rows * cols);
        DeviceMemory dA(elems * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(dA.as(), a, elems * sizeof(float), cudaMemcpyHostToDevice));
        if (m < n) {
            DeviceMemory t(elems * sizeof(float));
            const float one = 1.0f, zero = 0.0f;
            // Column-major C (rows x cols) = (column-major (cols x rows) A^T)^T.
            LATHE_CUDA_CHECK(cublasSgeam(m_ctx.blas(), CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(cols), &one, dA.as<float>(),
                                         int(cols), &zero, t.as<float>(), int(rows), t.as<float>(), int(rows)));
            dA = std::move(t);
            std::swap(m, n);
        }
        cusolverDnHandle_t h = m_ctx.solver();
        DeviceMemory dS(size_t(n) * sizeof(float)), dInfo(sizeof(int));
        int lwork = 0;
        LATHE_CUDA_CHECK(cusolverDnSgesvd_bufferSize(h, int(m), int(n), &lwork));
        DeviceMemory work(size_t(std::max(lwork, 1)) * sizeof(float)), rwork(size_t(n) * sizeof(float));
        LATHE_CUDA_CHECK(cusolverDnSgesvd(h, 'N', 'N', int(m), int(n), dA.as<float>(), int(m), dS.as<float>(), nullptr,
                                          int(m), nullptr, int(n), work.as<float>(), lwork, rwork.as<float>(),
                                          dInfo.as<int>()));
        checkInfo(dInfo, "sgesvd", rows, cols);
        std::vector<float> s(static_cast<size_t>(n));
        LATHE_CUDA_CHECK(cudaMemcpy(s.data(), dS.as(), s.size() * sizeof(float), cudaMemcpyDeviceToHost));
        return std::vector<double>(s.begin(), s.end());
    }

private:
    static void checkInfo(const DeviceMemory &info, const char *routine, int64_t rows, int64_t cols) {
        int v = 0;
        LATHE_CUDA_CHECK(cudaMemcpy(&v, info.as(), sizeof(int), cudaMemcpyDeviceToHost));
        if (v != 0)
            throw LatheError(std::string("cuSOLVER ") + routine + " failed on a " + std::to_string(rows) + " x " +
                                 std::to_string(cols) + " matrix (info " + std::to_string(v) + ")",
                             v > 0 ? "the iteration did not converge: check the matrix for NaN/Inf values"
                                   : "an argument was invalid (a bug: please report it)");
    }

    GpuContext &m_ctx;
    ForwardService m_forward;
    SliceGptService m_sliceGpt;
    TrainingService m_training;
};

// The GPUs of this machine for core (numeric/backend.h): one context per device, shared by every backend of it.
class CudaPlatform final : public GpuPlatform {
public:
    std::vector<DeviceInfo> devices(std::string *whyNone) const override {
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess || count == 0) {
            if (whyNone)
                *whyNone = e != cudaSuccess ? std::string("no CUDA driver or device (") + cudaGetErrorString(e) + ")"
                                            : std::string("no CUDA device");
            cudaGetLastError(); // clear the sticky error so later calls are not confused
            return {};
        }
        std::vector<DeviceInfo> out;
        std::string why;
        for (int i = 0; i < count; ++i) {
            try {
                out.push_back(GpuContext::forDevice(i).info());
            } catch (const LatheError &err) {
                why = err.what();
            }
        }
        if (out.empty() && whyNone)
            *whyNone = why;
        return out;
    }
    std::unique_ptr<ComputeBackend> backend(int index) const override {
        return std::make_unique<CudaBackend>(GpuContext::forDevice(index));
    }
};

} // namespace

const GpuPlatform &cudaPlatform() {
    static const CudaPlatform platform;
    return platform;
}

void registerCudaBackend() { registerGpuPlatform(&cudaPlatform()); }

} // namespace lathe::gpu
