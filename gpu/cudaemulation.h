#pragma once

// A CPU emulation of the CUDA that the GPU backend's kernels use, so that tests run them, unchanged, on a machine
// without a GPU (the project's CI): tst_flashattention the fused attention kernels (trainflashkernels.cuh), and
// tst_emulatedgpu the whole backend, with cudaruntimeemulation.h's runtime, cuBLAS and cuSOLVER. A launch runs the
// grid's blocks one after another; a block's threads are fibers on the calling thread (each with its own stack), run in
// thread order until each reaches a barrier or its end. __syncthreads waits for every thread of the block that has not
// ended, __syncwarp for the warp's; a barrier some thread can never reach (a deadlock on a GPU) stops the program with
// a message instead of hanging it. Shuffles and ballots go through the warp's exchange slots between two warp barriers;
// atomics are plain (one thread runs at a time). wmma's warp-collective fragments are held whole by lane 0 (fill, load,
// mma in fp32 from bf16 operands, and store): the other lanes' copies are never read, since the kernels never index
// fragments, and the kernels' __syncwarp before any read of a store makes it visible. Shared memory is filled with 0xFF
// bytes (NaN as fp32 and as bf16) before each block, so a kernel that reads what it did not write shows NaN in its
// results. A launch outside CUDA's limits (grid, block size, shared memory) runs nothing and leaves the error
// cudaGetLastError reports.
//
// What it checks: the kernels' indexing, tiling, masking, padding and arithmetic, the barriers (a read that lacks
// the barrier it needs finds the later threads' values not yet written, deterministically: threads run in order),
// wmma's alignment rules, and that no kernel reads past its dynamic shared memory (exactly the launch's bytes,
// under AddressSanitizer in CI, told of every fiber switch). What it cannot: timing, occupancy, the real fragment
// layouts, bank conflicts, and races between threads or blocks that run concurrently on a GPU.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <memory>
#include <type_traits>
#include <vector>

#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define LATHE_EMU_ASAN 1
#endif

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// A kernel's `__shared__` arrays: one per kernel, which the threads of the block that runs share (blocks run one
// after another).
#define __shared__ static
#define LATHE_SHARED_BYTES(name) unsigned char *name = lathe::emu::current().shared.data()

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct EmulatedIndex {
    unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmulatedIndex threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::isinf;
using std::isnan;
struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

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
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return emulatedBf16ToFloat(h); }
// fp16 (the forward kernels' third compute type, which the trainer does not use): IEEE binary16, rounded to nearest
// even, through the compiler's _Float16.
struct __half {
    _Float16 value;
};
inline __half __float2half_rn(float f) { return {static_cast<_Float16>(f)}; }
inline float __half2float(__half h) { return static_cast<float>(h.value); }

inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
// Threads run one at a time on one OS thread: an atomic is a plain read-modify-write.
template <class T> T atomicAdd(T *address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
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

// An execution context: on x86-64 a stack pointer, switched by saving the callee-saved registers on the stack
// (a switch is a few instructions: no system call, which ucontext's swapcontext makes for the signal mask);
// elsewhere ucontext.
#if defined(__x86_64__)
struct Context {
    void *sp = nullptr;
};
// Saves rbp, rbx, r12-r15 on the current stack and its pointer in *from, then resumes `to` (the SysV ABI's
// callee-saved integer registers; the fibers leave MXCSR and the x87 control word as they found them).
[[maybe_unused]] __attribute__((naked, noinline)) static void switchStacks(void ** /*from*/, void * /*to*/) {
    asm volatile("pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
                 "movq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n\t"
                 "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret\n\t");
}
inline void switchContext(Context &from, Context &to) { switchStacks(&from.sp, to.sp); }
// A context that starts entry() (which never returns) on the given stack: below a null return address (so that
// entry finds the stack as after a call, 16-byte aligned), entry's address for the switch's ret, and six zeros for
// the registers it pops.
inline void makeContext(Context &c, char *stack, size_t bytes, void (*entry)()) {
    void **sp = reinterpret_cast<void **>(reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15));
    *--sp = nullptr;
    *--sp = reinterpret_cast<void *>(entry);
    for (int i = 0; i < 6; ++i)
        *--sp = nullptr;
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc{};
};
inline void switchContext(Context &from, Context &to) { swapcontext(&from.uc, &to.uc); }
inline void makeContext(Context &c, char *stack, size_t bytes, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

// A block's thread: its context and stack, and where it stands.
struct Fiber {
    enum State { Runnable, AtBlockBarrier, AtWarpBarrier, Ended };
    Context context;
    State state = Runnable;
};

struct Block {
    // 256 KiB of stack per thread: the flash kernels' fragments are 1 KiB each in the emulation, and
    // AddressSanitizer's redzones grow the frames.
    static constexpr size_t kStackBytes = size_t(256) << 10;
    explicit Block(unsigned threads, size_t sharedBytes)
        : threads(threads), fibers(threads), exchange(threads), shared(sharedBytes) {
        // The stacks stay allocated for the next launches (a fresh 64 MiB per launch is page faults every time).
        static thread_local std::unique_ptr<char[]> cache;
        static thread_local unsigned cached = 0;
        if (cached < threads) {
            cache.reset(new char[size_t(threads) * kStackBytes]);
            cached = threads;
        }
        stacks = cache.get();
    }
    char *stackOf(unsigned t) const { return stacks + size_t(t) * kStackBytes; }
    unsigned threads;
    std::vector<Fiber> fibers;
    char *stacks;
    Context scheduler;
    unsigned running = 0;   // the fiber that runs, or ran last
    // AddressSanitizer's bookkeeping: the scheduler's fake stack, and its stack's bounds (learned on the first switch).
    void *fakeStack = nullptr;
    const void *schedulerStack = nullptr;
    size_t schedulerStackBytes = 0;
    const void *kernel = nullptr;
    void (*call)(const void *) = nullptr; // runs *kernel
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

// Switches from the running fiber back to the scheduler, the fiber now in `state`.
inline void yieldAs(Fiber::State state) {
    Block &b = current();
    Fiber &f = b.fibers[b.running];
    f.state = state;
#ifdef LATHE_EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(state == Fiber::Ended ? nullptr : &fake, b.schedulerStack, b.schedulerStackBytes);
#endif
    switchContext(f.context, b.scheduler);
#ifdef LATHE_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

inline void fiberMain() {
    Block &b = current();
#ifdef LATHE_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b.schedulerStack, &b.schedulerStackBytes);
#endif
    b.call(b.kernel);
    yieldAs(Fiber::Ended); // never resumed
}

// Runs the block's threads until every one has ended: each runnable fiber in thread order until it waits or ends,
// then the barriers that every thread concerned has reached let their threads go. Aborts on a deadlock.
inline void runBlock(Block &b) {
    for (unsigned t = 0; t < b.threads; ++t) {
        makeContext(b.fibers[t].context, b.stackOf(t), Block::kStackBytes, fiberMain);
        b.fibers[t].state = Fiber::Runnable;
    }
    for (;;) {
        for (unsigned t = 0; t < b.threads; ++t) {
            if (b.fibers[t].state != Fiber::Runnable)
                continue;
            b.running = t;
            threadIdx = {t, 0, 0};
#ifdef LATHE_EMU_ASAN
            __sanitizer_start_switch_fiber(&b.fakeStack, b.stackOf(t), Block::kStackBytes);
#endif
            switchContext(b.scheduler, b.fibers[t].context);
#ifdef LATHE_EMU_ASAN
            __sanitizer_finish_switch_fiber(b.fakeStack, nullptr, nullptr);
#endif
        }
        bool released = false, live = false, allAtBlock = true;
        for (unsigned w = 0; w * 32 < b.threads; ++w) {
            const unsigned end = std::min(b.threads, 32 * w + 32);
            bool warpLive = false, allAtWarp = true;
            for (unsigned t = 32 * w; t < end; ++t) {
                const Fiber::State st = b.fibers[t].state;
                if (st == Fiber::Ended)
                    continue;
                warpLive = live = true;
                allAtWarp = allAtWarp && st == Fiber::AtWarpBarrier;
                allAtBlock = allAtBlock && st == Fiber::AtBlockBarrier;
            }
            if (warpLive && allAtWarp) {
                for (unsigned t = 32 * w; t < end; ++t)
                    if (b.fibers[t].state == Fiber::AtWarpBarrier)
                        b.fibers[t].state = Fiber::Runnable;
                released = true;
            }
        }
        if (!live)
            return;
        if (!released && allAtBlock) {
            for (Fiber &f : b.fibers)
                if (f.state == Fiber::AtBlockBarrier)
                    f.state = Fiber::Runnable;
            released = true;
        }
        if (!released) {
            std::fprintf(stderr, "CUDA emulation: deadlock in block (%u, %u, %u): threads wait at barriers that "
                                 "others of their block or warp never reach\n",
                         blockIdx.x, blockIdx.y, blockIdx.z);
            std::abort();
        }
    }
}

// What the last launch found wrong with its configuration (cudaGetLastError's: cudaruntimeemulation.h), 0 when none.
inline thread_local int t_launchError = 0;

// Runs kernel() as every thread of every block of `grid` (blocks in order, x fastest).
template <class F> void launch(dim3 grid, unsigned threads, size_t sharedBytes, F kernel) {
    // CUDA's limits (sm_90): cudaErrorInvalidConfiguration (9) from the launch, nothing run.
    if (grid.x == 0 || grid.x > 0x7fffffffu || grid.y == 0 || grid.y > 65535 || grid.z == 0 || grid.z > 65535 ||
        threads == 0 || threads > 1024 || sharedBytes > 227 * 1024) {
        t_launchError = 9;
        return;
    }
    Block b(threads, sharedBytes);
    b.kernel = &kernel;
    b.call = [](const void *k) { (*static_cast<const F *>(k))(); };
    Block *outer = t_block;
    t_block = &b;
    blockDim = dim3(threads);
    gridDim = grid;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::memset(b.shared.data(), 0xff, b.shared.size());
                blockIdx = {bx, by, bz};
                runBlock(b);
            }
    t_block = outer;
}

// `kernel<<<grid, block, shared, stream>>>(args)` in the emulated GPU trainer test's sources is rewritten by
// tests/CMakeLists.txt to `Launch(grid, block, shared, stream).with(<calls kernel>)(args)`: the arguments are
// evaluated once, and every thread calls the kernel with its own copies, as on a GPU. Blocks are one-dimensional.
struct Launch {
    dim3 grid, block;
    size_t shared;
    Launch(dim3 grid, dim3 block, size_t shared = 0, const void * /*stream*/ = nullptr)
        : grid(grid), block(block), shared(shared) {}
    template <class K> auto with(K kernel) const {
        return [grid = grid, block = block, shared = shared, kernel](auto &&...args) {
            if (block.y != 1 || block.z != 1) {
                t_launchError = 9;
                return;
            }
            launch(grid, block.x, shared, [&] { kernel(args...); });
        };
    }
};

} // namespace lathe::emu

inline void __syncthreads() { lathe::emu::yieldAs(lathe::emu::Fiber::AtBlockBarrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { lathe::emu::yieldAs(lathe::emu::Fiber::AtWarpBarrier); }
inline float __shfl_xor_sync(unsigned, float v, int laneMask) {
    lathe::emu::Block &b = lathe::emu::current();
    const unsigned base = threadIdx.x / 32 * 32;
    b.exchange[threadIdx.x] = v;
    __syncwarp();
    const float other = b.exchange[base + (lathe::emu::lane() ^ unsigned(laneMask))];
    __syncwarp();
    return other;
}

inline unsigned __ballot_sync(unsigned, int predicate) {
    lathe::emu::Block &b = lathe::emu::current();
    const unsigned base = threadIdx.x / 32 * 32;
    b.exchange[threadIdx.x] = predicate ? 1.0f : 0.0f;
    __syncwarp();
    unsigned bits = 0;
    for (unsigned l = 0; l < 32 && base + l < b.threads; ++l)
        if (b.exchange[base + l] != 0.0f)
            bits |= 1u << l;
    __syncwarp();
    return bits;
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
    if (lathe::emu::lane() != 0)
        return;
    for (float &e : f.x)
        e = v;
}
template <class Use, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, L> &f, const __nv_bfloat16 *p, unsigned ldm) {
    lathe::emu::requireFragmentMemory(p, ldm, 2);
    if (lathe::emu::lane() != 0)
        return;
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c)
            f.x[r * 16 + c] = emulatedBf16ToFloat(std::is_same_v<L, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    lathe::emu::requireFragmentMemory(p, ldm, 4);
    if (lathe::emu::lane() != 0)
        return;
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
    if (lathe::emu::lane() != 0)
        return;
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
