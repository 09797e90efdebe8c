// Audio files through libsndfile: WAV, FLAC, Ogg (Vorbis, Opus), MP3 and the other formats it
// reads.
//
// read_audio_file / parse_audio_file return 16-bit mono samples (channels mixed down) at the
// file's own rate; encode_wav / write_wav write 16-bit mono WAV. Errors throw audio_file_error
// with a one-line reason. Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley {

struct audio_file_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct pcm_audio {
    std::vector<int16_t> samples; // mono
    int sample_rate = 0;
    double seconds() const { return sample_rate ? double(samples.size()) / sample_rate : 0.0; }
};

pcm_audio parse_audio_file(std::string_view bytes);
pcm_audio read_audio_file(const std::string &path);
std::string encode_wav(const std::vector<int16_t> &samples, int sample_rate);
void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate);

} // namespace parley
