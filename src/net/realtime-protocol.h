// The OpenAI Realtime API (GA) over a WebSocket (GET /v1/realtime): the codec between its JSON
// events and a session's typed inputs and events. The only place that knows these events
// (nlohmann::json stays inside realtime-protocol.cpp). See docs/realtime.md.
//
// Client events: session.update, input_audio_buffer.append|commit|clear,
// conversation.item.create|retrieve|truncate|delete, response.create|cancel,
// output_audio_buffer.clear. Server events: error, session.created|updated,
// conversation.created, conversation.item.*, input_audio_buffer.*, response.*,
// rate_limits.updated. Every server event has an event_id; an error caused by a client event
// names that event's event_id.
//
// The conversation as the client sees it (its items, their ids, each assistant item's audio
// and word timings for truncation) is kept here; what the model sees is the session's history.
#pragma once

#include "net/server.h"
#include "net/ws-session.h"
#include "pipeline/session.h"

#include <memory>
#include <string>
#include <string_view>

namespace parley {

// The audio rate of the Realtime API's audio/pcm (input by default, and output).
constexpr int REALTIME_PCM_RATE = 24000;
// The most audio one input_audio_buffer.append may carry (decoded bytes).
constexpr size_t REALTIME_APPEND_MAX_BYTES = 15 << 20;
// Items the connection remembers (the oldest are forgotten first; the model's history is the
// session's and is not cut by this).
constexpr size_t REALTIME_ITEMS_MAX = 1000;

// An error event in the Realtime API's shape, for errors outside a session.
std::string realtime_error_message(const std::string &code, const std::string &message);

class realtime_connection : public ws_session {
  public:
    realtime_connection(const session_engines &engines, const session_config &config,
                        const server_info &info, std::shared_ptr<ws_output> out);
    ~realtime_connection() override;

    // Sends session.created and conversation.created (a Realtime session is always new).
    void open(const std::string &resume_id = {}) override;
    void on_text(std::string_view message) override;
    void on_binary(std::string_view bytes) override;
    void close() override;
    void store_changed() override;
    void drain(std::function<void()> ready) override;
    std::string error_message(const std::string &code, const std::string &message) override;

    struct state;

  private:
    std::shared_ptr<state> st_;
    std::shared_ptr<session> session_;
};

} // namespace parley
