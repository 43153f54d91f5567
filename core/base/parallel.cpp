#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace lathe {

int hardwareThreads() {
    static const int n = std::max(1, int(std::thread::hardware_concurrency()));
    return n;
}

namespace {

// A spin-wait hint to the core (it lets a hyper-threaded sibling run and saves power).
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Set on a thread while it runs a part of a parallelFor: a nested call runs inline instead of oversubscribing.
thread_local bool t_inParallelPart = false;

struct PartScope {
    bool saved = t_inParallelPart;
    PartScope() { t_inParallelPart = true; }
    ~PartScope() { t_inParallelPart = saved; }
};

// One job at a time on hardwareThreads() - 1 persistent workers, the caller claiming parts as they do. The
// training step makes a few thousand parallel calls of well under a millisecond each (norms, softmax rows,
// activations), where starting a thread per call cost more than the work it split. Between jobs a worker spins for
// at most 50 microseconds, then sleeps on a condition variable: long enough to catch the step's next call, short
// enough that an idle pool does not hold a core (BLAS's own threads, outside the engine's split scopes, lose at
// most that much of one after each parallel call).
class WorkerPool {
public:
    // Never destroyed: a job thread still running while the program exits (a GUI job) must not find it gone; its
    // workers sleep until the process ends.
    static WorkerPool &instance() {
        static WorkerPool *pool = new WorkerPool(hardwareThreads() - 1);
        return *pool;
    }

    int workers() const { return int(m_threads.size()); }

    // Runs fn over `parts` contiguous ranges of [0, n), `step` items each, the caller taking parts too; false when
    // another thread holds the pool (that caller then starts its own threads). The first exception a part throws
    // is rethrown here once every part has ended.
    bool tryRun(int64_t n, int64_t step, int parts, const std::function<void(int64_t, int64_t)> &fn) {
        std::unique_lock job(m_jobMutex, std::try_to_lock);
        if (!job.owns_lock())
            return false;
        uint64_t generation;
        {
            std::lock_guard lock(m_mutex);
            m_fn = &fn;
            m_n = n;
            m_step = step;
            m_parts = parts;
            m_nextPart = 0;
            m_pending = parts;
            m_error = nullptr;
            generation = ++m_generation;
        }
        m_wake.notify_all();
        runParts(generation);
        spinWhile([&] { return m_pending.load(std::memory_order_acquire) != 0; });
        std::unique_lock lock(m_mutex);
        m_done.wait(lock, [&] { return m_pending == 0; });
        m_fn = nullptr;
        if (m_error)
            std::rethrow_exception(std::exchange(m_error, nullptr));
        return true;
    }

private:
    explicit WorkerPool(int workers) {
        for (int i = 0; i < workers; ++i)
            m_threads.emplace_back([this] { workerLoop(); });
    }

    // Spins while `busy` holds, for at most kSpin: the step's calls come a few microseconds apart, and a worker
    // sleeping on the condition variable wakes tens of microseconds after the notification, by which time the
    // caller has taken its part too.
    template <class F> static void spinWhile(F &&busy) {
        constexpr auto kSpin = std::chrono::microseconds(50);
        const auto start = std::chrono::steady_clock::now();
        while (busy()) {
            for (int i = 0; i < 64; ++i)
                cpuRelax();
            if (std::chrono::steady_clock::now() - start > kSpin)
                return;
        }
    }

    void workerLoop() {
        uint64_t seen = 0;
        for (;;) {
            spinWhile([&] { return m_generation.load(std::memory_order_acquire) == seen; });
            {
                std::unique_lock lock(m_mutex);
                m_wake.wait(lock, [&] { return m_generation != seen; });
                seen = m_generation;
            }
            runParts(seen);
        }
    }

    // Claims parts of job `generation` under the lock until none is left (a worker that woke late for an ended job
    // claims nothing), runs each outside it.
    void runParts(uint64_t generation) {
        const PartScope scope;
        for (;;) {
            int64_t b, e;
            {
                std::lock_guard lock(m_mutex);
                if (m_generation != generation || m_nextPart >= m_parts)
                    return;
                const int part = m_nextPart++;
                b = part * m_step;
                e = std::min(m_n, b + m_step);
            }
            if (b < e) {
                try {
                    (*m_fn)(b, e);
                } catch (...) {
                    std::lock_guard lock(m_mutex);
                    if (!m_error)
                        m_error = std::current_exception();
                }
            }
            std::lock_guard lock(m_mutex);
            if (--m_pending == 0)
                m_done.notify_one();
        }
    }

    std::vector<std::thread> m_threads;
    std::mutex m_jobMutex; // held by the caller for a whole job
    std::mutex m_mutex;    // guards everything below
    std::condition_variable m_wake, m_done;
    const std::function<void(int64_t, int64_t)> *m_fn = nullptr;
    int64_t m_n = 0, m_step = 0;
    int m_parts = 0, m_nextPart = 0;
    std::atomic<int> m_pending = 0;          // written under m_mutex, read by spinning threads without it
    std::atomic<uint64_t> m_generation = 0;
    std::exception_ptr m_error;
};

} // namespace

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &fn, int threads) {
    if (n <= 0)
        return;
    int t = threads > 0 ? threads : hardwareThreads();
    t = int(std::min<int64_t>(t, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1))));
    if (t <= 1 || t_inParallelPart) {
        fn(0, n);
        return;
    }
    const int64_t step = (n + t - 1) / t;
    WorkerPool &pool = WorkerPool::instance();
    if (t <= pool.workers() + 1 && pool.tryRun(n, step, t, fn))
        return;
    // More ranges than the pool has threads, or the pool busy with another caller's job: threads of our own, with
    // the same contract.
    std::exception_ptr error;
    std::mutex errorMutex;
    auto part = [&](int64_t b, int64_t e) {
        const PartScope scope;
        try {
            fn(b, e);
        } catch (...) {
            std::lock_guard lock(errorMutex);
            if (!error)
                error = std::current_exception();
        }
    };
    std::vector<std::thread> extra;
    extra.reserve(size_t(t - 1));
    for (int i = 1; i < t; ++i) {
        const int64_t b = i * step, e = std::min(n, b + step);
        if (b < e)
            extra.emplace_back(part, b, e);
    }
    part(0, std::min(n, step));
    for (auto &th : extra)
        th.join();
    if (error)
        std::rethrow_exception(error);
}

} // namespace lathe
