// Whisper and Parakeet engines on tiny models with random weights, written in the real file
// formats by tests/gen/make-tiny-{whisper,parakeet}.py at test time. The transcripts are
// nonsense; the tests check the pipeline: loading, streaming, partials, encoder sizing, errors
// and cancellation.
#include "asr/asr.h"
#include "audio/audio-file.h"
#include "generated.h"
#include "text/utf8.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

namespace parley {
// Test accessors, defined in asr-whisper.cpp and asr-parakeet.cpp.
int asr_whisper_last_audio_ctx(const asr_stream &stream);
int asr_whisper_decode_count(const asr_stream &stream);
int asr_parakeet_chunk_count(const asr_stream &stream);
} // namespace parley

using namespace parley;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

const std::string clip =
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

fs::path source_dir() {
    if (const char *src = getenv("PARLEY_SOURCE_DIR")) return src;
    return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

// Runs the generator once per build: the model goes next to the test binary and is made again
// when the generator (or its ggml_file.py) is newer; parallel test processes wait for one
// generation (generated.h).
std::string tiny_model(const std::string &kind) {
    fs::path script = source_dir() / "tests" / "gen" / ("make-tiny-" + kind + ".py");
    fs::path out = fs::read_symlink("/proc/self/exe").parent_path() / "test-models" /
                   ("tiny-" + kind + ".bin");
    fs::path common = script.parent_path() / "ggml_file.py";
    return parley::testing::generate_once(out, out, {script, common},
                                          "python3 '" + script.string() + "'")
        .string();
}

std::vector<int16_t> speech(double seconds) {
    pcm_audio audio = read_audio_file(clip);
    EXPECT_EQ(audio.sample_rate, ASR_SAMPLE_RATE);
    std::vector<int16_t> out;
    size_t n = size_t(seconds * ASR_SAMPLE_RATE);
    while (out.size() < n) {
        size_t take = std::min(n - out.size(), audio.samples.size());
        out.insert(out.end(), audio.samples.begin(), audio.samples.begin() + take);
    }
    return out;
}

void feed(asr_stream &stream, const std::vector<int16_t> &pcm) {
    const size_t frame = ASR_SAMPLE_RATE / 50; // 20 ms, as the session sends it
    for (size_t i = 0; i < pcm.size(); i += frame)
        stream.accept(std::span<const int16_t>(pcm).subspan(i, std::min(frame, pcm.size() - i)));
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

asr_config config_for(const std::string &engine) {
    asr_config config;
    config.engine = engine;
    config.model_path = tiny_model(engine);
    config.pool = 1;
    config.partial_interval_ms = 1000;
    return config;
}

// Missing file, wrong magic, files cut in the header, the mel filters, the vocabulary and the
// tensors: each an asr_error naming the file (the libraries' own loaders crash on a cut header
// and load a file without tensors as an empty model).
void expect_bad_files_named(const std::string &engine) {
    std::string good = tiny_model(engine);
    fs::path dir = fs::path(good).parent_path();
    std::string missing = (dir / (engine + "-missing.bin")).string();
    std::string wrong_magic = (dir / (engine + "-wrong-magic.bin")).string();
    fs::remove(missing);
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::vector<std::string> paths = {missing, wrong_magic};
    for (size_t cut : {size_t(6), size_t(30), size_t(1000), size_t(100000), bytes.size() / 2,
                       bytes.size() - 1}) {
        std::string path = (dir / (engine + "-cut-" + std::to_string(cut) + ".bin")).string();
        std::ofstream(path, std::ios::binary) << bytes.substr(0, cut);
        paths.push_back(path);
    }
    bytes[0] = 'G';
    bytes[1] = 'G';
    std::ofstream(wrong_magic, std::ios::binary) << bytes;

    for (const std::string &path : paths) {
        asr_config config = config_for(engine);
        config.model_path = path;
        try {
            make_asr_engine(config);
            ADD_FAILURE() << engine << " loaded " << path;
        } catch (const asr_error &e) {
            std::string what = e.what();
            EXPECT_NE(what.find(path), std::string::npos) << what;
            EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
            std::cerr << "  " << what << "\n";
        }
    }
}

} // namespace

TEST(asr_whisper, transcribes_speech_in_bounded_time_and_is_reusable) {
    auto t0 = clock_type::now();
    auto asr = make_asr_engine(config_for("whisper"));
    std::cerr << "  load: " << ms_since(t0) << " ms\n";
    EXPECT_EQ(asr->name(), "whisper");
    auto stream = asr->open();
    EXPECT_FALSE(stream->partial_is_final());

    for (int utterance = 0; utterance < 2; ++utterance) {
        feed(*stream, speech(3.0));
        t0 = clock_type::now();
        std::string text = stream->finish();
        double ms = ms_since(t0);
        std::cerr << "  3 s utterance: " << ms << " ms, \"" << text.substr(0, 60) << "...\"\n";
        EXPECT_TRUE(utf8_valid(text));
        EXPECT_LT(ms, 30000) << "decode of 3 s (generous: CTest runs tests in parallel on 2 cores)";
        EXPECT_EQ(asr_whisper_last_audio_ctx(*stream), 1500) << "whisper-cli's full context";
    }
    EXPECT_EQ(asr_whisper_decode_count(*stream), 2);
    // Nothing buffered: nothing to decode.
    EXPECT_EQ(stream->finish(), "");
    EXPECT_EQ(asr_whisper_decode_count(*stream), 2);
}

size_t thread_count() {
    size_t n = 0;
    for ([[maybe_unused]] const auto &task : fs::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

// Each decode runs on a thread of its own, so the OpenMP team of its ggml graphs ends with it
// (core/own-thread.h): a team left behind per stream would slow every other ggml user in the
// process, the language model's generation first.
void expect_no_threads_left_behind(const std::string &engine) {
    asr_config config = config_for(engine);
    config.threads = 2;
    auto asr = make_asr_engine(config);
    auto stream = asr->open();
    size_t before = thread_count();
    feed(*stream, speech(2.0));
    EXPECT_TRUE(utf8_valid(stream->finish()));
    // The team's threads are told to end when the decode's thread ends; they may take a moment
    // on a busy machine.
    auto deadline = clock_type::now() + std::chrono::seconds(5);
    while (thread_count() > before && clock_type::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(thread_count(), before);
}

TEST(asr_whisper, a_decode_leaves_no_threads_behind) {
    expect_no_threads_left_behind("whisper");
}

TEST(asr_parakeet, a_decode_leaves_no_threads_behind) {
    expect_no_threads_left_behind("parakeet");
}

TEST(asr_whisper, partial_redecodes_only_after_the_interval) {
    auto asr = make_asr_engine(config_for("whisper")); // partials every 1000 ms
    auto stream = asr->open();
    auto audio = speech(2.5);
    auto part = [&](double from, double to) {
        return std::vector<int16_t>(audio.begin() + size_t(from * ASR_SAMPLE_RATE),
                                    audio.begin() + size_t(to * ASR_SAMPLE_RATE));
    };
    feed(*stream, part(0.0, 0.5));
    EXPECT_EQ(stream->partial(), "");
    EXPECT_EQ(asr_whisper_decode_count(*stream), 0);

    feed(*stream, part(0.5, 1.0));
    std::string first = stream->partial();
    EXPECT_EQ(asr_whisper_decode_count(*stream), 1);
    EXPECT_TRUE(utf8_valid(first));
    EXPECT_EQ(stream->partial(), first) << "no new audio: the last partial, no decode";
    EXPECT_EQ(asr_whisper_decode_count(*stream), 1);

    feed(*stream, part(1.0, 1.5));
    EXPECT_EQ(stream->partial(), first);
    EXPECT_EQ(asr_whisper_decode_count(*stream), 1);

    feed(*stream, part(1.5, 2.5));
    stream->partial();
    EXPECT_EQ(asr_whisper_decode_count(*stream), 2);
    EXPECT_EQ(asr_whisper_last_audio_ctx(*stream), 125) << "2.5 s of audio";

    stream->finish();
    EXPECT_EQ(asr_whisper_decode_count(*stream), 3);
    feed(*stream, part(0.0, 0.5));
    EXPECT_EQ(stream->partial(), "") << "a new utterance starts its own interval";
    EXPECT_EQ(asr_whisper_decode_count(*stream), 3);
}

TEST(asr_whisper, fast_sizes_the_encoder_context_to_the_utterance) {
    asr_config config = config_for("whisper");
    config.fast = true;
    auto asr = make_asr_engine(config);
    auto stream = asr->open();
    feed(*stream, speech(1.0));
    auto t0 = clock_type::now();
    stream->finish();
    double short_ms = ms_since(t0);
    int short_ctx = asr_whisper_last_audio_ctx(*stream);

    feed(*stream, speech(10.0));
    t0 = clock_type::now();
    stream->finish();
    double long_ms = ms_since(t0);
    int long_ctx = asr_whisper_last_audio_ctx(*stream);

    std::cerr << "  1 s: audio_ctx " << short_ctx << ", " << short_ms << " ms; 10 s: audio_ctx "
              << long_ctx << ", " << long_ms << " ms\n";
    EXPECT_EQ(short_ctx, 50); // 16000 samples / 320 per encoder frame
    EXPECT_EQ(long_ctx, 500);
    EXPECT_LT(short_ctx, long_ctx);

    feed(*stream, speech(40.0));
    stream->finish();
    EXPECT_EQ(asr_whisper_last_audio_ctx(*stream), 1500) << "at most the model's 30 s";
}

// The final transcript is whisper-cli's on the same model and file: the same settings (beam
// search of 5, the temperature fallback, the full encoder context, timestamps) give the same
// tokens. The generated model's words are nonsense, so the texts are compared, not a WER.
TEST(asr_whisper, the_final_transcript_is_whisper_clis) {
    std::string cli = "/usr/bin/whisper-cli";
    if (!fs::exists(cli)) GTEST_SKIP() << "no whisper-cli";
    std::string model = tiny_model("whisper");
    std::string out = (fs::path(model).parent_path() / "whisper-cli.txt").string();
    // Its defaults (-nt would decode without timestamps: other tokens); the timestamps it
    // prints before each segment's text are cut below.
    std::string cmd =
        cli + " -m '" + model + "' -f '" + clip + "' -l en -np -t 2 > '" + out + "' 2> /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(out);
    std::string bare, line;
    while (std::getline(f, line)) {
        size_t close = line.find("]  ");
        if (line.starts_with("[") && close != std::string::npos) line = line.substr(close + 1);
        bare += line + " ";
    }
    auto squeeze = [](const std::string &s) {
        std::string r;
        for (char c : s) {
            bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t';
            if (space && (r.empty() || r.back() == ' ')) continue;
            r += space ? ' ' : c;
        }
        while (!r.empty() && r.back() == ' ')
            r.pop_back();
        return r;
    };
    asr_config config = config_for("whisper");
    config.threads = 2;
    auto asr = make_asr_engine(config);
    auto stream = asr->open();
    pcm_audio audio = read_audio_file(clip);
    feed(*stream, audio.samples);
    std::string parley = stream->finish();
    std::cerr << "  whisper-cli: \"" << squeeze(bare).substr(0, 80) << "\"\n  parley:      \""
              << squeeze(parley).substr(0, 80) << "\"\n";
    EXPECT_FALSE(squeeze(bare).empty());
    EXPECT_EQ(squeeze(parley), squeeze(bare));
    // With fast, one greedy pass on a sized context: not what whisper-cli does.
    config.fast = true;
    auto fast = make_asr_engine(config);
    auto fast_stream = fast->open();
    feed(*fast_stream, audio.samples);
    fast_stream->finish();
    EXPECT_LT(asr_whisper_last_audio_ctx(*fast_stream), 1500);
}

// Word times are whisper.cpp's token timestamps from the final decode, as whisper-cli computes
// them for its full JSON (-ojf): the same words (a token starting with a space starts one) at
// the same times, and the same transcript as without them.
TEST(asr_whisper, word_times_are_whisper_clis_token_timestamps) {
    std::string cli = "/usr/bin/whisper-cli";
    if (!fs::exists(cli)) GTEST_SKIP() << "no whisper-cli";
    std::string model = tiny_model("whisper");
    std::string base = (fs::path(model).parent_path() / "whisper-cli-words").string();
    std::string cmd = cli + " -m '" + model + "' -f '" + clip + "' -l en -np -t 2 -ojf -of '" +
                      base + "' > /dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(base + ".json");
    nlohmann::json j = nlohmann::json::parse(f);
    std::vector<asr_word> expected;
    for (const auto &segment : j.at("transcription"))
        for (const auto &token : segment.at("tokens")) {
            std::string text = token.at("text");
            if (text.starts_with("[_") && text.ends_with("]")) continue; // special, timestamp
            double from = token.at("offsets").at("from").get<double>() / 1000,
                   to = token.at("offsets").at("to").get<double>() / 1000;
            if (text.starts_with(" ") || expected.empty()) {
                expected.push_back({text.starts_with(" ") ? text.substr(1) : text, from, to});
            } else {
                expected.back().word += text;
                expected.back().end = std::max(expected.back().end, to);
            }
        }
    std::erase_if(expected, [](asr_word &w) {
        while (!w.word.empty() && std::ispunct(static_cast<unsigned char>(w.word.back())))
            w.word.pop_back();
        while (!w.word.empty() && std::ispunct(static_cast<unsigned char>(w.word.front())))
            w.word.erase(0, 1);
        return w.word.empty();
    });
    ASSERT_FALSE(expected.empty());

    asr_config config = config_for("whisper");
    config.threads = 2;
    auto asr = make_asr_engine(config);
    ASSERT_TRUE(asr->times_words());
    auto stream = asr->open();
    pcm_audio audio = read_audio_file(clip);
    feed(*stream, audio.samples);
    std::vector<asr_word> words;
    std::string text = stream->finish_timed(&words);
    feed(*stream, audio.samples);
    EXPECT_EQ(stream->finish(), text) << "the same decode with or without times";
    const double length = double(audio.samples.size()) / ASR_SAMPLE_RATE;
    ASSERT_EQ(words.size(), expected.size());
    for (size_t i = 0; i < words.size(); ++i) {
        SCOPED_TRACE(words[i].word);
        EXPECT_EQ(words[i].word, expected[i].word);
        EXPECT_NEAR(words[i].start, std::min(expected[i].start, length), 0.0101);
        EXPECT_NEAR(words[i].end, std::min(expected[i].end, length), 0.0101);
        EXPECT_LE(words[i].start, words[i].end);
        EXPECT_NE(text.find(words[i].word), std::string::npos);
    }
}

// The end pass as a job for another thread: the stream goes on with the next utterance (its
// partials) while the job decodes the last one on a decoder state of its own.
TEST(asr_whisper, a_deferred_finish_frees_the_stream_at_once) {
    auto asr = make_asr_engine(config_for("whisper"));
    auto stream = asr->open();
    feed(*stream, speech(2.0));
    std::string direct = stream->finish();
    feed(*stream, speech(2.0));
    auto job = stream->finish_deferred();
    feed(*stream, speech(1.5));
    std::string next = stream->partial(); // the next utterance, meanwhile
    EXPECT_TRUE(utf8_valid(next));
    std::thread other([&] { EXPECT_EQ(job(), direct); });
    other.join();
    // In a pause: the same decode of the audio so far, and the utterance goes on.
    auto early = stream->end_pass_so_far();
    ASSERT_TRUE(early);
    std::string so_far = early();
    feed(*stream, speech(0.5));
    EXPECT_NE(asr_whisper_decode_count(*stream), -1);
    stream->drop(); // the caller had its transcript from the early pass
    EXPECT_EQ(stream->finish(), "") << "nothing left after drop";
    EXPECT_TRUE(utf8_valid(so_far));
}

TEST(asr_whisper, bad_model_files_give_one_line_errors_naming_the_file) {
    expect_bad_files_named("whisper");
    asr_config other = config_for("whisper");
    other.model_path = tiny_model("parakeet"); // a ggml file of another architecture
    EXPECT_THROW(make_asr_engine(other), asr_error);
    asr_config config = config_for("whisper");
    config.language = "xx";
    EXPECT_THROW(make_asr_engine(config), asr_error);
}

TEST(asr_whisper, destroying_a_stream_during_decode_aborts_it) {
    auto asr = make_asr_engine(config_for("whisper"));
    auto audio = speech(30.0);
    auto stream = asr->open();
    feed(*stream, audio);
    auto t0 = clock_type::now();
    EXPECT_FALSE(stream->finish().empty()) << "30 s of speech give the random model's words";
    double full_ms = ms_since(t0);

    feed(*stream, audio);
    std::string text = "not returned";
    std::thread decoder([&] { text = stream->finish(); });
    while (asr_whisper_decode_count(*stream) < 2)
        std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    t0 = clock_type::now();
    stream.reset();
    double destroy_ms = ms_since(t0);
    decoder.join();
    std::cerr << "  30 s decode: " << full_ms << " ms; destroyed 20 ms into one in " << destroy_ms
              << " ms\n";
    EXPECT_EQ(text, "") << "an aborted decode gives no text";
    // The engine still works, and the stream's pooled state is usable again.
    auto again = asr->open();
    feed(*again, speech(1.0));
    EXPECT_TRUE(utf8_valid(again->finish()));
}

TEST(asr_parakeet, streams_pieces_as_audio_arrives_and_finish_flushes) {
    auto t0 = clock_type::now();
    auto asr = make_asr_engine(config_for("parakeet")); // pieces of 1 s
    std::cerr << "  load: " << ms_since(t0) << " ms\n";
    EXPECT_EQ(asr->name(), "parakeet");
    auto stream = asr->open();
    EXPECT_FALSE(stream->partial_is_final());

    for (int utterance = 0; utterance < 2; ++utterance) {
        auto audio = speech(3.0);
        int chunks_before = asr_parakeet_chunk_count(*stream);
        std::vector<int16_t> head(audio.begin(), audio.begin() + 2 * ASR_SAMPLE_RATE + 4000);
        std::vector<int16_t> tail(audio.begin() + head.size(), audio.end());
        t0 = clock_type::now();
        feed(*stream, head);
        double head_ms = ms_since(t0);
        // Two pieces transcribed while the audio arrived.
        EXPECT_EQ(asr_parakeet_chunk_count(*stream) - chunks_before, 2);
        std::string partial = stream->partial();
        EXPECT_TRUE(utf8_valid(partial));
        EXPECT_EQ(asr_parakeet_chunk_count(*stream) - chunks_before, 2)
            << "partial() decodes nothing";

        feed(*stream, tail);
        t0 = clock_type::now();
        int chunks_at_finish = asr_parakeet_chunk_count(*stream);
        std::string text = stream->finish();
        double finish_ms = ms_since(t0);
        EXPECT_EQ(asr_parakeet_chunk_count(*stream), chunks_at_finish + 1);
        std::cerr << "  2.25 s streamed in " << head_ms << " ms; finish " << finish_ms << " ms: \""
                  << text.substr(0, 60) << "...\"\n";
        EXPECT_TRUE(utf8_valid(text));
        // accept() took the pieces that filled up; finish() transcribed the rest.
        EXPECT_GE(asr_parakeet_chunk_count(*stream) - chunks_before, 3);
        EXPECT_EQ(text.rfind(partial, 0), 0u) << "the final text goes on from the partial";
        EXPECT_LT(finish_ms, 30000);
    }
    EXPECT_EQ(stream->finish(), "");
}

// Word times from the TDT tokens' frames: with the clip in one piece, parakeet-cli's tokens (its
// -ps listing) make the same words at the same times; with 1 s pieces, each piece's times are
// moved to the utterance's, so the words run in order through the whole clip.
TEST(asr_parakeet, word_times_are_the_tokens_frames_across_pieces) {
    std::string cli = "/usr/bin/parakeet-cli";
    if (!fs::exists(cli)) GTEST_SKIP() << "no parakeet-cli";
    std::string model = tiny_model("parakeet");
    std::string out = (fs::path(model).parent_path() / "parakeet-cli-tokens.txt").string();
    std::string cmd = cli + " -m '" + model + "' -f '" + clip + "' -t 2 -ps > '" + out +
                      "' 2>&1"; // the listing goes to stderr
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    // "  [3] id= 3236 frame= 57 ... t0= 456 t1= 480 word_start=true "▁pco""
    std::vector<asr_word> expected;
    std::ifstream f(out);
    std::string line;
    const std::string mark = "\xe2\x96\x81";
    while (std::getline(f, line)) {
        size_t t0 = line.find(" t0="), t1 = line.find(" t1="), ws = line.find(" word_start="),
               q = line.find('"');
        if (t0 == std::string::npos || t1 == std::string::npos || ws == std::string::npos ||
            q == std::string::npos || line.back() != '"')
            continue;
        std::string text = line.substr(q + 1, line.size() - q - 2);
        bool start = line.compare(ws + 12, 4, "true") == 0 || text.starts_with(mark);
        if (text.starts_with(mark)) text.erase(0, mark.size());
        double from = std::stod(line.substr(t0 + 4)) / 100,
               to = std::stod(line.substr(t1 + 4)) / 100;
        if (start || expected.empty())
            expected.push_back({text, from, to});
        else {
            expected.back().word += text;
            expected.back().end = std::max(expected.back().end, to);
        }
    }
    ASSERT_FALSE(expected.empty()) << "no tokens listed in " << out;
    pcm_audio audio = read_audio_file(clip);
    const double length = double(audio.samples.size()) / ASR_SAMPLE_RATE;

    asr_config whole = config_for("parakeet");
    whole.partial_interval_ms = 60000; // the longest piece the model takes
    auto asr = make_asr_engine(whole);
    ASSERT_TRUE(asr->times_words());
    auto stream = asr->open();
    feed(*stream, audio.samples);
    ASSERT_EQ(asr_parakeet_chunk_count(*stream), 0) << "the clip fits one piece";
    std::vector<asr_word> words;
    std::string text = stream->finish_timed(&words);
    ASSERT_EQ(words.size(), expected.size()) << text;
    for (size_t i = 0; i < words.size(); ++i) {
        SCOPED_TRACE(words[i].word);
        EXPECT_EQ(words[i].word, expected[i].word);
        EXPECT_NEAR(words[i].start, std::min(expected[i].start, length), 0.0101);
        EXPECT_NEAR(words[i].end, std::min(expected[i].end, length), 0.0101);
    }

    auto pieces = make_asr_engine(config_for("parakeet"));
    auto piecewise = pieces->open();
    feed(*piecewise, audio.samples);
    EXPECT_GE(asr_parakeet_chunk_count(*piecewise), 5);
    text = piecewise->finish_timed(&words);
    std::string joined;
    for (const asr_word &w : words)
        joined += (joined.empty() ? "" : " ") + w.word;
    EXPECT_EQ(joined, text);
    ASSERT_GE(words.size(), 5u);
    for (size_t i = 0; i < words.size(); ++i) {
        EXPECT_LE(words[i].start, words[i].end);
        EXPECT_LE(words[i].end, length + 1e-9);
        if (i > 0) EXPECT_GE(words[i].start, words[i - 1].end - 1e-9) << "in order";
    }
    EXPECT_GT(words.back().end, length - 1.5) << "the last piece's words at the clip's end";
}

TEST(asr_parakeet, short_tail_is_decoded_with_the_last_piece) {
    auto asr = make_asr_engine(config_for("parakeet"));
    auto stream = asr->open();
    feed(*stream, speech(1.2)); // one 1 s piece (cut at a quiet point) and a short tail
    EXPECT_EQ(asr_parakeet_chunk_count(*stream), 1);
    std::string text = stream->finish();
    EXPECT_EQ(asr_parakeet_chunk_count(*stream), 2);
    EXPECT_TRUE(utf8_valid(text));
}

TEST(asr_parakeet, bad_model_files_give_one_line_errors_naming_the_file) {
    expect_bad_files_named("parakeet");
    asr_config other = config_for("parakeet");
    other.model_path = tiny_model("whisper");
    EXPECT_THROW(make_asr_engine(other), asr_error);
}

TEST(asr_parakeet, destroying_a_stream_during_decode_does_not_crash) {
    auto asr = make_asr_engine(config_for("parakeet"));
    auto stream = asr->open();
    auto audio = speech(30.0);
    std::thread feeder([&] { stream->accept(audio); });
    while (asr_parakeet_chunk_count(*stream) == 0)
        std::this_thread::yield();
    stream.reset();
    feeder.join();
    auto again = asr->open();
    feed(*again, speech(1.5));
    EXPECT_TRUE(utf8_valid(again->finish()));
}
