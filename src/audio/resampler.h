// Streaming sample-rate conversion of 16-bit mono PCM (libsoxr, "high quality" recipe).
//
// One resampler per stream; process() may be called with any frame size and keeps its filter
// state between calls; flush() drains the tail at the end of a stream. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

struct soxr;

namespace parley {

class resampler {
  public:
    resampler(int in_rate, int out_rate);
    ~resampler();
    resampler(const resampler &) = delete;
    resampler &operator=(const resampler &) = delete;

    std::vector<int16_t> process(std::span<const int16_t> in);
    std::vector<int16_t> flush();
    int in_rate() const { return in_rate_; }
    int out_rate() const { return out_rate_; }

  private:
    std::vector<int16_t> run(const int16_t *in, size_t n);
    int in_rate_, out_rate_;
    ::soxr *soxr_ = nullptr; // null when rates are equal (pass-through)
};

// Whole-buffer conversion.
std::vector<int16_t> resample(std::span<const int16_t> in, int in_rate, int out_rate);

} // namespace parley
