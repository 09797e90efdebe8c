// The audio-LLM path on a tiny model pair with random weights (a llama text model with
// stories260K's tokenizer and Ultravox/Voxtral-style audio projectors), written in the real GGUF
// formats by tests/gen/make-tiny-audio-llm.py at test time and run through libmtmd. The words
// are nonsense; the tests check the pipeline: loading, transcribe and direct modes, streaming,
// cancellation, the KV cache after an audio turn, and clear errors for bad projector files.
#include "asr/asr-audio-llm.h"
#include "audio/audio-file.h"
#include "generated.h"
#include "llm/conversation.h"
#include "llm/llm.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unistd.h>

using namespace parley;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

fs::path source_dir() {
    if (const char *src = getenv("PARLEY_SOURCE_DIR")) return src;
    return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

fs::path tokenizer_model() {
    if (const char *m = getenv("PARLEY_TEST_MODEL"); m && *m) return m;
    return source_dir() / ".." / "shared" / "models" / "stories260K.gguf";
}

// Runs the generator once per build into the test binary's folder (again when the generator is
// newer); parallel test processes wait for one generation (generated.h).
fs::path tiny_models() {
    fs::path script = source_dir() / "tests" / "gen" / "make-tiny-audio-llm.py";
    fs::path out = fs::read_symlink("/proc/self/exe").parent_path() / "test-models" / "audio-llm";
    return parley::testing::generate_once(out, out / "text.gguf", {script},
                                          "python3 '" + script.string() + "' '" +
                                              tokenizer_model().string() + "'");
}

#define REQUIRE_MODELS()                                                                           \
    if (!fs::exists(tokenizer_model()))                                                            \
        GTEST_SKIP() << "no tokenizer model at " << tokenizer_model();                             \
    fs::path dir = tiny_models();                                                                  \
    ASSERT_FALSE(dir.empty())

llm_config config_for(const fs::path &dir, const std::string &projector = "ultravox") {
    llm_config cfg;
    cfg.model_path = (dir / "text.gguf").string();
    if (!projector.empty()) cfg.mmproj_path = (dir / ("mmproj-" + projector + ".gguf")).string();
    cfg.context = 1024;
    cfg.slots = 3;
    return cfg;
}

std::vector<float> speech(double seconds) {
    pcm_audio audio = read_audio_file("/usr/share/pocketsphinx/test/data/librivox/"
                               "sense_and_sensibility_01_austen_64kb-0870.wav");
    EXPECT_EQ(audio.sample_rate, 16000);
    std::vector<int16_t> pcm;
    size_t n = size_t(seconds * 16000);
    while (pcm.size() < n) {
        size_t take = std::min(n - pcm.size(), audio.samples.size());
        pcm.insert(pcm.end(), audio.samples.begin(), audio.samples.begin() + take);
    }
    return pcm16_to_float(pcm);
}

// What a request's callbacks saw, in order.
struct collected {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> events; // "t:<transcript>" and "p:<piece>"
    std::string pieces;
    int transcripts = 0;
    bool done = false;
    llm_result result;

    void wait() {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
    }
};

llm_request audio_request(int slot, llm_audio_mode mode, std::vector<float> audio, collected &c,
                          std::vector<chat_message> history = {}) {
    llm_request req;
    req.slot = slot;
    req.audio = std::move(audio);
    req.audio_mode = mode;
    req.max_tokens = 12;
    req.max_transcript_tokens = 6;
    req.sampling.temperature = 0; // greedy: repeatable
    if (!history.empty()) req.messages = [history](int, const token_counter &) { return history; };
    req.on_piece = [&c](std::string_view p) {
        std::lock_guard lock(c.m);
        c.pieces += p;
        c.events.push_back("p:" + std::string(p));
    };
    req.on_transcript = [&c](const std::string &t) {
        std::lock_guard lock(c.m);
        ++c.transcripts;
        c.events.push_back("t:" + t);
    };
    req.on_done = [&c](const llm_result &r) {
        std::lock_guard lock(c.m);
        c.result = r;
        c.done = true;
        c.cv.notify_all();
    };
    return req;
}

llm_request text_request(int slot, std::vector<chat_message> messages, collected &c) {
    llm_request req = audio_request(slot, LLM_AUDIO_TRANSCRIBE, {}, c, std::move(messages));
    req.max_tokens = 16;
    return req;
}

bool ended_normally(const llm_result &r) {
    return r.stop_reason == LLM_STOP_LENGTH || r.stop_reason == LLM_STOP_EOG ||
           r.stop_reason == LLM_STOP_STOP;
}

void expect_load_error(const llm_config &cfg, const std::string &named, const std::string &why) {
    try {
        make_llm_engine(cfg);
        ADD_FAILURE() << "loaded " << cfg.mmproj_path;
    } catch (const llm_error &e) {
        std::string what = e.what();
        EXPECT_NE(what.find(named), std::string::npos) << what;
        EXPECT_NE(what.find(why), std::string::npos) << what;
        EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
        std::cerr << "  " << what << "\n";
    }
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

} // namespace

TEST(audio_llm, transcript_splitter_holds_the_transcript_and_passes_the_reply) {
    transcript_splitter s;
    EXPECT_EQ(s.feed(" hello th"), "");
    EXPECT_EQ(s.feed("ere</trans"), "");
    EXPECT_FALSE(s.done());
    EXPECT_EQ(s.feed("cript>\n"), "");
    EXPECT_TRUE(s.done());
    EXPECT_EQ(s.transcript(), "hello there");
    EXPECT_EQ(s.feed("  Hi"), "Hi");
    EXPECT_EQ(s.feed(" you."), " you.");

    transcript_splitter cut;
    cut.feed("never closed ");
    cut.close();
    EXPECT_EQ(cut.transcript(), "never closed");
    EXPECT_EQ(cut.feed("\nreply"), "reply");
}

TEST(audio_llm, transcribes_with_ultravox_and_voxtral_projectors) {
    REQUIRE_MODELS();
    for (std::string projector : {"ultravox", "voxtral"}) {
        SCOPED_TRACE(projector);
        auto t0 = clock_type::now();
        auto llm = make_llm_engine(config_for(dir, projector));
        double load = ms_since(t0);
        ASSERT_TRUE(llm->supports_audio());
        int slot = llm->acquire_slot();
        collected cold, c; // the second run shows the warm timings
        llm->submit(audio_request(slot, LLM_AUDIO_TRANSCRIBE, speech(3.0), cold));
        llm->submit(audio_request(slot, LLM_AUDIO_TRANSCRIBE, speech(3.0), c));
        c.wait();
        const llm_result &r = c.result;
        EXPECT_TRUE(ended_normally(r)) << llm_stop_name(r.stop_reason) << " " << r.error;
        EXPECT_EQ(r.text, cold.result.text); // greedy
        // One 30 s window: 150 embeddings in the tiny projectors, and Voxtral's [BEGIN_AUDIO].
        if (projector == "ultravox")
            EXPECT_EQ(r.audio_tokens, 150);
        else
            EXPECT_GT(r.audio_tokens, 150);
        EXPECT_NEAR(r.audio_seconds, 3.0, 1e-6);
        EXPECT_GT(r.audio_ms, 0);
        EXPECT_GT(r.prompt_tokens, r.audio_tokens);
        EXPECT_GT(r.generated_tokens, 0);
        EXPECT_EQ(r.transcript, r.text);
        EXPECT_EQ(c.transcripts, 1);
        ASSERT_FALSE(c.events.empty());
        EXPECT_EQ(c.events.back(), "t:" + r.text); // the transcript comes after its pieces
        std::cerr << "  " << projector << ": load " << load << " ms (text model + projector); "
                  << "cold: audio " << cold.result.audio_ms << " ms, first token "
                  << cold.result.first_token_ms << " ms; warm: audio " << r.audio_ms << " ms for "
                  << r.audio_seconds << " s (" << r.audio_ms / r.audio_seconds
                  << " ms per second of audio), prompt with audio " << r.prompt_ms
                  << " ms, first token " << r.first_token_ms << " ms, " << r.generated_tokens
                  << " tokens in " << r.generate_ms << " ms\n";
    }
}

TEST(audio_llm, direct_mode_gives_the_transcript_once_then_streams_the_reply) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    int slot = llm->acquire_slot();
    collected c;
    std::vector<chat_message> history = {{"system", "You are a helpful assistant."},
                                         {"user", "Hello."},
                                         {"assistant", "Hi! How can I help?"}};
    llm->submit(audio_request(slot, LLM_AUDIO_DIRECT, speech(2.0), c, history));
    c.wait();
    const llm_result &r = c.result;
    EXPECT_TRUE(ended_normally(r)) << llm_stop_name(r.stop_reason) << " " << r.error;
    EXPECT_EQ(c.transcripts, 1);
    ASSERT_FALSE(c.events.empty());
    EXPECT_EQ(c.events.front(), "t:" + r.transcript); // before any piece of the reply
    EXPECT_FALSE(r.transcript.empty());
    EXPECT_EQ(c.pieces, r.text); // on_piece got the reply only
    EXPECT_EQ(r.text.find("<transcript>"), std::string::npos);
    // The random model never closes its transcript: it is cut at max_transcript_tokens (6) and
    // the reply (at most max_tokens, 12) follows.
    EXPECT_LE(r.generated_tokens, 6 + 12);
    EXPECT_GT(r.generated_tokens, 6);
    std::cerr << "  transcript '" << r.transcript << "', reply '" << r.text << "'\n";
}

TEST(audio_llm, history_is_cut_to_leave_room_for_the_audio) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    std::vector<turn_record> turns;
    for (int i = 0; i < 40; ++i)
        turns.push_back(
            {.user = "Tell me a story about a cat and a dog number " + std::to_string(i) + ".",
             .assistant = "Once upon a time there was a cat and a dog who played "
                          "in the garden all day long."});
    collected c;
    llm_request req = audio_request(llm->acquire_slot(), LLM_AUDIO_DIRECT, speech(1.0), c);
    int budget = -1;
    req.messages = [&turns, &budget](int b, const token_counter &count) {
        budget = b;
        std::vector<chat_message> m = fit_history("Be brief.", turns, "", b, count);
        m.pop_back(); // fit_history's empty user message: the engine adds the audio turn
        return m;
    };
    llm->submit(std::move(req));
    c.wait();
    EXPECT_TRUE(ended_normally(c.result)) << llm_stop_name(c.result.stop_reason) << " " << c.result.error;
    EXPECT_LT(budget, llm->slot_context() - c.result.audio_tokens);
    EXPECT_LT(c.result.prompt_tokens + 6 + 12, llm->slot_context());
    EXPECT_GT(c.result.prompt_tokens, llm->slot_context() / 2); // history was kept, not dropped
}

TEST(audio_llm, cancels_before_and_during_an_audio_request) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    int slot = llm->acquire_slot();

    collected before;
    llm_request req = audio_request(slot, LLM_AUDIO_DIRECT, speech(1.0), before);
    req.cancel = std::make_shared<std::atomic<bool>>(true);
    llm->submit(std::move(req));
    before.wait();
    EXPECT_EQ(before.result.stop_reason, LLM_STOP_CANCELLED);
    EXPECT_EQ(before.transcripts, 0);
    EXPECT_EQ(before.result.audio_ms, 0);

    // Barge-in as soon as the transcript is known: no reply piece follows.
    collected during;
    req = audio_request(slot, LLM_AUDIO_DIRECT, speech(1.0), during);
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    req.cancel = cancel;
    req.on_transcript = [&during, cancel](const std::string &) {
        std::lock_guard lock(during.m);
        ++during.transcripts;
        cancel->store(true);
    };
    llm->submit(std::move(req));
    during.wait();
    EXPECT_EQ(during.result.stop_reason, LLM_STOP_CANCELLED);
    EXPECT_EQ(during.transcripts, 1);
    EXPECT_EQ(during.pieces, "");

    // The slot still works after both.
    collected after;
    llm->submit(audio_request(slot, LLM_AUDIO_TRANSCRIBE, speech(1.0), after));
    after.wait();
    EXPECT_TRUE(ended_normally(after.result)) << llm_stop_name(after.result.stop_reason);
}

TEST(audio_llm, text_turns_after_an_audio_turn_see_text_only) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    int slot = llm->acquire_slot(), fresh = llm->acquire_slot();
    std::vector<chat_message> history = {{"system", "You are a helpful assistant."}};

    collected voice;
    llm->submit(audio_request(slot, LLM_AUDIO_DIRECT, speech(2.0), voice, history));
    voice.wait();
    ASSERT_TRUE(ended_normally(voice.result)) << llm_stop_name(voice.result.stop_reason);
    // Only the text before the audio is reusable from the audio turn.
    history.push_back({"user", voice.result.transcript});
    history.push_back({"assistant", voice.result.text});
    history.push_back({"user", "Tell me more."});

    collected typed, reference;
    llm->submit(text_request(slot, history, typed));
    llm->submit(text_request(fresh, history, reference));
    typed.wait();
    reference.wait();
    EXPECT_TRUE(ended_normally(typed.result)) << llm_stop_name(typed.result.stop_reason);
    EXPECT_GT(typed.result.cached_tokens, 0); // the system prompt stayed in the cache
    EXPECT_LT(typed.result.cached_tokens, voice.result.prompt_tokens - voice.result.audio_tokens);
    // Greedy on a slot that held audio gives what a fresh slot gives: no audio left in its KV.
    EXPECT_EQ(typed.result.text, reference.result.text);
    EXPECT_EQ(reference.result.cached_tokens, 0);

    // The next text turn reuses the whole previous text turn again.
    history.push_back({"assistant", typed.result.text});
    history.push_back({"user", "And then?"});
    collected next;
    llm->submit(text_request(slot, history, next));
    next.wait();
    EXPECT_TRUE(ended_normally(next.result)) << llm_stop_name(next.result.stop_reason);
    EXPECT_GE(next.result.cached_tokens, typed.result.prompt_tokens - 1);
}

TEST(audio_llm, audio_and_text_requests_run_together) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    int a = llm->acquire_slot(), b = llm->acquire_slot();
    collected voice, typed;
    llm->submit(audio_request(a, LLM_AUDIO_DIRECT, speech(1.5), voice));
    llm->submit(text_request(b, {{"user", "Once upon a time"}}, typed));
    voice.wait();
    typed.wait();
    EXPECT_TRUE(ended_normally(voice.result)) << llm_stop_name(voice.result.stop_reason);
    EXPECT_TRUE(ended_normally(typed.result)) << llm_stop_name(typed.result.stop_reason);
    EXPECT_EQ(voice.transcripts, 1);
    EXPECT_EQ(typed.transcripts, 0);
}

TEST(audio_llm, rejects_bad_projector_files_with_one_line) {
    REQUIRE_MODELS();
    llm_config cfg = config_for(dir);
    cfg.warmup = false;
    fs::path bad = dir / "bad";
    fs::create_directories(bad);
    std::ifstream in(dir / "mmproj-ultravox.gguf", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});

    cfg.mmproj_path = (bad / "missing.gguf").string();
    fs::remove(cfg.mmproj_path);
    expect_load_error(cfg, cfg.mmproj_path, "cannot open");

    cfg.mmproj_path = (bad / "not-gguf.gguf").string();
    std::ofstream(cfg.mmproj_path, std::ios::binary) << "RIFF, not a model at all";
    expect_load_error(cfg, cfg.mmproj_path, "not a GGUF");

    for (size_t cut : {size_t(10), size_t(200), size_t(2000), bytes.size() / 2, bytes.size() - 1}) {
        cfg.mmproj_path = (bad / ("cut-" + std::to_string(cut) + ".gguf")).string();
        std::ofstream(cfg.mmproj_path, std::ios::binary) << bytes.substr(0, cut);
        // Cuts in the header (key-values, tensor list) and in the tensor data.
        expect_load_error(cfg, cfg.mmproj_path, cut <= 2000 ? "corrupt" : "truncated");
    }

    cfg.mmproj_path = (dir / "text.gguf").string(); // a text model given as the projector
    expect_load_error(cfg, cfg.mmproj_path, "not an audio projector");
    cfg.mmproj_path = (dir / "mmproj-no-audio.gguf").string();
    expect_load_error(cfg, cfg.mmproj_path, "no audio encoder");
    cfg.mmproj_path = (dir / "mmproj-wide.gguf").string(); // made for a wider text model
    expect_load_error(cfg, cfg.mmproj_path, "mismatch");
}

TEST(audio_llm, a_model_without_projector_refuses_audio) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir, ""));
    EXPECT_FALSE(llm->supports_audio());
    collected c;
    llm->submit(audio_request(llm->acquire_slot(), LLM_AUDIO_DIRECT, speech(1.0), c));
    c.wait();
    EXPECT_EQ(c.result.stop_reason, LLM_STOP_ERROR);
    EXPECT_NE(c.result.error.find("audio projector"), std::string::npos) << c.result.error;
    EXPECT_EQ(c.transcripts, 0);
    try {
        make_audio_llm_asr(*llm);
        ADD_FAILURE() << "audio-llm ASR accepted a model without audio";
    } catch (const asr_error &e) {
        EXPECT_NE(std::string(e.what()).find("--mmproj"), std::string::npos) << e.what();
    }
}

TEST(audio_llm, asr_engine_transcribes_utterances_on_its_own_slot) {
    REQUIRE_MODELS();
    auto llm = make_llm_engine(config_for(dir));
    auto asr = make_audio_llm_asr(*llm);
    EXPECT_EQ(asr->name(), "audio-llm");
    auto stream = asr->open();
    EXPECT_EQ(stream->finish(), ""); // nothing heard
    std::vector<float> f = speech(2.0);
    std::vector<int16_t> pcm(f.size());
    for (size_t i = 0; i < f.size(); ++i)
        pcm[i] = int16_t(f[i] * 32767.0f);
    std::string first;
    for (int utterance = 0; utterance < 2; ++utterance) {
        for (size_t i = 0; i < pcm.size(); i += 320) // 20 ms frames, as the session sends them
            stream->accept(
                std::span<const int16_t>(pcm).subspan(i, std::min<size_t>(320, pcm.size() - i)));
        EXPECT_EQ(stream->partial(), "");
        auto t0 = clock_type::now();
        std::string text = stream->finish();
        const llm_result &r = asr_audio_llm_last_result(*stream);
        EXPECT_TRUE(ended_normally(r)) << r.stop_reason;
        EXPECT_EQ(text, r.text);
        EXPECT_EQ(r.audio_tokens, 150);
        if (utterance == 0)
            first = text;
        else
            EXPECT_EQ(text, first); // greedy, same audio, cached instruction prefix
        if (utterance == 1) EXPECT_GT(r.cached_tokens, 0);
        std::cerr << "  finish " << ms_since(t0) << " ms: '" << text << "'\n";
    }
    // The slot is given back with the engine.
    asr.reset();
    EXPECT_GE(llm->acquire_slot(), 0);
}
