// The native WebSocket protocol: parsing client messages and encoding server events.
//
// Pure functions over JSON text (nlohmann::json stays inside protocol.cpp); thread-safe.
// Client: start, stop, text, interrupt, playback (+ binary PCM s16le mono frames).
// Server: ready, transcript, text_chunk (+ one binary audio message when has_audio), response_done,
// interrupted, error. See docs/protocol.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace parley {

constexpr size_t PROTOCOL_MAX_TEXT_BYTES = 4096;
constexpr size_t PROTOCOL_MAX_FRAME_BYTES = 1 << 20;
constexpr int PROTOCOL_MIN_RATE = 8000;
constexpr int PROTOCOL_MAX_RATE = 48000;

enum client_msg_type {
    CLIENT_MSG_START,
    CLIENT_MSG_STOP,
    CLIENT_MSG_TEXT,
    CLIENT_MSG_INTERRUPT,
    CLIENT_MSG_PLAYBACK,
};

struct start_params {
    int sample_rate = 16000;
    bool tts = true;
    std::string session_id; // resume this session
    std::string voice;      // empty: server default
    int rate_wpm = 0;       // 0: server default
    // "push_to_talk" (start/stop per utterance) or "hands_free" (the server's VAD finds each
    // turn until stop); empty: push_to_talk.
    std::string mode;
    // Voice activity overrides for this session; negative: the server's setting.
    float vad_threshold = -1;
    int min_speech_ms = -1, min_silence_ms = -1, prefix_pad_ms = -1;
    // Whether the client cancels echo itself (browsers do); -1: not said. When it says it does
    // not, the server cancels the echo of its own audio in the microphone stream.
    int echo_cancellation = -1;
};

struct client_message {
    client_msg_type type = CLIENT_MSG_STOP;
    start_params start;
    std::string text;
    std::string chunk_id; // playback
    int played_ms = 0;    // playback
    int64_t turn_id = 0;  // playback (0: not given)
};

struct protocol_error {
    std::string code;
    std::string message;
};

std::variant<client_message, protocol_error> parse_client_message(std::string_view json);

// Validates one binary audio frame; empty when acceptable.
std::string check_audio_frame(size_t bytes, protocol_error *err);

struct chunk_word {
    std::string text;
    int start_ms = 0; // within the chunk's audio
    int end_ms = 0;
};

struct text_chunk_event {
    std::string chunk_id;
    std::string text;
    bool has_audio = false;
    bool is_final = false;
    int64_t processing_time_ms = 0;
    int64_t turn_id = 0;
    std::vector<chunk_word> words; // when has_audio and the TTS engine gives word timings
    bool words_estimated = false;  // timings estimated from the text, not from the engine
};

std::string encode_ready(const std::string &session_id, int sample_rate, bool resumed,
                         int64_t turns, bool llm_available, bool tts_available);
std::string encode_transcript(const std::string &text, bool is_final, int64_t turn_id);
std::string encode_text_chunk(const text_chunk_event &chunk);
std::string encode_response_done(int64_t turn_id, const std::string &reply,
                                 const std::string &timings_json, const std::string &stop_reason);
std::string encode_interrupted(int64_t turn_id, const std::string &heard = {});
// Hands-free: the VAD found speech (at_ms: its onset in the utterance stream) or its end.
std::string encode_speech_started(double at_ms);
// A reply cut by a false start (a sound, or speech with no words) goes on: its remaining
// chunks follow again.
std::string encode_resumed(int64_t turn_id);
std::string encode_speech_stopped(double at_ms, double decided_ms);
std::string encode_error(const std::string &code, const std::string &message);
std::string encode_error(const protocol_error &err);

} // namespace parley
