#pragma once

#include <cstdint>
#include <functional>

namespace lathe {

// Runs fn(begin, end) over [0, n) split into up to `threads` (0 = one per core) contiguous ranges of equal size,
// at least `grain` items each (fewer items run inline), and returns when all have run. The ranges go to a pool of
// one worker per core but one, which sleeps between jobs, and to the calling thread. A call from inside a range
// runs inline; a call while another thread holds the pool starts its own threads. The first exception a range
// throws is rethrown here once every range has ended. Plain
// threads rather than OpenMP: OpenMP's spinning workers and OpenBLAS's spinning workers fight over the cores and
// halved the forward pass's speed on 2 cores.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)> &fn,
                 int threads = 0);

int hardwareThreads();

} // namespace lathe
