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

// A streaming resampler's filter phase. Both have soxr's high-quality magnitude response;
// a linear-phase filter holds back 36.5 ms of output (at 16-48 kHz, 20 ms frames), a
// minimum-phase one 6 ms, at the cost of a phase response that is not linear (which a
// recogniser or a voice activity detector, working on magnitude spectra, does not see).
enum resampler_phase {
    RESAMPLER_LINEAR_PHASE,
    RESAMPLER_MINIMUM_PHASE, // for live input: what is said reaches the detector 30 ms sooner
};

class resampler {
  public:
    resampler(int in_rate, int out_rate, resampler_phase phase = RESAMPLER_LINEAR_PHASE);
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
