// What goes into a conversation session and what comes out of it, as typed values.
//
// A protocol codec (src/net/native-protocol.h for Parley's own WebSocket protocol) decodes its
// wire messages into the inputs (session methods taking these structs) and encodes the events a
// session reports through its session_sink. Nothing here knows any wire format.
#pragma once

#include "llm/llm.h"

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
    int audio_rate = 0; // of the reply audio
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

// Where a turn's time went, in ms from the end of the user's turn (t0: hands-free, the
// detector's decision; push-to-talk, the stop; typed, the message). A reply started in a pause
// may have its first token before t0 (a negative time).
struct turn_timings {
    std::optional<double> transcript_ms, first_token_ms, first_text_ms, first_audio_ms, total_ms;
    // The language model's account (llm_result).
    double llm_queue_ms = 0, llm_prompt_ms = 0, llm_first_token_ms = 0, llm_audio_ms = 0,
           llm_generate_ms = 0;
    int prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, audio_tokens = 0;
    double asr_ms = 0; // recognition work for the utterance
    double tts_ms = 0, tts_first_ms = 0;
    int tts_calls = 0;
    int audio_ms = 0; // of reply audio sent
    // Hands-free: the end of speech, this long before t0 (negative: not known).
    double speech_end_before_ms = -1;
    // What the user waited: from the end of their speech to the first sound (negative: none).
    double speech_end_to_audio_ms = -1;
    // The engines' load times (negative: not counted).
    double load_asr_ms = -1, load_llm_ms = -1, load_tts_ms = -1;
    bool speculative = false; // the reply started in a pause, before the end of the turn
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
};

// A false start cut the reply; its unheard rest follows again as chunks of the same turn.
struct resumed_event {
    int64_t turn_id = 0;
};

struct error_event {
    std::string code;
    std::string message;
};

using session_event =
    std::variant<ready_event, transcript_event, speech_started_event, speech_stopped_event,
                 reply_chunk_event, reply_done_event, interrupted_event, resumed_event,
                 error_event>;

// Where a session's events go. Thread-safe: events are delivered in the order of the calls.
class session_sink {
  public:
    virtual ~session_sink() = default;
    virtual void on_event(session_event e) = 0;
    // Events between hold() and flush() go out together at flush() (one wake of a writer for
    // several events made within microseconds). Holds do not nest.
    virtual void hold() {}
    virtual void flush() {}
};

} // namespace parley
