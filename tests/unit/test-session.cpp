// The session pipeline with scripted engines: ordering, fallbacks, interruption, bad input.
#include "fakes.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <numbers>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

using namespace parley;
using namespace parley::testing;

namespace {

struct rig {
    scripted_llm llm;
    scripted_tts tts;
    worker tts_worker{"tts"};
    std::shared_ptr<recording_output> out = std::make_shared<recording_output>();
    std::shared_ptr<native_connection> s;

    explicit rig(std::vector<std::string> pieces, bool with_tts = true,
                 std::chrono::milliseconds delay = std::chrono::milliseconds(1))
        : llm(std::move(pieces), delay) {
        session_engines e;
        e.llm = &llm;
        e.tts = with_tts ? &tts : nullptr;
        e.tts_worker = &tts_worker;
        s = std::make_shared<native_connection>(e, session_config{}, out);
        s->open();
    }
    ~rig() { s->close(); }
    void send(const json &j) { s->on_text(j.dump()); }
};

const std::vector<std::string> reply = {"Hello", " there", ".",     " How", " are",
                                        " you",  "?",      " Fine", "."};

// Checks the wire order: every has_audio chunk is directly followed by one non-empty,
// even-length binary message; only the last chunk is final.
void expect_protocol_order(const std::vector<out_msg> &msgs, bool expect_audio) {
    std::vector<json> chunks;
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (msgs[i].binary) {
            ASSERT_GT(i, 0u);
            ASSERT_FALSE(msgs[i - 1].binary);
            EXPECT_EQ(msgs[i - 1].j["type"], "text_chunk");
            EXPECT_EQ(msgs[i - 1].j["has_audio"], true);
            EXPECT_GT(msgs[i].data.size(), 0u);
            EXPECT_EQ(msgs[i].data.size() % 2, 0u);
            continue;
        }
        if (msgs[i].j["type"] != "text_chunk") continue;
        chunks.push_back(msgs[i].j);
        if (msgs[i].j["has_audio"] == true) {
            ASSERT_LT(i + 1, msgs.size());
            EXPECT_TRUE(msgs[i + 1].binary) << "audio must follow its text_chunk";
        }
        EXPECT_EQ(msgs[i].j["has_audio"], expect_audio && msgs[i].j["text"] != "");
    }
    ASSERT_FALSE(chunks.empty());
    for (size_t i = 0; i + 1 < chunks.size(); ++i)
        EXPECT_FALSE(chunks[i]["is_final"].get<bool>());
    EXPECT_TRUE(chunks.back()["is_final"].get<bool>());
}

} // namespace

TEST(session, sends_ready_on_open) {
    rig r(reply);
    ASSERT_TRUE(r.out->wait_type("ready")); // open() posts to the session's actor
    auto ready = r.out->of_type("ready");
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0]["session_id"].get<std::string>().size(), 32u);
    EXPECT_EQ(ready[0]["audio_format"]["sample_rate"], 22050);
}

TEST(session, text_turn_streams_chunks_with_audio) {
    rig r(reply);
    r.send({{"type", "start"}, {"tts", true}});
    r.send({{"type", "stop"}}); // no ASR engine: an empty final transcript, no turn
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    auto msgs = r.out->all();
    expect_protocol_order(msgs, true);
    auto chunks = r.out->of_type("text_chunk");
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[0]["text"], "Hello there.");
    EXPECT_EQ(chunks[1]["text"], "How are you?");
    EXPECT_EQ(chunks[2]["text"], "Fine.");
    EXPECT_EQ(chunks[0]["chunk_id"], "chunk_id_0");
    auto done = r.out->of_type("response_done");
    EXPECT_EQ(done[0]["text"], "Hello there. How are you? Fine.");
    EXPECT_TRUE(done[0]["timings"]["first_audio_ms"].is_number());
}

TEST(session, text_only_mode_sends_no_audio) {
    rig r(reply);
    r.send({{"type", "start"}, {"tts", false}});
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    for (auto &m : r.out->all())
        EXPECT_FALSE(m.binary);
    expect_protocol_order(r.out->all(), false);
}

TEST(session, no_tts_engine_replies_in_text) {
    rig r(reply, false);
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    expect_protocol_order(r.out->all(), false);
}

TEST(session, tts_failure_mid_reply_falls_back_to_text) {
    rig r(reply);
    r.tts.fail_after = 1; // the first phrase speaks, the second fails
    r.send({{"type", "start"}});
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    auto errors = r.out->of_type("error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "tts_failed");
    auto chunks = r.out->of_type("text_chunk");
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_TRUE(chunks[0]["has_audio"].get<bool>());
    EXPECT_FALSE(chunks[2]["has_audio"].get<bool>());
    int binaries = 0;
    for (auto &m : r.out->all())
        binaries += m.binary;
    EXPECT_EQ(binaries, 1);
    // The session still works afterwards.
    r.send({{"type", "text"}, {"text", "again"}});
    ASSERT_TRUE(r.out->wait_type("response_done", 2));
}

TEST(session, unknown_voice_means_text_only_with_an_error) {
    rig r(reply);
    r.send({{"type", "start"}, {"voice", "missing"}});
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    auto errors = r.out->of_type("error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "tts_unavailable");
    expect_protocol_order(r.out->all(), false);
}

TEST(session, second_turn_sees_the_first) {
    rig r(reply);
    r.send({{"type", "text"}, {"text", "first question"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    // The reply's audio (10 ms a character) has played out before the next question.
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    r.send({{"type", "text"}, {"text", "second question"}});
    ASSERT_TRUE(r.out->wait_type("response_done", 2));
    auto prompts = r.llm.prompts();
    ASSERT_EQ(prompts.size(), 2u);
    auto &p = prompts[1];
    ASSERT_GE(p.size(), 4u);
    EXPECT_EQ(p[p.size() - 3].content, "first question");
    EXPECT_EQ(p[p.size() - 2].content, "Hello there. How are you? Fine.");
    EXPECT_EQ(p.back().content, "second question");
}

TEST(session, interrupt_stops_the_reply_and_keeps_what_was_heard) {
    std::vector<std::string> slow(reply);
    for (int i = 0; i < 50; ++i)
        slow.push_back(" more");
    rig r(slow, true, std::chrono::milliseconds(20));
    r.send({{"type", "start"}});
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("text_chunk"));
    r.send({{"type", "interrupt"}});
    ASSERT_TRUE(r.out->wait_type("interrupted"));
    size_t at = r.out->all().size();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto msgs = r.out->all();
    EXPECT_EQ(msgs.size(), at) << "nothing of the old turn after interrupted";
    EXPECT_TRUE(r.out->of_type("response_done").empty());
    // The next turn's prompt holds the interrupted reply as sent, not the whole.
    r.send({{"type", "text"}, {"text", "next"}});
    ASSERT_TRUE(r.out->wait_type("text_chunk", 2));
    r.send({{"type", "interrupt"}});
    auto prompts = r.llm.prompts();
    ASSERT_EQ(prompts.size(), 2u);
    auto &p = prompts[1];
    // The interrupted reply stays only as far as its audio had played (maybe not at all).
    std::string heard = r.out->of_type("interrupted")[0].value("heard", "");
    EXPECT_EQ(std::string("Hello there.").rfind(heard, 0), 0u) << heard;
    for (auto &m : p)
        EXPECT_EQ(m.content.find("more more"), std::string::npos) << m.content;
    if (!heard.empty()) EXPECT_EQ(p[p.size() - 2].content, heard);
}

TEST(session, a_new_turn_while_the_reply_plays_keeps_what_was_heard_of_it) {
    rig r(reply);
    r.send({{"type", "text"}, {"text", "first question"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    // "Hello there." is 120 ms of audio (10 ms a character); cut in the middle of the next
    // phrase: the client reports where it stopped.
    r.send({{"type", "text"}, {"text", "second question"}});
    ASSERT_TRUE(r.out->wait_type("interrupted"));
    EXPECT_EQ(r.out->of_type("interrupted")[0]["turn_id"], 1);
    r.send({{"type", "playback"}, {"turn_id", 1}, {"chunk_id", "chunk_id_1"}, {"played_ms", 45}});
    ASSERT_TRUE(r.out->wait_type("response_done", 2));
    r.send({{"type", "text"}, {"text", "third"}});
    ASSERT_TRUE(r.out->wait_type("response_done", 3));
    auto prompts = r.llm.prompts();
    ASSERT_EQ(prompts.size(), 3u);
    auto &p = prompts[2];
    // Chunk 0 whole, then "How" (0-30 ms, middle 15) and "are" (40-70, middle 55: not heard).
    bool found = false;
    for (auto &m : p)
        if (m.role == "assistant" && m.content == "Hello there. How") found = true;
    EXPECT_TRUE(found) << "the first reply is cut to the heard words";
}

TEST(session, text_chunks_carry_word_timings_within_their_audio) {
    rig r(reply);
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
    auto all = r.out->all();
    int with_words = 0;
    for (size_t i = 0; i < all.size(); i++) {
        if (all[i].binary || all[i].j.value("type", "") != "text_chunk") continue;
        if (!all[i].j["has_audio"]) continue;
        ASSERT_LT(i + 1, all.size());
        int audio_ms = int(all[i + 1].data.size() / 2 * 1000 / 22050);
        int prev = 0;
        for (auto &w : all[i].j["words"]) {
            EXPECT_GE(w["start_ms"].get<int>(), prev);
            EXPECT_GE(w["end_ms"].get<int>(), w["start_ms"].get<int>());
            EXPECT_LE(w["end_ms"].get<int>(), audio_ms);
            prev = w["start_ms"];
        }
        with_words += !all[i].j["words"].empty();
    }
    EXPECT_GE(with_words, 2);
}

TEST(session, a_drain_lets_the_reply_finish_then_acts_on_nothing_more) {
    rig r(reply, false, std::chrono::milliseconds(20));
    r.send({{"type", "text"}, {"text", "hi"}});
    ASSERT_TRUE(r.out->wait_type("text_chunk"));
    std::promise<void> told;
    r.s->drain([&] { told.set_value(); });
    ASSERT_EQ(told.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
    // The reply in progress came whole, and only then the error.
    auto msgs = r.out->all();
    int done_at = -1, error_at = -1;
    for (size_t i = 0; i < msgs.size(); ++i) {
        if (msgs[i].binary) continue;
        if (msgs[i].j["type"] == "response_done") done_at = int(i);
        if (msgs[i].j["type"] == "error" && msgs[i].j["code"] == "server_draining")
            error_at = int(i);
    }
    ASSERT_GE(done_at, 0);
    EXPECT_GT(error_at, done_at);
    EXPECT_EQ(r.out->of_type("response_done")[0]["text"], "Hello there. How are you? Fine.");
    // What the client sends before the close starts nothing.
    r.send({{"type", "text"}, {"text", "one more"}});
    EXPECT_FALSE(r.out->wait_type("response_done", 2, std::chrono::milliseconds(500)));
    EXPECT_EQ(r.out->of_type("text_chunk").size(), 3u);
}

TEST(session, bad_input_gets_errors_and_the_session_keeps_working) {
    rig r(reply);
    r.s->on_binary(std::string(640, '\0'));
    r.send({{"type", "stop"}});
    r.s->on_text("{not json");
    r.send({{"type", "bogus"}});
    r.send({{"type", "start"}, {"sample_rate", 1000}});
    r.send({{"type", "start"}, {"sample_rate", 16000}});
    r.s->on_binary(std::string(641, '\0'));
    r.s->on_binary(std::string((1 << 20) + 2, '\0'));
    r.send({{"type", "text"}, {"text", std::string(5000, 'x')}});
    r.send({{"type", "stop"}});
    r.s->on_binary(std::string(640, '\0')); // after stop
    auto codes = [&] {
        std::vector<std::string> c;
        for (auto &e : r.out->of_type("error"))
            c.push_back(e["code"]);
        return c;
    };
    ASSERT_TRUE(r.out->wait_type("error", 9));
    std::vector<std::string> want = {"not_started",     "not_recording",   "invalid_json",
                                     "unknown_type",    "bad_sample_rate", "odd_frame",
                                     "frame_too_large", "text_too_long",   "not_recording"};
    EXPECT_EQ(codes(), want);
    r.send({{"type", "text"}, {"text", "still there?"}});
    ASSERT_TRUE(r.out->wait_type("response_done"));
}

// Hands-free false starts, with the energy detector on synthetic sound: a reply cut by a sound
// that was not speech (too short to be an utterance, or an utterance with no words) goes on.
namespace {

std::string tone(int ms, int amplitude) {
    std::string pcm(size_t(ms) * 16 * 2, '\0');
    for (size_t i = 0; i < size_t(ms) * 16; i++) {
        auto v = int16_t(amplitude * std::sin(double(i) * 2 * std::numbers::pi * 220 / 16000) +
                         (amplitude ? 0 : (int(i * 7919 % 61) - 30)));
        std::memcpy(&pcm[i * 2], &v, 2);
    }
    return pcm;
}

std::string testing_dump(const std::vector<chat_message> &msgs) {
    std::string out;
    for (auto &m : msgs)
        out += m.role + ": " + m.content + "\n";
    return out;
}

void feed(native_connection &s, const std::string &pcm) {
    for (size_t i = 0; i < pcm.size(); i += 640)
        s.on_binary(pcm.substr(i, 640));
}

struct hands_free_rig {
    scripted_llm llm;
    scripted_tts tts;
    scripted_asr asr;
    worker tts_worker{"tts"};
    std::shared_ptr<recording_output> out = std::make_shared<recording_output>();
    std::shared_ptr<native_connection> s;

    // The recogniser hears asr_text (also as stable partials when partials is set).
    explicit hands_free_rig(int speculative_silence_ms = 0, std::string asr_text = "",
                            bool partials = false)
        : llm(long_reply(), std::chrono::milliseconds(1)), asr(std::move(asr_text), partials) {
        session_engines e;
        e.llm = &llm;
        e.tts = &tts;
        e.asr = &asr;
        e.tts_worker = &tts_worker;
        e.vad = make_energy_vad();
        session_config c;
        c.speculative_silence_ms = speculative_silence_ms;
        s = std::make_shared<native_connection>(e, c, out);
        s->open();
    }
    ~hands_free_rig() { s->close(); }
    static std::vector<std::string> long_reply() {
        std::vector<std::string> r = {"Once", " upon", " a", " time", "."};
        for (int i = 0; i < 20; i++)
            r.push_back(" There was a little dog.");
        return r;
    }
};

void expect_resumed(hands_free_rig &r, const std::string &sound) {
    r.s->on_text(R"({"type":"text","text":"tell me"})");
    ASSERT_TRUE(r.out->wait_type("response_done"));
    r.s->on_text(R"({"type":"start","sample_rate":16000,"mode":"hands_free"})");
    feed(*r.s, tone(600, 0)); // the background, while the reply plays
    feed(*r.s, sound);
    feed(*r.s, tone(900, 0));
    ASSERT_TRUE(r.out->wait_type("interrupted"));
    ASSERT_TRUE(r.out->wait_type("resumed")) << "the reply goes on after a false start";
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // the rest goes out behind it
    auto all = r.out->all();
    size_t at = 0;
    for (size_t i = 0; i < all.size(); i++)
        if (!all[i].binary && all[i].j["type"] == "resumed") at = i;
    int64_t turn = r.out->of_type("interrupted")[0]["turn_id"];
    EXPECT_EQ(all[at].j["turn_id"], turn);
    // The rest of the reply follows again, text then audio, ending with a final chunk.
    std::string again;
    bool final = false;
    for (size_t i = at + 1; i < all.size(); i++) {
        if (all[i].binary || all[i].j["type"] != "text_chunk") continue;
        EXPECT_EQ(all[i].j["turn_id"], turn);
        again += all[i].j["text"].get<std::string>();
        final = final || all[i].j["is_final"].get<bool>();
        if (all[i].j["has_audio"]) {
            ASSERT_LT(i + 1, all.size());
            EXPECT_TRUE(all[i + 1].binary);
        }
    }
    EXPECT_TRUE(final);
    EXPECT_NE(again.find("little dog."), std::string::npos);
    // The history holds the reply once: what was heard, then what played again (a new turn
    // 400 ms later cuts it where the client is by then).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    r.s->on_text(R"({"type":"text","text":"next"})");
    ASSERT_TRUE(r.out->wait_type("interrupted", 2)); // the resumed audio is still playing
    ASSERT_TRUE(r.out->wait_type("response_done", 2));
    auto prompts = r.llm.prompts();
    ASSERT_EQ(prompts.size(), 2u);
    bool once = false;
    for (auto &m : prompts[1])
        if (m.role == "assistant")
            once = m.content.rfind("Once upon a time. There", 0) == 0 &&
                   m.content.find("Once", 1) == std::string::npos;
    EXPECT_TRUE(once) << testing_dump(prompts[1]);
}

} // namespace

TEST(session, a_sound_too_short_to_be_speech_lets_the_reply_go_on) {
    hands_free_rig r;
    expect_resumed(r, tone(190, 8000)); // past barge-in (96 ms), short of speech (250 ms)
}

TEST(session, speech_with_no_words_lets_the_reply_go_on) {
    hands_free_rig r;
    expect_resumed(r, tone(700, 8000)); // an utterance, but the recogniser hears no words
}

// A reply started in a pause (speculative, held) makes its first phrase and then waits: the
// user may go on talking, and then a whole reply would be written for nothing. At the end of
// the turn it goes on and the whole reply goes out.
TEST(session, a_speculative_reply_waits_after_its_first_phrase_until_the_turn_ends) {
    hands_free_rig r(200, "tell me a story", true);
    auto &s = r.s;
    auto &out = r.out;
    auto &llm = r.llm;
    s->on_text(R"({"type":"start","sample_rate":16000,"mode":"hands_free"})");
    feed(*s, tone(300, 0));
    feed(*s, tone(700, 8000));
    feed(*s, tone(300, 0)); // a pause past 200 ms: the reply starts, held
    for (int i = 0; i < 1000 && llm.emitted.load() < 5; ++i) // slow machines too
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GE(llm.emitted.load(), 5) << "the first phrase is made";
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // then nothing much more
    int total = int(hands_free_rig::long_reply().size());
    int made = llm.emitted.load();
    EXPECT_LT(made, 12) << "and then the reply waits (" << total << " pieces in all)";
    EXPECT_TRUE(out->of_type("text_chunk").empty()) << "nothing goes out before the turn ends";
    EXPECT_EQ(llm.wakes.load(), 0);
    feed(*s, tone(400, 0)); // the turn ends: the same words, the reply goes on
    ASSERT_TRUE(out->wait_type("response_done"));
    EXPECT_EQ(llm.emitted.load(), total);
    EXPECT_EQ(llm.wakes.load(), 1) << "the engine is told at once, not left to find out";
    auto done = out->of_type("response_done");
    EXPECT_TRUE(done[0]["timings"].value("speculative", false));
    EXPECT_NE(done[0]["text"].get<std::string>().find("little dog."), std::string::npos);
    // The end of the turn left in one burst: speech_stopped, the final transcript, the first
    // phrase and its audio.
    auto all = out->all();
    size_t stop = 0;
    while (stop < all.size() && (all[stop].binary || all[stop].j["type"] != "speech_stopped"))
        ++stop;
    ASSERT_LT(stop + 3, all.size());
    EXPECT_NE(all[stop].burst, 0);
    EXPECT_EQ(all[stop + 1].j["type"], "transcript");
    EXPECT_EQ(all[stop + 1].j["is_final"], true);
    EXPECT_EQ(all[stop + 2].j["type"], "text_chunk");
    EXPECT_TRUE(all[stop + 3].binary);
    for (size_t i = stop; i <= stop + 3; ++i)
        EXPECT_EQ(all[i].burst, all[stop].burst) << i - stop;
    EXPECT_FALSE(out->holding());
}

// Once a reply has started from a pause's transcript, the rest of the pause is not decoded
// unless the user goes on: then all of it is, before the speech after it. At the end of the
// turn the recogniser has heard about the speculative silence (200 ms) of the last pause, not
// the 500 ms that ended the turn.
TEST(session, the_pause_after_a_speculative_start_is_decoded_only_if_the_user_goes_on) {
    hands_free_rig r(200, "tell me a story", true);
    r.s->on_text(R"({"type":"start","sample_rate":16000,"mode":"hands_free"})");
    feed(*r.s, tone(300, 0));
    feed(*r.s, tone(700, 8000));
    feed(*r.s, tone(400, 0)); // the reply starts at 200 ms, held; the user goes on
    feed(*r.s, tone(500, 8000));
    feed(*r.s, tone(800, 0)); // the turn ends
    ASSERT_TRUE(r.out->wait_type("response_done"));
    auto runs = r.asr.heard->get();
    std::string shape;
    for (auto &[loud, n] : runs)
        shape += (loud ? "loud " : "quiet ") + std::to_string(n / 16) + " ms, ";
    // quiet (prefix padding), loud, quiet (the first pause), loud, quiet (the last pause)
    ASSERT_EQ(runs.size(), 5u) << shape;
    EXPECT_TRUE(runs[1].first && runs[3].first) << shape;
    EXPECT_GE(runs[2].second, size_t(390 * 16)) << "all of the first pause: " << shape;
    EXPECT_LE(runs[2].second, size_t(410 * 16)) << shape;
    EXPECT_GE(runs[4].second, size_t(180 * 16)) << "the last pause up to the reply: " << shape;
    EXPECT_LE(runs[4].second, size_t(300 * 16)) << "and no further: " << shape;
    auto done = r.out->of_type("response_done");
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0]["timings"].value("speculative", false));
}

// The TTS worker's order: earliest deadline first, posting order among equal deadlines (plain
// post() is due now, so a worker fed by post() alone stays a FIFO).
// The slice a thread asks for is the kernel's from then on (Linux 6.12+; older kernels take the
// call and ignore it), and asking for it keeps the thread's nice value.
TEST(worker, a_thread_gets_the_scheduler_slice_it_asks_for) {
    utsname u{};
    uname(&u);
    int major = 0, minor = 0;
    std::sscanf(u.release, "%d.%d", &major, &minor);
    if (major < 6 || (major == 6 && minor < 12)) GTEST_SKIP() << "kernel " << u.release;
    std::thread([] {
        ASSERT_EQ(setpriority(PRIO_PROCESS, 0, 3), 0); // this thread only (Linux)
        int before = thread_slice_us();
        EXPECT_GT(before, 0);
        EXPECT_NE(before, 300);
        EXPECT_EQ(set_thread_slice(0), "");
        EXPECT_EQ(thread_slice_us(), before) << "0 leaves the kernel's default";
        EXPECT_EQ(set_thread_slice(300), "");
        EXPECT_EQ(thread_slice_us(), 300);
        EXPECT_EQ(getpriority(PRIO_PROCESS, 0), 3) << "the nice value is kept";
    }).join();
}

TEST(worker, a_real_time_thread_starts_normal_threads) {
    std::thread([] {
        EXPECT_EQ(set_thread_realtime(0), "");
        EXPECT_EQ(thread_realtime_priority(), 0) << "0 leaves the normal policy";
        std::string err = set_thread_realtime(1);
        if (err == std::strerror(EPERM)) GTEST_SKIP() << "no CAP_SYS_NICE or RLIMIT_RTPRIO here";
        ASSERT_EQ(err, "");
        EXPECT_EQ(thread_realtime_priority(), 1);
        int child = -1;
        std::thread([&child] { child = thread_realtime_priority(); }).join();
        EXPECT_EQ(child, 0) << "a thread it starts (a session's worker) must not run real-time";
    }).join();
}

// The options' convention: 0 asks nothing, -1 asks REALTIME_PRIORITY_AUTO and reports what it got
// either way, N asks N.
TEST(worker, request_thread_realtime_follows_the_options_convention) {
    std::thread([] {
        realtime_grant off = request_thread_realtime(0);
        EXPECT_EQ(off.tried, 0);
        EXPECT_EQ(off.priority, 0);
        EXPECT_EQ(off.error, "");
        realtime_grant a = request_thread_realtime(-1);
        EXPECT_EQ(a.tried, REALTIME_PRIORITY_AUTO);
        EXPECT_EQ(a.priority, a.error.empty() ? REALTIME_PRIORITY_AUTO : 0) << a.error;
        EXPECT_EQ(thread_realtime_priority(), a.priority);
        if (a.priority == 0) return;
        realtime_grant three = request_thread_realtime(3);
        EXPECT_EQ(three.priority, 3);
        EXPECT_EQ(thread_realtime_priority(), 3);
    }).join();
}

TEST(worker, runs_the_earliest_deadline_first_and_equal_ones_in_order) {
    worker w{"test"};
    std::promise<void> release;
    std::shared_future<void> gate = release.get_future().share();
    std::mutex m;
    std::vector<std::string> order;
    auto note = [&](std::string s) {
        return [&, s] {
            std::lock_guard lock(m);
            order.push_back(s);
        };
    };
    std::promise<void> holding;
    w.post([&holding, gate] { // holds the worker while the rest is queued
        holding.set_value();
        gate.wait();
    });
    holding.get_future().wait();
    auto now = mono_now();
    w.post_by(now + std::chrono::seconds(2), note("later phrase of reply A"));
    w.post_by(now + std::chrono::seconds(1), note("later phrase of reply B"));
    w.post(note("first phrase of reply C"));
    w.post(note("first phrase of reply D"));
    w.post_by(now - std::chrono::seconds(1), note("overdue"));
    EXPECT_EQ(w.queued(), 5u);
    release.set_value();
    std::promise<void> done;
    w.post_by(now + std::chrono::seconds(3), [&] { done.set_value(); });
    ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_EQ(order, (std::vector<std::string>{"overdue", "first phrase of reply C",
                                               "first phrase of reply D", "later phrase of reply B",
                                               "later phrase of reply A"}));
}
