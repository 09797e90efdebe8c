#include "audio/resampler.h"
#include "audio/audio-file.h"

#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <cstdio>
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
    pcm_audio a = parse_audio_file(encode_wav(s, 16000));
    EXPECT_EQ(a.sample_rate, 16000);
    EXPECT_EQ(a.samples, s);
}

TEST(wav, stereo_is_mixed_down) {
    std::string w = encode_wav({100, 300, -200, -400}, 8000);
    // Patch the header to 2 channels of 16-bit: 2 frames.
    w[22] = 2;
    w[32] = 4;
    pcm_audio a = parse_audio_file(w);
    ASSERT_EQ(a.samples.size(), 2u);
    EXPECT_EQ(a.samples[0], 200);
    EXPECT_EQ(a.samples[1], -300);
}

TEST(wav, errors_are_clear) {
    EXPECT_THROW(parse_audio_file("hello"), audio_file_error);
    EXPECT_THROW(parse_audio_file(std::string("RIFF\0\0\0\0WAVE", 12)), audio_file_error);
    std::string w = encode_wav({1, 2, 3}, 16000);
    w[20] = 2; // ADPCM
    try {
        parse_audio_file(w);
        FAIL();
    } catch (const audio_file_error &e) {
        EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos);
    }
    EXPECT_THROW(read_audio_file("/nonexistent/file.wav"), audio_file_error);
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

namespace {

// Writes 16-bit mono samples in a libsndfile format (the test's own encoder).
bool write_with_sndfile(const std::string &path, const std::vector<int16_t> &s, int rate,
                        int format) {
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = 1;
    info.format = format;
    SNDFILE *f = sf_open(path.c_str(), SFM_WRITE, &info);
    if (!f) return false;
    bool ok = sf_writef_short(f, s.data(), sf_count_t(s.size())) == sf_count_t(s.size());
    return sf_close(f) == 0 && ok;
}

} // namespace

TEST(audio_file, flac_reads_back_sample_for_sample) {
    auto s = sine(440, 16000, 0.5);
    std::string path = testing::TempDir() + "parley-test.flac";
    ASSERT_TRUE(write_with_sndfile(path, s, 16000, SF_FORMAT_FLAC | SF_FORMAT_PCM_16));
    pcm_audio a = read_audio_file(path);
    EXPECT_EQ(a.sample_rate, 16000);
    EXPECT_EQ(a.samples, s);
    std::remove(path.c_str());
}

TEST(audio_file, lossy_formats_keep_the_rate_length_and_pitch) {
    auto s = sine(440, 22050, 1.0);
    struct {
        const char *ext;
        int format;
    } formats[] = {{"ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS},
                   {"opus", SF_FORMAT_OGG | SF_FORMAT_OPUS},
                   {"mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III}};
    for (auto &fmt : formats) {
        int rate = fmt.format == (SF_FORMAT_OGG | SF_FORMAT_OPUS) ? 48000 : 22050;
        auto x = rate == 22050 ? s : sine(440, rate, 1.0);
        std::string path = testing::TempDir() + "parley-test." + fmt.ext;
        ASSERT_TRUE(write_with_sndfile(path, x, rate, fmt.format)) << fmt.ext;
        pcm_audio a = read_audio_file(path);
        EXPECT_EQ(a.sample_rate, rate) << fmt.ext;
        EXPECT_NEAR(a.seconds(), 1.0, 0.1) << fmt.ext; // encoders pad a frame or two
        EXPECT_NEAR(frequency(a.samples, rate), 440, 10) << fmt.ext;
        std::remove(path.c_str());
    }
}
