#include "net/native-protocol.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace parley;
using json = nlohmann::json;

namespace {

std::string code_of(std::string_view msg) {
    auto r = parse_client_message(msg);
    if (auto *e = std::get_if<protocol_error>(&r)) return e->code;
    return "ok";
}

} // namespace

TEST(protocol, parses_start) {
    auto r = parse_client_message(
        R"({"type":"start","sample_rate":44100,"tts":false,"session_id":"abc","voice":"en-gb"})");
    ASSERT_TRUE(std::holds_alternative<client_message>(r));
    auto m = std::get<client_message>(r);
    EXPECT_EQ(m.type, CLIENT_MSG_START);
    EXPECT_EQ(m.start.sample_rate, 44100);
    EXPECT_FALSE(m.start.tts);
    EXPECT_EQ(m.start.session_id, "abc");
    EXPECT_EQ(m.start.voice, "en-gb");
}

TEST(protocol, defaults_of_start) {
    auto m = std::get<client_message>(parse_client_message(R"({"type":"start"})"));
    EXPECT_EQ(m.start.sample_rate, 16000);
    EXPECT_TRUE(m.start.tts);
    EXPECT_TRUE(m.start.session_id.empty());
}

TEST(protocol, rejects_bad_messages_with_codes) {
    EXPECT_EQ(code_of("{nope"), "invalid_json");
    EXPECT_EQ(code_of("[1,2]"), "invalid_message");
    EXPECT_EQ(code_of(R"({"kind":"start"})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"dance"})"), "unknown_type");
    EXPECT_EQ(code_of(R"({"type":"start","sample_rate":7999})"), "bad_sample_rate");
    EXPECT_EQ(code_of(R"({"type":"start","sample_rate":48001})"), "bad_sample_rate");
    EXPECT_EQ(code_of(R"({"type":"start","sample_rate":"16000"})"), "bad_sample_rate");
    EXPECT_EQ(code_of(R"({"type":"start","sample_rate":8000})"), "ok");
    EXPECT_EQ(code_of(R"({"type":"start","sample_rate":48000})"), "ok");
    EXPECT_EQ(code_of(R"({"type":"text"})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"text","text":"  "})"), "empty_text");
    EXPECT_EQ(code_of(json({{"type", "text"}, {"text", std::string(4097, 'a')}}).dump()),
              "text_too_long");
    EXPECT_EQ(code_of(json({{"type", "text"}, {"text", std::string(4096, 'a')}}).dump()), "ok");
    EXPECT_EQ(code_of(R"({"type":"stop"})"), "ok");
    EXPECT_EQ(code_of(R"({"type":"interrupt"})"), "ok");
}

TEST(protocol, checks_audio_frames) {
    protocol_error e;
    EXPECT_EQ(check_audio_frame(640, &e), "");
    EXPECT_EQ(check_audio_frame(641, &e), "odd_frame");
    EXPECT_EQ(check_audio_frame(0, &e), "empty_frame");
    EXPECT_EQ(check_audio_frame((1 << 20) + 2, &e), "frame_too_large");
    EXPECT_EQ(check_audio_frame(1 << 20, &e), "");
}

TEST(protocol, text_chunk_has_the_original_six_fields) {
    reply_chunk_event c{"chunk_id_0", "Hello.", true, false, 42, 7};
    json j = json::parse(encode_event(c));
    EXPECT_EQ(j["type"], "text_chunk");
    EXPECT_EQ(j["chunk_id"], "chunk_id_0");
    EXPECT_EQ(j["text"], "Hello.");
    EXPECT_EQ(j["has_audio"], true);
    EXPECT_EQ(j["is_final"], false);
    EXPECT_EQ(j["processing_time_ms"], 42);
    EXPECT_EQ(j["turn_id"], 7);
}

TEST(protocol, encodes_events) {
    json r = json::parse(encode_event(ready_event{"s1", "", 22050, true, 3, true, false}));
    EXPECT_EQ(r["type"], "ready");
    EXPECT_EQ(r["session_id"], "s1");
    EXPECT_FALSE(r.contains("resume_token")); // a resumed session gets none
    json fresh = json::parse(encode_event(ready_event{"s2", "t2", 22050, false, 0, true, true}));
    EXPECT_EQ(fresh["resume_token"], "t2");
    EXPECT_EQ(r["audio_format"]["sample_rate"], 22050);
    EXPECT_EQ(r["audio_format"]["encoding"], "pcm_s16le");
    EXPECT_EQ(r["resumed"], true);
    json t = json::parse(encode_event(transcript_event{"hi", true, 0}));
    EXPECT_EQ(t["is_final"], true);
    json e = json::parse(encode_error("odd_frame", "x"));
    EXPECT_EQ(e["type"], "error");
    EXPECT_EQ(e["code"], "odd_frame");
    turn_timings tt;
    tt.first_text_ms = 1.5;
    json d = json::parse(encode_event(reply_done_event{2, "reply", tt, LLM_STOP_EOG}));
    EXPECT_EQ(d["timings"]["first_text_ms"], 1.5);
    // Invalid UTF-8 from an engine never breaks the JSON.
    EXPECT_TRUE(json::accept(encode_event(transcript_event{"a\xff", false, 0})));
}

TEST(protocol, hands_free_start_vad_overrides_and_echo) {
    auto m = std::get<client_message>(parse_client_message(
        R"({"type":"start","mode":"hands_free","echo_cancellation":false,
            "vad":{"threshold":0.6,"min_silence_ms":300,"min_speech_ms":200,"prefix_pad_ms":100}})"));
    EXPECT_EQ(m.start.mode, SESSION_MODE_HANDS_FREE);
    EXPECT_EQ(m.start.echo, CLIENT_ECHO_NONE);
    EXPECT_FLOAT_EQ(m.start.vad_threshold, 0.6f);
    EXPECT_EQ(m.start.min_silence_ms, 300);
    EXPECT_EQ(m.start.min_speech_ms, 200);
    EXPECT_EQ(m.start.prefix_pad_ms, 100);
    auto d = std::get<client_message>(parse_client_message(R"({"type":"start"})"));
    EXPECT_EQ(d.start.mode, SESSION_MODE_PUSH_TO_TALK);
    EXPECT_EQ(d.start.echo, CLIENT_ECHO_UNKNOWN);
    EXPECT_LT(d.start.vad_threshold, 0);
    EXPECT_LT(d.start.min_silence_ms, 0);
    EXPECT_EQ(code_of(R"({"type":"start","mode":"always"})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"start","echo_cancellation":"no"})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"start","vad":5})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"start","vad":{"threshold":1.5}})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"start","vad":{"min_silence_ms":10}})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"start","vad":{"prefix_pad_ms":"x"}})"), "invalid_message");
}

TEST(protocol, playback_reports) {
    auto m = std::get<client_message>(parse_client_message(
        R"({"type":"playback","turn_id":3,"chunk_id":"chunk_id_2","played_ms":450})"));
    EXPECT_EQ(m.type, CLIENT_MSG_PLAYBACK);
    EXPECT_EQ(m.playback.turn_id, 3);
    EXPECT_EQ(m.playback.chunk_id, "chunk_id_2");
    EXPECT_EQ(m.playback.played_ms, 450);
    EXPECT_EQ(code_of(R"({"type":"playback","played_ms":4})"), "invalid_message");
    EXPECT_EQ(code_of(R"({"type":"playback","chunk_id":"c","played_ms":-1})"), "invalid_message");
}

TEST(protocol, hands_free_events_and_words) {
    json a = json::parse(encode_event(speech_started_event{1234.4}));
    EXPECT_EQ(a["type"], "speech_started");
    EXPECT_EQ(a["at_ms"], 1234);
    json b = json::parse(encode_event(speech_stopped_event{2000, 2512}));
    EXPECT_EQ(b["type"], "speech_stopped");
    EXPECT_EQ(b["decided_ms"], 2512);
    json i = json::parse(encode_event(interrupted_event{7, "Hello there"}));
    EXPECT_EQ(i["turn_id"], 7);
    EXPECT_EQ(i["heard"], "Hello there");
    reply_chunk_event c;
    c.chunk_id = "chunk_id_0";
    c.text = "Hi you";
    c.has_audio = true;
    c.words = {{"Hi", 0, 120}, {"you", 130, 300}};
    c.words_estimated = true;
    json j = json::parse(encode_event(c));
    ASSERT_EQ(j["words"].size(), 2u);
    EXPECT_EQ(j["words"][1]["text"], "you");
    EXPECT_EQ(j["words"][1]["start_ms"], 130);
    EXPECT_EQ(j["words"][1]["end_ms"], 300);
    EXPECT_EQ(j["words_estimated"], true);
    c.has_audio = false; // text-only chunks carry no timings
    EXPECT_FALSE(json::parse(encode_event(c)).contains("words"));
}
