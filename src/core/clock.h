// One monotonic clock for every timing of a turn.
#pragma once

#include <chrono>
#include <cstdint>

namespace parley {

using mono_clock = std::chrono::steady_clock;
using mono_time = mono_clock::time_point;

inline mono_time mono_now() {
    return mono_clock::now();
}

inline double ms_between(mono_time a, mono_time b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Wall-clock time in milliseconds since the Unix epoch (what is stored with a turn).
inline int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace parley
