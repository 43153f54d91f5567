#pragma once

#include <cstdint>
#include <functional>

namespace lathe {

// Runs fn(begin, end) over [0, n) split into contiguous ranges on up to `threads` (0 = one per core) short-lived
// threads, the calling thread taking the first range. Work of fewer than `grain` items runs inline. Plain
// threads rather than OpenMP: OpenMP's spinning workers and OpenBLAS's spinning workers fight over the cores and
// halved the forward pass's speed on 2 cores.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)> &fn,
                 int threads = 0);

int hardwareThreads();

} // namespace lathe
