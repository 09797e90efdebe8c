// What goes into a conversation session and what comes out of it, as typed values.
//
// A protocol codec (src/net/native-protocol.h for Parley's own WebSocket protocol) decodes its
// wire messages into the inputs (session methods taking these structs) and encodes the events a
// session reports through its session_sink. Nothing here knows any wire format.
#pragma once

#include "llm/llm.h"
#include "store/turn-timings.h"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace parley {

enum session_mode {
    SESSION_MODE_PUSH_TO_TALK, // the client says where each utterance starts and stops
    SESSION_MODE_HANDS_FREE,   // the server's voice activity detector finds each turn
};

// Whether the client's microphone audio has its own echo cancellation (browsers do).
enum client_echo {
    CLIENT_ECHO_UNKNOWN,
    CLIENT_ECHO_CANCELLED,
    CLIENT_ECHO_NONE, // the server cancels the echo of its own replies (with --echo auto)
};

// --- inputs ---

// Starts listening (push-to-talk: one utterance; hands-free: turns until stop).
struct session_start {
    int sample_rate = 16000;
    bool tts = true;
    std::string session_id; // resume this session
    std::string voice;      // empty: the server's voice
    int rate_wpm = 0;       // 0: the server's rate
    session_mode mode = SESSION_MODE_PUSH_TO_TALK;
    // Voice activity overrides for this session; negative: the server's setting.
    float vad_threshold = -1;
    int min_speech_ms = -1, min_silence_ms = -1, prefix_pad_ms = -1;
    client_echo echo = CLIENT_ECHO_UNKNOWN;
};

// Settings a client changes during the session; an unset field stays as it is.
struct session_settings {
    std::optional<std::string> instructions; // the system prompt
    std::optional<int> max_tokens;           // of a reply
    // A finished user turn starts a reply by itself (off: the turn is added to the
    // conversation and a reply waits for respond()).
    std::optional<bool> auto_respond;
    // Speech over a reply cuts it (barge-in).
    std::optional<bool> interrupt_on_speech;
    // The tools offered to the model, and a grammar its replies must follow (tool_choice
    // "required" or a named function: tool_call_grammar()).
    std::optional<std::vector<tool_spec>> tools;
    std::optional<std::string> tool_grammar;
};

// A message added to the conversation without a reply (a reply follows on respond()).
enum message_role {
    MESSAGE_ROLE_USER,      // joins the next turn's user message
    MESSAGE_ROLE_ASSISTANT, // a turn of its own, after the user's messages added before it
};

// A reply the client asks for.
struct response_request {
    std::optional<std::string> instructions; // this reply's system prompt
    // Out of band: the reply is not part of the conversation (the history stays as it is).
    bool out_of_band = false;
    // The prompt's messages instead of the conversation's (system prompt first).
    std::optional<std::vector<chat_message>> input;
    std::optional<int> max_tokens;
    std::optional<bool> audio;                   // speak it (unset: as the session does)
    std::optional<std::vector<tool_spec>> tools; // unset: the session's
    std::optional<std::string> tool_grammar;     // unset: the session's
    std::string tag;                             // given back in reply_started_event
};

// The client's account of where it is playing a reply's audio.
struct playback_report {
    int64_t turn_id = 0; // 0: not given
    std::string chunk_id;
    int played_ms = 0;
};

// --- events ---

struct chunk_word {
    std::string text;
    int start_ms = 0; // within the chunk's audio
    int end_ms = 0;
};

struct ready_event {
    std::string session_id;
    std::string resume_token; // a new session's: reads its history (empty when resumed)
    int audio_rate = 0;       // of the reply audio
    bool resumed = false;
    int64_t turns = 0; // in the history
    bool llm = false, tts = false;
};

// A partial (is_final false) or final transcript of the user's utterance; turn_id 0: no turn.
struct transcript_event {
    std::string text;
    bool is_final = false;
    int64_t turn_id = 0;
};

// Hands-free: the detector heard speech start (at_ms: its onset in the session's audio stream).
struct speech_started_event {
    double at_ms = 0;
};

struct speech_stopped_event {
    double at_ms = 0;      // the end of the speech
    double decided_ms = 0; // where the detector decided the turn was over
};

// One phrase of a reply: its text, then (has_audio) its PCM at the session's output rate.
struct reply_chunk_event {
    std::string chunk_id;
    std::string text;
    bool has_audio = false;
    bool is_final = false;
    int64_t processing_time_ms = 0;
    int64_t turn_id = 0;
    std::vector<chunk_word> words; // when has_audio and the TTS engine gives word timings
    bool words_estimated = false;  // timings estimated from the text, not from the engine
    std::vector<int16_t> pcm;      // mono s16, ready_event::audio_rate
};

// A reply starts going out (its chunks follow); `tag`: its response_request's, or empty for
// a reply the session started by itself.
struct reply_started_event {
    int64_t turn_id = 0;
    std::string tag;
    bool out_of_band = false;
};

// The model's reply called tools (the call's text is not spoken or sent as chunks); `content`
// is the text around the calls (sent as chunks before this). The reply's response_done
// follows.
struct tool_calls_event {
    int64_t turn_id = 0;
    std::vector<tool_call> calls;
};

// A reply that went out whole.
struct reply_done_event {
    int64_t turn_id = 0;
    std::string text;
    turn_timings timings;
    llm_stop stop_reason = LLM_STOP_NONE;
};

// Nothing more of the turn follows; the history keeps `heard`, what the client played of it.
struct interrupted_event {
    int64_t turn_id = 0;
    std::string heard;
    int heard_ms = 0; // of the reply's audio, played before the cut
};

// A false start cut the reply; its unheard rest follows again as chunks of the same turn.
struct resumed_event {
    int64_t turn_id = 0;
};

// All the LLM's places (slots) are taken: the session waits in line at `position` (1: next);
// its turns are refused (`queued`) until `admitted`.
struct queued_event {
    size_t position = 0;
};

// The session has its place with the LLM: turns are taken.
struct admitted_event {};

struct error_event {
    std::string code;
    std::string message;
};

using session_event =
    std::variant<ready_event, transcript_event, speech_started_event, speech_stopped_event,
                 reply_started_event, reply_chunk_event, tool_calls_event, reply_done_event,
                 interrupted_event, resumed_event, queued_event, admitted_event, error_event>;

// Where a session's events go. Thread-safe: events are delivered in the order of the calls.
class session_sink {
  public:
    virtual ~session_sink() = default;
    virtual void on_event(session_event e) = 0;
    // Events between hold() and flush() go out together at flush() (one wake of a writer for
    // several events made within microseconds). Holds do not nest.
    virtual void hold() {}
    virtual void flush() {}
    // The session ended on the server's side (`reason`: an error code already sent): no more
    // events follow, and the connection should close.
    virtual void end(const std::string &reason) { (void)reason; }
};

} // namespace parley
