#pragma once

// A CPU emulation of the little of CUDA that gpu/trainflashkernels.cuh uses, so that tst_flashattention runs those
// kernels, unchanged, on a machine without a GPU (the project's CI). A launch runs the grid's blocks one after
// another on blockDim std::threads: __syncthreads and __syncwarp are std::barriers of the block's or the warp's
// threads, __shfl_xor_sync goes through the warp's exchange slots between two warp barriers, and wmma's
// warp-collective fragments are emulated by every lane holding the whole 16x16 tile (fill, load and mma in every
// lane, in fp32 from bf16 operands; store by lane 0 only, which the kernels' __syncwarp before any read makes
// visible). Shared memory is filled with 0xFF bytes (NaN as fp32 and as bf16) before each block, so a kernel that
// reads what it did not write shows NaN in its results.
//
// What it checks: the kernels' indexing, tiling, masking, padding and arithmetic, the barriers a read needs (a
// missing one shows as a race here too, though not reliably), wmma's alignment rules, and that no kernel reads
// past its shared memory (exactly the launch's bytes, under AddressSanitizer in CI). What it cannot: timing,
// occupancy, the real fragment layouts (the kernels never index fragments) and bank conflicts.

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(n)
#define LATHE_SHARED_BYTES(name) unsigned char *name = lathe::emu::current().shared.data()

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct EmulatedIndex {
    unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmulatedIndex threadIdx, blockIdx;
inline thread_local dim3 blockDim;

inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline float __expf(float x) { return std::exp(x); }

// bf16: the upper half of an fp32, rounded to nearest even (NaN kept a NaN).
struct __nv_bfloat16 {
    uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f))
        return {uint16_t(0x7fc0)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {uint16_t(u >> 16)};
}
inline float emulatedBf16ToFloat(__nv_bfloat16 h) {
    const uint32_t u = uint32_t(h.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

namespace lathe::emu {

// Dynamic shared memory: exactly the launch's bytes (so that AddressSanitizer catches a kernel reading past them),
// aligned to 128 bytes as `extern __shared__ __align__(128)` is.
struct SharedBytes {
    explicit SharedBytes(size_t n) : bytes(n), p(static_cast<unsigned char *>(::operator new(std::max<size_t>(n, 1),
                                                                                             std::align_val_t(128)))) {}
    ~SharedBytes() { ::operator delete(p, std::align_val_t(128)); }
    SharedBytes(const SharedBytes &) = delete;
    SharedBytes &operator=(const SharedBytes &) = delete;
    unsigned char *data() const { return p; }
    size_t size() const { return bytes; }
    size_t bytes;
    unsigned char *p;
};

struct Block {
    explicit Block(unsigned threads, size_t sharedBytes)
        : threads(threads), block(threads), exchange(threads), shared(sharedBytes) {
        for (unsigned w = 0; w < (threads + 31) / 32; ++w)
            warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - 32 * w)));
    }
    unsigned threads;
    std::barrier<> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<float> exchange;
    SharedBytes shared;
};

// What wmma requires of a fragment's memory (CUDA C++ Programming Guide, "Warp Matrix Functions"): a 256-bit
// aligned pointer, and a leading dimension that is a multiple of 16 bytes. A kernel that breaks it stops the test.
inline void requireFragmentMemory(const void *p, unsigned ldm, size_t elementBytes) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * elementBytes) % 16 != 0) {
        std::fprintf(stderr, "wmma: fragment memory %p with leading dimension %u is not 256-bit aligned or its "
                             "rows not a multiple of 16 bytes\n", p, ldm);
        std::abort();
    }
}
inline thread_local Block *t_block = nullptr;
inline Block &current() { return *t_block; }
inline unsigned lane() { return threadIdx.x % 32; }

// Runs kernel() as every thread of every block of `grid` (blocks in order, x fastest).
template <class F> void launch(dim3 grid, unsigned threads, size_t sharedBytes, F kernel) {
    Block b(threads, sharedBytes);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&b, &kernel, grid, threads, t] {
            t_block = &b;
            threadIdx = {t, 0, 0};
            blockDim = dim3(threads);
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        if (t == 0)
                            std::memset(b.shared.data(), 0xff, b.shared.size());
                        b.block.arrive_and_wait();
                        blockIdx = {bx, by, bz};
                        kernel();
                        b.block.arrive_and_wait();
                    }
        });
    for (std::thread &t : pool)
        t.join();
}

} // namespace lathe::emu

inline void __syncthreads() { lathe::emu::current().block.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { lathe::emu::current().warps[threadIdx.x / 32]->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int laneMask) {
    lathe::emu::Block &b = lathe::emu::current();
    const unsigned base = threadIdx.x / 32 * 32;
    b.exchange[threadIdx.x] = v;
    __syncwarp();
    const float other = b.exchange[base + (lathe::emu::lane() ^ unsigned(laneMask))];
    __syncwarp();
    return other;
}

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// Every lane's copy of the whole tile, element (r, c) at x[r * 16 + c].
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    float x[256];
};

template <class Use, class T, class L> void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
    for (float &e : f.x)
        e = v;
}
template <class Use, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, L> &f, const __nv_bfloat16 *p, unsigned ldm) {
    lathe::emu::requireFragmentMemory(p, ldm, 2);
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c)
            f.x[r * 16 + c] = emulatedBf16ToFloat(std::is_same_v<L, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    lathe::emu::requireFragmentMemory(p, ldm, 4);
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c)
            f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    lathe::emu::requireFragmentMemory(p, ldm, 4);
    if (lathe::emu::lane() != 0)
        return;
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c)
            (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
    float out[256];
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 16; ++n) {
            float s = c.x[r * 16 + n];
            for (int k = 0; k < 16; ++k)
                s += a.x[r * 16 + k] * b.x[k * 16 + n];
            out[r * 16 + n] = s;
        }
    std::memcpy(d.x, out, sizeof out);
}

} // namespace nvcuda::wmma
