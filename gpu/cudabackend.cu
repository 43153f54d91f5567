// CUDA implementation of ComputeBackend. Dequantization runs one thread per block of the storage format, using the
// same block functions as the CPU reference (core/quantblocks.h), so results are bit-identical.

#include "cudabackend.h"
#include "cudacheck.h"

#include "../core/backend.h"
#include "../core/quantblocks.h"

#include <cstring>
#include <memory>

namespace lathe::gpu {

namespace {

template <int Kind>
__global__ void dequantKernel(const uint8_t *src, float *dst, size_t blocks, uint32_t blockElems, uint32_t blockBytes) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= blocks)
        return;
    const uint8_t *b = src + i * blockBytes;
    float *y = dst + i * blockElems;
    switch (Kind) {
    case int(DType::F16): y[0] = quant::rdHalf(b); break;
    case int(DType::BF16): y[0] = bf16ToFloat(uint16_t(b[0] | (uint16_t(b[1]) << 8))); break;
    case int(DType::Q4_0): quant::blockQ4_0(b, y); break;
    case int(DType::Q4_1): quant::blockQ4_1(b, y); break;
    case int(DType::Q5_0): quant::blockQ5_0(b, y); break;
    case int(DType::Q5_1): quant::blockQ5_1(b, y); break;
    case int(DType::Q8_0): quant::blockQ8_0(b, y); break;
    case int(DType::Q4_K): quant::blockQ4_K(b, y); break;
    case int(DType::Q5_K): quant::blockQ5_K(b, y); break;
    case int(DType::Q6_K): quant::blockQ6_K(b, y); break;
    default: break;
    }
}

// Device buffer owned for the duration of one call.
struct DeviceBuffer {
    void *ptr = nullptr;
    explicit DeviceBuffer(size_t bytes) { LATHE_CUDA_CHECK(cudaMalloc(&ptr, bytes)); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

class CudaBackend final : public ComputeBackend {
public:
    explicit CudaBackend(int device) : m_device(device) {
        LATHE_CUDA_CHECK(cudaGetDeviceProperties(&m_props, device));
    }
    std::string name() const override { return "cuda"; }
    DeviceInfo device() const override {
        return {m_props.name, uint64_t(m_props.totalGlobalMem), m_props.major, m_props.minor};
    }

    void dequantize(DType type, const void *src, size_t elems, float *dst) override {
        LATHE_CUDA_CHECK(cudaSetDevice(m_device));
        const DTypeInfo &info = dtypeInfo(type);
        const size_t inBytes = *dtypeBytes(type, elems);
        if (type == DType::F32) {
            std::memcpy(dst, src, inBytes);
            return;
        }
        DeviceBuffer dIn(inBytes), dOut(elems * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(dIn.ptr, src, inBytes, cudaMemcpyHostToDevice));
        const size_t blocks = elems / info.blockElems;
        const unsigned threads = 256;
        const unsigned grid = unsigned((blocks + threads - 1) / threads);
        auto *in = static_cast<const uint8_t *>(dIn.ptr);
        auto *out = static_cast<float *>(dOut.ptr);
        switch (type) {
#define LATHE_CASE(T)                                                                                                  \
    case DType::T:                                                                                                     \
        dequantKernel<int(DType::T)><<<grid, threads>>>(in, out, blocks, info.blockElems, info.blockBytes);            \
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
        LATHE_CUDA_CHECK(cudaMemcpy(dst, dOut.ptr, elems * sizeof(float), cudaMemcpyDeviceToHost));
    }

private:
    int m_device;
    cudaDeviceProp m_props{};
};

std::unique_ptr<ComputeBackend> makeCudaBackend(std::string *whyNot) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (whyNot)
            *whyNot = e != cudaSuccess ? std::string("no CUDA driver or device (") + cudaGetErrorString(e) + ")"
                                       : std::string("no CUDA device");
        cudaGetLastError(); // clear the sticky error so later calls are not confused
        return nullptr;
    }
    try {
        return std::make_unique<CudaBackend>(0);
    } catch (const LatheError &err) {
        if (whyNot)
            *whyNot = err.what();
        return nullptr;
    }
}

} // namespace

void registerCudaBackend() { setGpuBackendFactory(&makeCudaBackend); }

} // namespace lathe::gpu
