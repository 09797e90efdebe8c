// Audio files: through libsndfile (WAV, FLAC, Ogg Vorbis and Opus, MP3 and the other formats it
// reads), else through FFmpeg's libraries (WebM and Ogg from browsers, MP4/M4A, AAC, ...).
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

// Longer audio is refused (a small file may decode to hours).
constexpr int AUDIO_FILE_MAX_SECONDS = 2 * 3600;

pcm_audio parse_audio_file(std::string_view bytes);
// FFmpeg only (parse_audio_file falls back to it).
pcm_audio ffmpeg_decode(std::string_view bytes);
pcm_audio read_audio_file(const std::string &path);
std::string encode_wav(const std::vector<int16_t> &samples, int sample_rate);
void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate);

// Encodes mono 16-bit samples as `format`: wav, flac, mp3, opus (Ogg; resampled to 48 kHz) or
// pcm (raw s16le at sample_rate). Throws audio_file_error for another format.
std::string encode_audio(const std::vector<int16_t> &samples, int sample_rate,
                         const std::string &format);
// The MIME type of an encode_audio format.
std::string audio_mime_type(const std::string &format);

} // namespace parley
