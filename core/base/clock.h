#pragma once

#include <chrono>

namespace lathe {

// Seconds on the monotonic clock: differences of two calls are durations (job timings, ETAs, probes).
inline double steadySeconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace lathe
