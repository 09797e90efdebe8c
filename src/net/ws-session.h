// What a WebSocket protocol's codec and the connection under it give each other, whichever
// protocol it speaks (native-protocol.h: Parley's own; realtime-protocol.h: OpenAI Realtime).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace parley {

// Where a codec's encoded messages go (the WebSocket connection). Thread-safe; messages go
// out in the order of the calls. Between hold() and flush() they wait and are written together.
class ws_output {
  public:
    virtual ~ws_output() = default;
    virtual void send_text(std::string message) = 0;
    virtual void send_binary(std::string bytes) = 0;
    virtual void hold() {}
    virtual void flush() {}
    // Close the connection once what is queued has gone out (a WebSocket close with `reason`).
    virtual void end(const std::string &reason) { (void)reason; }
};

// One WebSocket's session in one protocol. The network layer calls on_text() and on_binary()
// from its I/O thread, one at a time (they validate, decode and hand on; they never wait on a
// model), and close() once when the connection ends.
class ws_session {
  public:
    virtual ~ws_session() = default;
    // A new session (or the stored one `resume_id` names, where the protocol resumes).
    virtual void open(const std::string &resume_id) = 0;
    virtual void on_text(std::string_view message) = 0;
    virtual void on_binary(std::string_view bytes) = 0;
    virtual void close() = 0;
    virtual void store_changed() = 0; // session::store_changed()
    // session::drain(): `ready` runs once the reply in progress is done and the client told.
    virtual void drain(std::function<void()> ready) { ready(); }
    // An error message in this protocol's words, for the connection's own errors.
    virtual std::string error_message(const std::string &code, const std::string &message) = 0;
};

} // namespace parley
