// WAV (RIFF PCM) reading and writing.
//
// read_wav accepts 8/16/24/32-bit integer and 32-bit float PCM, any channel count (mixed down
// to mono), and returns 16-bit mono samples at the file's rate. Errors throw wav_error with a
// one-line reason. Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley {

struct wav_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct pcm_audio {
    std::vector<int16_t> samples; // mono
    int sample_rate = 0;
    double seconds() const { return sample_rate ? double(samples.size()) / sample_rate : 0.0; }
};

pcm_audio parse_wav(std::string_view bytes);
pcm_audio read_wav(const std::string &path);
std::string encode_wav(const std::vector<int16_t> &samples, int sample_rate);
void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate);

} // namespace parley
