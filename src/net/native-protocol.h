// Parley's native WebSocket protocol: the codec between its JSON messages (and binary PCM
// frames) and a session's typed inputs and events. The only place that knows this protocol's
// JSON (nlohmann::json stays inside native-protocol.cpp). See docs/protocol.md.
//
// Client: start, stop, text, interrupt, playback (+ binary PCM s16le mono frames).
// Server: ready, transcript, text_chunk (+ one binary audio message when has_audio),
// response_done, interrupted, resumed, speech_started, speech_stopped, error.
//
// native_connection ties one WebSocket to one session: the network layer calls on_text() and
// on_binary() from its I/O thread (they validate, decode and hand on; they never wait on a
// model) and close() once when the connection ends. Encoded messages go to its ws_output in
// the order of the session's events.
#pragma once

#include "net/ws-session.h"
#include "pipeline/session-events.h"
#include "pipeline/session.h"

#include <cstdint>
#include <memory>
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

struct client_message {
    client_msg_type type = CLIENT_MSG_STOP;
    session_start start;
    std::string text;
    playback_report playback;
};

struct protocol_error {
    std::string code;
    std::string message;
};

std::variant<client_message, protocol_error> parse_client_message(std::string_view json);

// Validates one binary audio frame; empty when acceptable.
std::string check_audio_frame(size_t bytes, protocol_error *err);

// One JSON text message per event (a reply chunk's audio is its own binary message:
// encode_pcm); empty for an event this protocol does not send.
std::string encode_event(const session_event &e);
std::string encode_pcm(const std::vector<int16_t> &pcm);
std::string encode_error(const std::string &code, const std::string &message);

class native_connection : public ws_session {
  public:
    native_connection(const session_engines &engines, const session_config &config,
                      std::shared_ptr<ws_output> out);
    ~native_connection() override;

    // Sends `ready` with a new session id (or resumes `resume_id` when it exists).
    void open(const std::string &resume_id = {}) override;
    void on_text(std::string_view message) override;
    void on_binary(std::string_view bytes) override;
    void close() override;
    void store_changed() override;
    void drain(std::function<void()> ready) override;
    std::string error_message(const std::string &code, const std::string &message) override;
    std::string id() const;

  private:
    std::shared_ptr<session> session_;
};

} // namespace parley
