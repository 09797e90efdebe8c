#include "audio/resampler.h"

#include <soxr.h>

#include <stdexcept>
#include <string>

namespace parley {

resampler::resampler(int in_rate, int out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
    if (in_rate <= 0 || out_rate <= 0) throw std::invalid_argument("resampler: bad sample rate");
    if (in_rate == out_rate) return;
    soxr_error_t err = nullptr;
    soxr_io_spec_t io = soxr_io_spec(SOXR_INT16_I, SOXR_INT16_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_ = soxr_create(in_rate, out_rate, 1, &err, &io, &q, nullptr);
    if (err) throw std::runtime_error(std::string("soxr: ") + err);
}

resampler::~resampler() {
    if (soxr_) soxr_delete(soxr_);
}

std::vector<int16_t> resampler::run(const int16_t *in, size_t n) {
    std::vector<int16_t> out;
    size_t cap = size_t(double(n) * out_rate_ / in_rate_) + 64;
    out.resize(cap);
    size_t done_in = 0, done_out = 0;
    soxr_error_t err = soxr_process(soxr_, in, n, &done_in, out.data(), cap, &done_out);
    if (err) throw std::runtime_error(std::string("soxr: ") + err);
    out.resize(done_out);
    if (in == nullptr) {
        // Draining: keep asking until the filter is empty.
        std::vector<int16_t> more(256);
        while (true) {
            size_t got = 0;
            soxr_process(soxr_, nullptr, 0, nullptr, more.data(), more.size(), &got);
            if (got == 0) break;
            out.insert(out.end(), more.begin(), more.begin() + long(got));
        }
    }
    return out;
}

std::vector<int16_t> resampler::process(std::span<const int16_t> in) {
    if (!soxr_) return {in.begin(), in.end()};
    if (in.empty()) return {};
    return run(in.data(), in.size());
}

std::vector<int16_t> resampler::flush() {
    if (!soxr_) return {};
    return run(nullptr, 0);
}

std::vector<int16_t> resample(std::span<const int16_t> in, int in_rate, int out_rate) {
    resampler r(in_rate, out_rate);
    std::vector<int16_t> out = r.process(in);
    std::vector<int16_t> tail = r.flush();
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
}

} // namespace parley
