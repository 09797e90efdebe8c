// The Piper engine on tiny voices in Piper's real format (tests/gen/make-tiny-piper.py, run into
// the build directory): loading, the synthesis pipeline, speakers, word timings, bad files and
// concurrent calls. The tiny voices make noise, not speech: nothing here judges sound quality.
#include "generated.h"
#include "tts/tts.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <unistd.h>

using namespace parley;
namespace fs = std::filesystem;

namespace {

const std::string sentence = "Hello there. How are you?";

// Runs the generator once per build (again when the script is newer than its output) into
// BUILD_DIR/test-models/piper; parallel test processes wait for one generation (generated.h).
fs::path voices_dir() {
    static fs::path dir = [] {
        const char *src = std::getenv("PARLEY_SOURCE_DIR");
        fs::path script = fs::path(src ? src : ".") / "tests/gen/make-tiny-piper.py";
        fs::path out = fs::read_symlink("/proc/self/exe").parent_path() / "test-models" / "piper";
        // On failure the tests fail on the missing files.
        parley::testing::generate_once(out, out / "tiny-piper-multi.onnx.json", {script},
                                       "python3 '" + script.string() + "'");
        return out;
    }();
    return dir;
}

std::string voice(const std::string &name = "tiny-piper") {
    return (voices_dir() / (name + ".onnx")).string();
}

std::unique_ptr<tts_engine> make_piper(const std::string &model) {
    tts_config config;
    config.engine = "piper";
    config.model_path = model;
    return make_tts_engine(config);
}

tts_params params(const std::string &voice = "en-us", int rate = 175) {
    tts_params p;
    p.voice = voice;
    p.rate_wpm = rate;
    return p;
}

// A scratch directory in the build tree, removed after the test.
struct scratch {
    fs::path dir;
    explicit scratch(const std::string &name)
        : dir(voices_dir().parent_path() / ("scratch-" + name + "-" + std::to_string(getpid()))) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    fs::path operator/(const std::string &file) const { return dir / file; }
};

void write_file(const fs::path &p, const std::string &bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

TEST(tts_piper, loads_the_voice) {
    auto tts = make_piper(voice());
    ASSERT_NE(tts, nullptr);
    EXPECT_EQ(tts->name(), "piper");
    EXPECT_EQ(tts->check(params()), "");
    EXPECT_EQ(tts->sample_rate(), 22050);
}

TEST(tts_piper, synthesizes_at_the_voice_rate) {
    auto tts = make_piper(voice());
    tts_result r = tts->synthesize(sentence, params());
    EXPECT_EQ(r.sample_rate, 22050);
    ASSERT_GT(r.pcm.size(), 22050u / 4);
    int16_t peak = 0;
    for (int16_t s : r.pcm)
        peak = std::max<int16_t>(peak, int16_t(std::abs(s)));
    EXPECT_GT(peak, 10000); // each sentence is scaled to full range, as Piper does
}

TEST(tts_piper, length_follows_text_and_rate) {
    auto tts = make_piper(voice());
    size_t short_text = tts->synthesize("Hello there.", params()).pcm.size();
    size_t normal = tts->synthesize(sentence, params()).pcm.size();
    size_t longer =
        tts->synthesize(sentence + " I am fine, thank you; the weather is lovely today!", params())
            .pcm.size();
    size_t fast = tts->synthesize(sentence, params("en-us", 350)).pcm.size();
    size_t slow = tts->synthesize(sentence, params("en-us", 100)).pcm.size();
    EXPECT_LT(short_text, normal);
    EXPECT_LT(normal, longer);
    EXPECT_LT(fast, normal);
    EXPECT_GT(slow, normal);
}

TEST(tts_piper, word_timings_are_monotonic_within_the_audio) {
    auto tts = make_piper(voice());
    tts_result r = tts->synthesize(sentence + " I'm fine, thanks.", params());
    int total_ms = int(r.pcm.size() * 1000 / size_t(r.sample_rate));
    std::vector<std::string> texts;
    int last_end = 0;
    for (const tts_word &w : r.words) {
        texts.push_back(w.text);
        EXPECT_GE(w.start_ms, last_end) << w.text;
        EXPECT_GT(w.end_ms, w.start_ms) << w.text;
        EXPECT_LE(w.end_ms, total_ms) << w.text;
        last_end = w.end_ms;
    }
    EXPECT_EQ(texts, (std::vector<std::string>{"Hello", "there", "How", "are", "you", "I'm", "fine",
                                               "thanks"}));
    ASSERT_FALSE(r.words.empty());
    EXPECT_GT(r.words.back().end_ms, total_ms / 2);
}

TEST(tts_piper, nothing_to_say_gives_no_audio) {
    auto tts = make_piper(voice());
    tts_result r = tts->synthesize("...", params());
    EXPECT_TRUE(r.pcm.empty());
    EXPECT_TRUE(r.words.empty());
}

TEST(tts_piper, multi_speaker_voice_takes_a_speaker) {
    auto tts = make_piper(voice("tiny-piper-multi"));
    EXPECT_EQ(tts->check(params()), ""); // default voice name: speaker 0
    EXPECT_EQ(tts->check(params("bob")), "");
    EXPECT_EQ(tts->check(params("2")), "");
    std::string err = tts->check(params("nobody"));
    EXPECT_NE(err.find("nobody"), std::string::npos) << err;
    EXPECT_NE(err.find("alice, bob, carol"), std::string::npos) << err;
    EXPECT_NE(tts->check(params("3")), "");
    for (const char *speaker : {"alice", "bob", "carol"}) {
        tts_result r = tts->synthesize(sentence, params(speaker));
        EXPECT_GT(r.pcm.size(), 22050u / 4) << speaker;
    }
    EXPECT_THROW(tts->synthesize(sentence, params("nobody")), tts_error);
}

TEST(tts_piper, text_phoneme_voice_reads_codepoints) {
    scratch dir("text");
    fs::copy_file(voice(), dir / "v.onnx");
    std::string config;
    {
        std::ifstream f(voice() + ".json");
        config.assign(std::istreambuf_iterator<char>(f), {});
    }
    size_t at = config.find("\"espeak\"");
    ASSERT_NE(at, std::string::npos);
    config.replace(config.find("\"espeak\"", at + 1), 8, "\"text\"");
    write_file(dir / "v.onnx.json", config);
    auto tts = make_piper((dir / "v.onnx").string());
    ASSERT_EQ(tts->check(params()), "");
    tts_result r = tts->synthesize("hello there", params());
    EXPECT_GT(r.pcm.size(), 0u);
    ASSERT_EQ(r.words.size(), 2u);
    EXPECT_EQ(r.words[1].text, "there");
}

TEST(tts_piper, rate_out_of_range_is_refused) {
    auto tts = make_piper(voice());
    EXPECT_NE(tts->check(params("en-us", 20)), "");
    EXPECT_THROW(tts->synthesize(sentence, params("en-us", 1000)), tts_error);
}

TEST(tts_piper, missing_model_names_the_file) {
    scratch dir("missing");
    std::string path = (dir / "nowhere.onnx").string();
    auto tts = make_piper(path);
    std::string err = tts->check(params());
    EXPECT_NE(err.find(path), std::string::npos) << err;
    EXPECT_THROW(tts->synthesize(sentence, params()), tts_error);
}

TEST(tts_piper, missing_config_names_the_file) {
    scratch dir("nojson");
    fs::copy_file(voice(), dir / "v.onnx");
    auto tts = make_piper((dir / "v.onnx").string());
    std::string err = tts->check(params());
    EXPECT_NE(err.find((dir / "v.onnx.json").string()), std::string::npos) << err;
    try {
        tts->synthesize(sentence, params());
        FAIL() << "no error";
    } catch (const tts_error &e) {
        EXPECT_EQ(std::string(e.what()), err);
    }
}

TEST(tts_piper, malformed_config_names_the_file) {
    scratch dir("badjson");
    fs::copy_file(voice(), dir / "v.onnx");
    write_file(dir / "v.onnx.json", "{\"audio\": {\"sample_rate\": 22050,");
    auto tts = make_piper((dir / "v.onnx").string());
    std::string err = tts->check(params());
    EXPECT_NE(err.find((dir / "v.onnx.json").string()), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

TEST(tts_piper, config_without_phoneme_id_map_is_refused) {
    scratch dir("nomap");
    fs::copy_file(voice(), dir / "v.onnx");
    write_file(dir / "v.onnx.json",
               R"({"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"},)"
               R"( "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8}})");
    auto tts = make_piper((dir / "v.onnx").string());
    std::string err = tts->check(params());
    EXPECT_NE(err.find("phoneme_id_map"), std::string::npos) << err;
    EXPECT_NE(err.find((dir / "v.onnx.json").string()), std::string::npos) << err;
}

TEST(tts_piper, corrupt_model_names_the_file) {
    scratch dir("corrupt");
    fs::copy_file(voice() + ".json", dir / "v.onnx.json");
    write_file(dir / "v.onnx", std::string(4096, '\x5a'));
    auto tts = make_piper((dir / "v.onnx").string());
    std::string err = tts->check(params());
    EXPECT_NE(err.find((dir / "v.onnx").string()), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    EXPECT_THROW(tts->synthesize(sentence, params()), tts_error);
}

TEST(tts_piper, concurrent_calls_are_safe) {
    auto tts = make_piper(voice("tiny-piper-multi"));
    std::vector<size_t> sizes(4);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < sizes.size(); ++i)
        threads.emplace_back([&, i] {
            for (int k = 0; k < 5; ++k) {
                tts_result r = tts->synthesize(sentence, params(i % 2 ? "alice" : "carol"));
                sizes[i] = std::min(sizes[i] ? sizes[i] : r.pcm.size(), r.pcm.size());
            }
        });
    for (auto &t : threads)
        t.join();
    for (size_t s : sizes)
        EXPECT_GT(s, 22050u / 4);
}

// Numbers for the report, not a pass/fail measure: load time, synthesis time per second of
// audio, time to the first phrase's audio.
TEST(tts_piper, speed) {
    auto t0 = std::chrono::steady_clock::now();
    auto tts = make_piper(voice());
    ASSERT_EQ(tts->check(params()), "");
    double load_ms = ms_since(t0);

    t0 = std::chrono::steady_clock::now();
    tts_result first = tts->synthesize("Sure.", params());
    double first_ms = ms_since(t0);

    std::string text = "The quick brown fox jumps over the lazy dog. It was a bright cold day in "
                       "April, and the clocks were striking thirteen.";
    double synth_ms = 0, audio_s = 0;
    for (int i = 0; i < 10; ++i) {
        t0 = std::chrono::steady_clock::now();
        tts_result r = tts->synthesize(text, params());
        synth_ms += ms_since(t0);
        audio_s += double(r.pcm.size()) / r.sample_rate;
    }
    std::printf("[ piper    ] load %.1f ms; first audio ('Sure.', %.2f s) %.1f ms; "
                "%.1f ms per second of audio\n",
                load_ms, double(first.pcm.size()) / first.sample_rate, first_ms,
                synth_ms / audio_s);
    EXPECT_GT(audio_s, 0);
}
