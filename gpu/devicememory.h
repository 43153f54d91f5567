#pragma once

// Device memory owned by one object (cudaMalloc / cudaFree), move-only; or, by resizePinned, page-locked host memory
// (cudaMallocHost), which the same copies reach with cudaMemcpyDefault. Only included by .cu files in gpu/.

#include "cudacheck.h"

#include <cstddef>
#include <string>
#include <utility>

namespace lathe::gpu {

class DeviceMemory {
public:
    DeviceMemory() = default;
    explicit DeviceMemory(size_t bytes) { resize(bytes); }
    ~DeviceMemory() { release(); }
    DeviceMemory(DeviceMemory &&o) noexcept
        : m_ptr(std::exchange(o.m_ptr, nullptr)), m_bytes(std::exchange(o.m_bytes, 0)),
          m_pinned(std::exchange(o.m_pinned, false)) {}
    DeviceMemory &operator=(DeviceMemory &&o) noexcept {
        if (this != &o) {
            release();
            m_ptr = std::exchange(o.m_ptr, nullptr);
            m_bytes = std::exchange(o.m_bytes, 0);
            m_pinned = std::exchange(o.m_pinned, false);
        }
        return *this;
    }
    DeviceMemory(const DeviceMemory &) = delete;
    DeviceMemory &operator=(const DeviceMemory &) = delete;

    // Discards the contents; no-op when the buffer is already at least `bytes` large.
    void ensure(size_t bytes) {
        if (bytes > m_bytes)
            resize(bytes);
    }
    // Out of device memory is an expected failure: a LatheError that says how much was asked and is free, with a
    // hint; other failures go through LATHE_CUDA_CHECK.
    void resize(size_t bytes) {
        release();
        if (!bytes)
            return;
        const cudaError_t e = cudaMalloc(&m_ptr, bytes);
        if (e == cudaErrorMemoryAllocation) {
            m_ptr = nullptr;
            cudaGetLastError(); // not sticky: the device stays usable
            size_t free = 0, total = 0;
            cudaMemGetInfo(&free, &total);
            throw LatheError("out of GPU memory: " + mib(bytes) + " more were needed, " + mib(free) + " of " +
                                 mib(total) + " are free",
                             "free the GPU of other work, use a smaller batch or sequence length (for training: "
                             "data.batch with optimizer.accumulate for the same step, data.seq_len, or recompute), "
                             "or run on the CPU (--device cpu)");
        }
        LATHE_CUDA_CHECK(e);
        m_bytes = bytes;
    }
    void resizePinned(size_t bytes) {
        release();
        if (bytes)
            LATHE_CUDA_CHECK(cudaMallocHost(&m_ptr, bytes));
        m_bytes = bytes;
        m_pinned = true;
    }
    void release() {
        if (m_ptr)
            m_pinned ? cudaFreeHost(m_ptr) : cudaFree(m_ptr);
        m_ptr = nullptr;
        m_bytes = 0;
        m_pinned = false;
    }
    bool pinnedHost() const { return m_pinned; }

    template <typename T = void> T *as() const { return static_cast<T *>(m_ptr); }
    size_t bytes() const { return m_bytes; }
    bool empty() const { return m_ptr == nullptr; }

private:
    static std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

    void *m_ptr = nullptr;
    size_t m_bytes = 0;
    bool m_pinned = false;
};

} // namespace lathe::gpu
