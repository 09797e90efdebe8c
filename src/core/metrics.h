// Process-wide counters for /health and logs. Thread-safe (atomics).
#pragma once

#include <atomic>
#include <cstdint>

namespace parley {

struct metrics {
    std::atomic<int64_t> sessions_open{0};
    std::atomic<int64_t> sessions_total{0};
    std::atomic<int64_t> turns{0};
    std::atomic<int64_t> interruptions{0};
    std::atomic<int64_t> errors{0};
};

} // namespace parley
