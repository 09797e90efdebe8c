#include "audio/resampler.h"
#include "audio/wav.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

using namespace parley;

namespace {

std::vector<int16_t> sine(double hz, int rate, double seconds) {
    std::vector<int16_t> out(size_t(rate * seconds));
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = int16_t(10000 * std::sin(2 * std::numbers::pi * hz * double(i) / rate));
    return out;
}

// Frequency estimate from zero crossings.
double frequency(const std::vector<int16_t> &s, int rate) {
    int crossings = 0;
    for (size_t i = 1; i < s.size(); ++i)
        if ((s[i - 1] < 0) != (s[i] < 0)) ++crossings;
    return crossings / 2.0 / (double(s.size()) / rate);
}

} // namespace

TEST(wav, round_trip) {
    auto s = sine(440, 16000, 0.5);
    pcm_audio a = parse_wav(encode_wav(s, 16000));
    EXPECT_EQ(a.sample_rate, 16000);
    EXPECT_EQ(a.samples, s);
}

TEST(wav, stereo_is_mixed_down) {
    std::string w = encode_wav({100, 300, -200, -400}, 8000);
    // Patch the header to 2 channels of 16-bit: 2 frames.
    w[22] = 2;
    w[32] = 4;
    pcm_audio a = parse_wav(w);
    ASSERT_EQ(a.samples.size(), 2u);
    EXPECT_EQ(a.samples[0], 200);
    EXPECT_EQ(a.samples[1], -300);
}

TEST(wav, errors_are_clear) {
    EXPECT_THROW(parse_wav("hello"), wav_error);
    EXPECT_THROW(parse_wav(std::string("RIFF\0\0\0\0WAVE", 12)), wav_error);
    std::string w = encode_wav({1, 2, 3}, 16000);
    w[20] = 2; // ADPCM
    try {
        parse_wav(w);
        FAIL();
    } catch (const wav_error &e) {
        EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos);
    }
    EXPECT_THROW(read_wav("/nonexistent/file.wav"), wav_error);
}

TEST(resampler, converts_rate_and_keeps_pitch) {
    for (int rate : {8000, 22050, 44100, 48000}) {
        auto in = sine(440, rate, 1.0);
        auto out = resample(in, rate, 16000);
        EXPECT_NEAR(double(out.size()), 16000.0, 16000 * 0.01) << rate;
        EXPECT_NEAR(frequency(out, 16000), 440.0, 5.0) << rate;
    }
}

TEST(resampler, streaming_matches_whole_buffer_length) {
    auto in = sine(300, 48000, 1.0);
    resampler r(48000, 16000);
    std::vector<int16_t> out;
    for (size_t i = 0; i < in.size(); i += 960) { // 20 ms frames
        auto part = r.process(
            std::span<const int16_t>(in).subspan(i, std::min<size_t>(960, in.size() - i)));
        out.insert(out.end(), part.begin(), part.end());
    }
    auto tail = r.flush();
    out.insert(out.end(), tail.begin(), tail.end());
    EXPECT_NEAR(double(out.size()), 16000.0, 50.0);
    EXPECT_NEAR(frequency(out, 16000), 300.0, 5.0);
}

TEST(resampler, same_rate_passes_through) {
    auto in = sine(100, 16000, 0.1);
    EXPECT_EQ(resample(in, 16000, 16000), in);
}
