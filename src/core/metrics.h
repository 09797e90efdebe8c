// Process-wide counters and latency histograms, exported at /metrics in Prometheus text
// format. Every method is thread-safe (atomics; the per-code error map takes a mutex).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace parley {

// Milliseconds, cumulative buckets as Prometheus expects.
class latency_histogram {
  public:
    static constexpr std::array<double, 13> bounds = {1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
    void observe(double ms);
    // Appends the _bucket/_sum/_count lines for `name` with label stage="...".
    void render(std::string &out, const std::string &name, const std::string &stage) const;

  private:
    std::array<std::atomic<int64_t>, bounds.size() + 1> counts_{};
    std::atomic<int64_t> sum_us_{0};
};

struct metrics {
    std::atomic<int64_t> sessions_open{0};
    std::atomic<int64_t> sessions_total{0};
    std::atomic<int64_t> turns{0};
    std::atomic<int64_t> interruptions{0};
    std::atomic<int64_t> errors{0};
    std::atomic<int64_t> unsaved_turns{0}; // turns the store refused, kept to be written again

    // What the user waits: from the end of their speech to the reply's first audio.
    latency_histogram speech_end_to_audio;
    // Stages of a turn, in ms after the end of the user's turn (the decision, in hands-free).
    latency_histogram transcript, first_token, first_text, first_audio, total;
    // Engine load times in ms, set once at start.
    std::atomic<double> llm_load_ms{0}, asr_load_ms{0}, tts_load_ms{0};

    void count_error(const std::string &code);
    std::string render() const;

  private:
    mutable std::mutex m_;
    std::map<std::string, int64_t> errors_by_code_;
};

} // namespace parley
