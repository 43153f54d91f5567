#include "base/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace lathe {

int hardwareThreads() {
    static const int n = std::max(1, int(std::thread::hardware_concurrency()));
    return n;
}

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &fn, int threads) {
    if (n <= 0)
        return;
    int t = threads > 0 ? threads : hardwareThreads();
    t = int(std::min<int64_t>(t, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1))));
    if (t <= 1) {
        fn(0, n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(size_t(t - 1));
    const int64_t step = (n + t - 1) / t;
    for (int i = 1; i < t; ++i) {
        const int64_t b = i * step, e = std::min(n, b + step);
        if (b < e)
            pool.emplace_back([&fn, b, e] { fn(b, e); });
    }
    fn(0, std::min(n, step));
    for (auto &th : pool)
        th.join();
}

} // namespace lathe
