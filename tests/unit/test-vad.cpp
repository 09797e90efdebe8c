// VAD tests on the real Silero v5 model (from the npm package vad-web, installed by the setup)
// and real speech (PocketSphinx's LibriVox clips, with their word alignments as ground truth).
#include "audio/vad.h"
#include "audio/audio-file.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

using namespace parley;
namespace fs = std::filesystem;

namespace {

const std::string librivox = "/usr/share/pocketsphinx/test/data/librivox/";
const char *clip_ids[] = {"0870", "0880", "0890", "0920", "0930"};

std::string source_dir() {
    const char *src = std::getenv("PARLEY_SOURCE_DIR");
    return src ? src : ".";
}

std::string silero_path() {
    return source_dir() + "/node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx";
}

// Loaded once for all tests, as the server does; null when the model is not installed.
std::shared_ptr<vad_model> silero() {
    static std::shared_ptr<vad_model> model =
        fs::exists(silero_path()) ? load_silero_vad(silero_path()) : nullptr;
    return model;
}

#define NEED_SILERO()                                                                              \
    if (!silero()) GTEST_SKIP() << "no Silero model at " << silero_path() << " (run the setup)"

std::shared_ptr<vad_model> model_for(const std::string &engine) {
    return engine == "silero" ? silero() : make_energy_vad();
}

std::vector<int16_t> noise(size_t n, double dbfs, unsigned seed);
std::vector<int16_t> silence_ms(int ms);

struct clip {
    std::vector<int16_t> pcm;
    double onset_ms = 0; // first word (forced alignment)
    double end_ms = 0;   // end of the last word
};

clip load_clip(const std::string &id) {
    std::string base = librivox + "sense_and_sensibility_01_austen_64kb-" + id;
    pcm_audio a = read_audio_file(base + ".wav");
    EXPECT_EQ(a.sample_rate, 16000);
    clip c;
    c.pcm = std::move(a.samples);
    std::ifstream f(base + ".json");
    auto j = nlohmann::json::parse(f);
    bool first = true;
    for (const auto &w : j["w"]) {
        std::string t = w["t"];
        if (t.empty() || t[0] == '<' || t[0] == '[' || t[0] == '+') continue;
        double b = w["b"].get<double>() * 1000, d = w["d"].get<double>() * 1000;
        if (first) c.onset_ms = b;
        first = false;
        c.end_ms = b + d;
    }
    // The clips are cut from continuous reading, and some end with a fragment after the last
    // word (0890: 130 ms of an in-breath or the next word's onset, which Silero scores as
    // speech). Keep 100 ms after the last word, faded out over 20 ms.
    size_t end = std::min(c.pcm.size(), size_t((c.end_ms + 100) * 16));
    c.pcm.resize(end);
    for (size_t i = 0; i < 320 && i < end; ++i)
        c.pcm[end - 1 - i] = int16_t(c.pcm[end - 1 - i] * double(i) / 320);
    return c;
}

// Onset and end measured from the signal: the first and last 30 ms frames within 35 dB of the
// loudest frame (a cross-check of the alignment).
std::pair<double, double> energy_bounds_ms(const std::vector<int16_t> &pcm) {
    const size_t n = 480;
    std::vector<double> db;
    for (size_t i = 0; i + n <= pcm.size(); i += n) {
        double e = 0;
        for (size_t k = i; k < i + n; ++k)
            e += double(pcm[k]) * pcm[k];
        db.push_back(10 * std::log10(e / n + 1e-9));
    }
    double peak = *std::max_element(db.begin(), db.end());
    size_t first = 0, last = db.size() - 1;
    while (first < db.size() && db[first] < peak - 35)
        ++first;
    while (last > 0 && db[last] < peak - 35)
        --last;
    return {first * 30.0, (last + 1) * 30.0};
}

std::vector<int16_t> noise(size_t n, double dbfs, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> g(0.0, 32768.0 * std::pow(10.0, dbfs / 20));
    std::vector<int16_t> out(n);
    for (auto &s : out)
        s = int16_t(std::clamp(g(rng), -32768.0, 32767.0));
    return out;
}

// The background level of the recording: the median of its 32 ms windows before the first word.
double background_dbfs(const clip &c) {
    std::vector<double> db;
    for (size_t i = 0; i + 512 <= size_t((c.onset_ms - 30) * 16); i += 512) {
        double e = 0;
        for (size_t k = i; k < i + 512; ++k)
            e += double(c.pcm[k]) * c.pcm[k];
        db.push_back(10 * std::log10(e / 512 / 32768.0 / 32768.0 + 1e-12));
    }
    std::sort(db.begin(), db.end());
    return db.empty() ? -60 : db[db.size() / 2];
}

// The clip in a live microphone's "silence": `before_ms` and `after_ms` of padding, with steady
// noise at the recording's own background level over the whole stream. An energy detector
// cannot tell a recording's background from speech after digital silence, and a model reacts
// to noise that switches on; in a live stream the background never stops.
// Adds steady room-like noise (white noise through a one-pole low-pass, so it falls off with
// frequency as a room's background does) at `dbfs`.
std::vector<int16_t> with_background(std::vector<int16_t> pcm, double dbfs) {
    std::vector<int16_t> n = noise(pcm.size(), dbfs, unsigned(pcm.size()));
    // y = a*y + (1-a)*x has a power gain of (1-a)/(1+a) on white noise; undo it.
    const double a = 0.9, gain = std::sqrt((1 + a) / (1 - a));
    double y = 0;
    for (size_t i = 0; i < pcm.size(); ++i) {
        y = a * y + (1 - a) * n[i];
        pcm[i] = int16_t(std::clamp(int(pcm[i]) + int(std::lround(y * gain)), -32768, 32767));
    }
    return pcm;
}

std::vector<int16_t> padded(const clip &c, int before_ms, int after_ms) {
    std::vector<int16_t> pcm = silence_ms(before_ms);
    pcm.insert(pcm.end(), c.pcm.begin(), c.pcm.end());
    std::vector<int16_t> tail = silence_ms(after_ms);
    pcm.insert(pcm.end(), tail.begin(), tail.end());
    return with_background(std::move(pcm), background_dbfs(c));
}

// Background noise alone, at the clip's level.
std::vector<int16_t> room_tone(const clip &c, int ms) {
    return noise(size_t(ms) * 16, background_dbfs(c), unsigned(ms) + 99);
}

void append(std::vector<int16_t> &a, const std::vector<int16_t> &b) {
    a.insert(a.end(), b.begin(), b.end());
}

std::vector<int16_t> silence_ms(int ms) {
    return std::vector<int16_t>(size_t(ms) * 16);
}

// Feeds pcm in frames of `frame` samples (the last one shorter) and collects the events.
std::vector<vad_event> run(vad_stream &vad, const std::vector<int16_t> &pcm, size_t frame) {
    std::vector<vad_event> out;
    for (size_t i = 0; i < pcm.size(); i += frame) {
        size_t n = std::min(frame, pcm.size() - i);
        for (auto &e : vad.process(std::span(pcm).subspan(i, n)))
            out.push_back(std::move(e));
    }
    return out;
}

std::vector<vad_event> run(std::shared_ptr<vad_model> model, const std::vector<int16_t> &pcm,
                           const vad_params &params = {}, size_t frame = 320) {
    vad_stream vad(model, params);
    return run(vad, pcm, frame);
}

size_t count(const std::vector<vad_event> &ev, vad_event_type t) {
    return size_t(std::count_if(ev.begin(), ev.end(), [t](auto &e) { return e.type == t; }));
}

class vad_engines : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        if (GetParam() == "silero") NEED_SILERO();
    }
};

} // namespace

TEST(vad_params, validate) {
    vad_params p;
    EXPECT_EQ(p.validate(), "");
    EXPECT_FLOAT_EQ(p.effective_neg_threshold(), 0.35f);
    p.threshold = 1.5f;
    EXPECT_NE(p.validate(), "");
    p = {};
    p.neg_threshold = 0.8f;
    EXPECT_NE(p.validate(), "");
    p = {};
    p.min_silence_ms = -1;
    EXPECT_NE(p.validate(), "");
    p = {};
    p.engine = "webrtc";
    EXPECT_NE(p.validate().find("unknown engine"), std::string::npos);
    EXPECT_THROW(vad_stream(make_energy_vad(), p), vad_error);
    EXPECT_THROW(vad_stream(nullptr), vad_error);
    EXPECT_THROW(make_vad_model(p), vad_error);
}

TEST(vad_model, bad_files_give_one_line_errors) {
    auto expect_error = [](const std::string &path, const std::string &what) {
        try {
            load_silero_vad(path);
            ADD_FAILURE() << "no error for " << path;
        } catch (const vad_error &e) {
            std::string m = e.what();
            EXPECT_NE(m.find(path), std::string::npos) << m;
            EXPECT_NE(m.find(what), std::string::npos) << m;
            EXPECT_EQ(m.find('\n'), std::string::npos) << m;
        }
    };
    expect_error("/nonexistent/silero.onnx", "not found");
    fs::path dir = fs::temp_directory_path() / "parley-test-vad";
    fs::create_directories(dir);
    std::string text = (dir / "text.onnx").string();
    std::ofstream(text) << "this is not a model\n";
    expect_error(text, "not an ONNX model");
    // Protobuf-looking garbage gets past the first byte and fails in ONNX Runtime.
    std::string garbage = (dir / "garbage.onnx").string();
    std::ofstream(garbage, std::ios::binary) << std::string("\x08\x07\x12\x05hello\xff\xff", 11);
    expect_error(garbage, "cannot load Silero model");
    // Silero v4 (inputs input, sr, h, c) is ONNX but not v5.
    std::string legacy =
        source_dir() + "/node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx";
    if (fs::exists(legacy)) expect_error(legacy, "is not a Silero v5 model");
    // An explicit model_path that fails is an error, not a silent fallback.
    vad_params p;
    p.model_path = "/nonexistent/silero.onnx";
    EXPECT_THROW(make_vad_model(p), vad_error);
    fs::remove_all(dir);
}

TEST(vad_model, finds_and_picks_the_default_model) {
    NEED_SILERO();
    setenv("PARLEY_VAD_MODEL", silero_path().c_str(), 1);
    EXPECT_EQ(find_silero_model(), silero_path());
    EXPECT_EQ(make_vad_model({})->name(), "silero");
    // A wrong PARLEY_VAD_MODEL is skipped: the repository's copy is found next to the binary's
    // parent (build-*/parley_unit_tests) or the current directory.
    setenv("PARLEY_VAD_MODEL", "/nonexistent/x.onnx", 1);
    std::string found = find_silero_model();
    EXPECT_TRUE(fs::exists(found)) << found;
    unsetenv("PARLEY_VAD_MODEL");
    vad_params energy;
    energy.engine = "energy";
    EXPECT_EQ(make_vad_model(energy)->name(), "energy");
}

// Tolerances: Silero within 100 ms of the aligned onset and 150 ms of the aligned end; the
// energy detector hears breaths and reverberation as speech, so it gets 150 and 250 ms.
TEST_P(vad_engines, one_clip_one_utterance) {
    const bool energy = GetParam() == "energy";
    const double onset_tol = energy ? 150 : 100, end_tol = energy ? 250 : 150;
    vad_params params;
    for (bool digital_silence : {false, true}) {
        if (energy && digital_silence) continue; // see room_tone()
        for (const char *id : clip_ids) {
            clip c = load_clip(id);
            std::vector<int16_t> pcm;
            if (digital_silence) {
                pcm = silence_ms(1000);
                append(pcm, c.pcm);
                append(pcm, silence_ms(1000));
            } else {
                pcm = padded(c, 1000, 1000);
            }
            auto ev = run(model_for(GetParam()), pcm, params);
            ASSERT_EQ(ev.size(), 2u) << id;
            ASSERT_EQ(ev[0].type, VAD_EVENT_SPEECH_STARTED);
            ASSERT_EQ(ev[1].type, VAD_EVENT_SPEECH_STOPPED);
            double onset = 1000 + c.onset_ms, end = 1000 + c.end_ms;
            double stop_decided = ev[1].decided_sample / 16.0;
            printf("[%s %s, %s] onset %+4.0f ms (decided %.0f ms later), end %+4.0f ms (decided "
                   "%.0f ms after the true end)\n",
                   GetParam().c_str(), id, digital_silence ? "digital silence" : "room tone",
                   ev[0].ms() - onset, ev[0].delay_ms(), ev[1].ms() - end, stop_decided - end);
            EXPECT_NEAR(ev[0].ms(), onset, onset_tol) << id;
            EXPECT_NEAR(ev[1].ms(), end, end_tol) << id;
            EXPECT_GE(stop_decided, end) << id;
            EXPECT_LE(stop_decided, end + params.min_silence_ms + end_tol - 50) << id;
            // The onset event hands over the padding and the speech so far.
            EXPECT_EQ(ev[0].audio_start, ev[0].sample - 300 * 16);
            EXPECT_EQ(ev[0].audio.size(), size_t(ev[0].decided_sample - ev[0].audio_start) +
                                              (320 - ev[0].decided_sample % 320) % 320);
        }
    }
}

TEST_P(vad_engines, two_clips_two_utterances) {
    clip a = load_clip("0880"), b = load_clip("0930");
    std::vector<int16_t> pcm = silence_ms(1000);
    append(pcm, a.pcm);
    append(pcm, silence_ms(1500));
    size_t b_at = pcm.size();
    append(pcm, b.pcm);
    append(pcm, silence_ms(1000));
    pcm = with_background(pcm, background_dbfs(a));
    auto ev = run(model_for(GetParam()), pcm);
    ASSERT_EQ(ev.size(), 4u);
    EXPECT_EQ(count(ev, VAD_EVENT_SPEECH_STARTED), 2u);
    EXPECT_EQ(ev[2].type, VAD_EVENT_SPEECH_STARTED);
    EXPECT_NEAR(ev[2].ms(), b_at / 16.0 + b.onset_ms, 100);
}

TEST_P(vad_engines, short_bursts_are_not_speech) {
    clip c = load_clip("0880");
    // 100 ms taken from the middle of a word ("not"), a 100 ms noise burst and a click.
    std::vector<int16_t> word(c.pcm.begin() + 16 * 600, c.pcm.begin() + 16 * 700);
    std::vector<int16_t> burst = noise(1600, -12, 7);
    std::vector<int16_t> click(1600);
    for (size_t i = 0; i < click.size(); ++i)
        click[i] = int16_t(30000 * std::exp(-double(i) / 200) * ((i / 8) % 2 ? 1 : -1));
    const std::vector<int16_t> *bursts[] = {&word, &burst, &click};
    for (int k = 0; k < 3; ++k) {
        std::vector<int16_t> pcm = noise(16000, -65, 1);
        append(pcm, *bursts[k]);
        append(pcm, noise(16000, -65, 2));
        vad_stream vad(model_for(GetParam()));
        auto ev = run(vad, pcm, 320);
        EXPECT_TRUE(ev.empty()) << "burst " << k;
    }
}

TEST_P(vad_engines, silence_and_low_noise_give_no_events) {
    for (double db : {-90.0, -60.0, -50.0, -40.0}) {
        std::vector<int16_t> pcm = db < -80 ? silence_ms(5000) : noise(16000 * 5, db, 3);
        auto ev = run(model_for(GetParam()), pcm);
        EXPECT_TRUE(ev.empty()) << db << " dBFS";
    }
}

TEST_P(vad_engines, per_stream_overrides) {
    clip c = load_clip("0930");
    std::vector<int16_t> pcm = padded(c, 500, 1500);
    auto model = model_for(GetParam());
    vad_params fast, slow;
    fast.min_silence_ms = 200;
    slow.min_silence_ms = 800;
    auto a = run(model, pcm, fast), b = run(model, pcm, slow);
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    double gap = (b[1].decided_sample - a[1].decided_sample) / 16.0;
    printf("[%s] stop decided after %.0f ms (min_silence 200) and %.0f ms (800)\n",
           GetParam().c_str(), a[1].delay_ms(), b[1].delay_ms());
    EXPECT_NEAR(gap, 600, 64);
    EXPECT_GE(a[1].delay_ms(), 200);
    EXPECT_LT(a[1].delay_ms(), 200 + 33);

    // set_params mid-stream, and a threshold no window reaches.
    vad_stream vad(model);
    vad_params p;
    p.min_silence_ms = 200;
    vad.set_params(p);
    EXPECT_EQ(vad.params().min_silence_ms, 200);
    auto ev = run(vad, pcm, 480);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[1].decided_sample, a[1].decided_sample);
    // A higher threshold starts no earlier.
    vad_params strict;
    strict.threshold = 0.9f;
    auto s = run(model, pcm, strict);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_GE(s[0].sample, a[0].sample);
    p.threshold = 2;
    EXPECT_THROW(vad.set_params(p), vad_error);

    // min_speech_ms: a 700 ms excerpt is speech at 250 ms but not at 1000 ms.
    std::vector<int16_t> shortish = silence_ms(500);
    shortish.insert(shortish.end(), c.pcm.begin() + 16 * 300, c.pcm.begin() + 16 * 1000);
    append(shortish, silence_ms(1000));
    shortish = with_background(shortish, background_dbfs(c));
    vad_params patient;
    patient.min_speech_ms = 1000;
    EXPECT_EQ(run(model, shortish).size(), 2u);
    EXPECT_TRUE(run(model, shortish, patient).empty());
}

TEST_P(vad_engines, frame_size_does_not_matter) {
    clip c = load_clip("0880");
    std::vector<int16_t> pcm = padded(c, 700, 900);
    append(pcm, padded(c, 0, 800));
    auto model = model_for(GetParam());
    auto ref = run(model, pcm, {}, 512);
    ASSERT_EQ(ref.size(), 4u);
    for (size_t frame : {1, 7, 160, 333, 511, 513, 1000, 4096, 1 << 20}) {
        auto ev = run(model, pcm, {}, frame);
        ASSERT_EQ(ev.size(), ref.size()) << frame;
        for (size_t i = 0; i < ev.size(); ++i) {
            EXPECT_EQ(ev[i].type, ref[i].type) << frame;
            EXPECT_EQ(ev[i].sample, ref[i].sample) << frame;
            EXPECT_EQ(ev[i].decided_sample, ref[i].decided_sample) << frame;
            EXPECT_EQ(ev[i].audio_start, ref[i].audio_start) << frame;
            if (ev[i].type != VAD_EVENT_SPEECH_STARTED) continue;
            // The padding and the speech up to the decision are the same audio.
            size_t n = size_t(ref[i].decided_sample - ref[i].audio_start);
            ASSERT_GE(ev[i].audio.size(), n);
            ASSERT_GE(ref[i].audio.size(), n);
            EXPECT_TRUE(std::equal(ev[i].audio.begin(), ev[i].audio.begin() + n,
                                   pcm.begin() + ev[i].audio_start))
                << frame;
        }
    }
}

TEST_P(vad_engines, state_accessors_reset_and_finish) {
    clip c = load_clip("0880");
    vad_stream vad(model_for(GetParam()));
    EXPECT_TRUE(vad.process({}).empty());
    std::vector<int16_t> all = padded(c, 500, 1000);
    std::vector<int16_t> pcm(all.begin(), all.begin() + ptrdiff_t(500 * 16 + c.pcm.size()));
    auto ev = run(vad, pcm, 320);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_TRUE(vad.in_speech());
    EXPECT_EQ(vad.position(), int64_t(pcm.size()));
    // Silence after speech: trailing_silence_ms grows until the turn ends.
    int last = -1;
    bool stopped = false;
    for (size_t i = pcm.size(); i + 320 <= all.size() && !stopped; i += 320) {
        auto e = vad.process(std::span(all).subspan(i, 320));
        stopped = !e.empty();
        if (!stopped) {
            EXPECT_GE(vad.trailing_silence_ms(), last);
            last = vad.trailing_silence_ms();
        }
    }
    EXPECT_TRUE(stopped);
    EXPECT_GE(last, 400);
    EXPECT_LT(vad.probability(), 0.5f);
    EXPECT_FALSE(vad.in_speech());
    EXPECT_EQ(vad.trailing_silence_ms(), 0);

    // finish() closes an open utterance.
    vad.reset();
    EXPECT_EQ(vad.position(), 0);
    ev = run(vad, pcm, 320);
    ASSERT_EQ(ev.size(), 1u);
    auto fin = vad.finish();
    ASSERT_EQ(fin.size(), 1u);
    EXPECT_EQ(fin[0].type, VAD_EVENT_SPEECH_STOPPED);
    EXPECT_FALSE(vad.in_speech());
    EXPECT_TRUE(vad.finish().empty());

    // pending_speech_ms counts unconfirmed speech.
    vad.reset();
    std::vector<int16_t> onset = room_tone(c, 500);
    onset.insert(onset.end(), c.pcm.begin() + 16 * 210, c.pcm.begin() + 16 * 360);
    EXPECT_TRUE(run(vad, onset, 320).empty());
    EXPECT_GT(vad.pending_speech_ms(), 0);
    EXPECT_LT(vad.pending_speech_ms(), 250);
}

TEST_P(vad_engines, streams_share_a_model_across_threads) {
    clip c = load_clip("0890");
    std::vector<int16_t> pcm = padded(c, 500, 1000);
    auto model = model_for(GetParam());
    auto ref = run(model, pcm);
    std::vector<vad_event> got[3];
    {
        std::vector<std::jthread> threads;
        for (auto &g : got)
            threads.emplace_back([&] { g = run(model, pcm); });
    }
    for (auto &g : got) {
        ASSERT_EQ(g.size(), ref.size());
        for (size_t i = 0; i < g.size(); ++i)
            EXPECT_EQ(g[i].sample, ref[i].sample);
    }
}

INSTANTIATE_TEST_SUITE_P(vad, vad_engines, ::testing::Values("silero", "energy"));

// Cost per second of audio and the delays, over all clips (printed, with loose bounds).
TEST(vad, silero_cost_and_delays) {
    NEED_SILERO();
    std::vector<int16_t> pcm;
    std::vector<clip> clips;
    for (const char *id : clip_ids) {
        clips.push_back(load_clip(id));
        append(pcm, silence_ms(1000));
        append(pcm, clips.back().pcm);
    }
    append(pcm, silence_ms(1000));
    pcm = with_background(pcm, -50);
    vad_stream vad(silero());
    auto t0 = std::chrono::steady_clock::now();
    auto ev = run(vad, pcm, 320);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    double seconds = pcm.size() / 16000.0;
    ASSERT_EQ(ev.size(), 2 * clips.size());
    double on_err = 0, end_err = 0, on_delay = 0, stop_delay = 0;
    double offset = 0;
    for (size_t i = 0; i < clips.size(); ++i) {
        offset += 1000;
        on_err += std::abs(ev[2 * i].ms() - (offset + clips[i].onset_ms));
        end_err += std::abs(ev[2 * i + 1].ms() - (offset + clips[i].end_ms));
        on_delay += ev[2 * i].decided_sample / 16.0 - (offset + clips[i].onset_ms);
        stop_delay += ev[2 * i + 1].decided_sample / 16.0 - (offset + clips[i].end_ms);
        offset += clips[i].pcm.size() / 16.0;
    }
    double n = double(clips.size());
    printf("[silero] %.2f ms per second of audio (%.1f s in %.0f ms, one thread); mean |onset "
           "error| %.0f ms, mean |end error| %.0f ms; onset decided %.0f ms after the true onset, "
           "end of turn %.0f ms after the true end (min_speech 250, min_silence 500)\n",
           ms / seconds, seconds, ms, on_err / n, end_err / n, on_delay / n, stop_delay / n);
    EXPECT_LT(ms / seconds, 100); // real time on one core with a wide margin
}
