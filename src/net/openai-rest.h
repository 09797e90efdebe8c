// OpenAI-compatible REST endpoints over Parley's engines: GET /v1/models,
// POST /v1/chat/completions (whole or as server-sent events), POST /v1/audio/speech,
// POST /v1/audio/transcriptions (multipart uploads in any container FFmpeg reads) and a clear
// refusal for /v1/audio/translations. The only code that knows these JSON shapes; the HTTP
// connection hands it a request and an http_answer. See docs/openai.md.
#pragma once

#include "net/server.h"

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

namespace parley {

// How a handler answers the HTTP request behind it. Thread-safe (handlers answer from engine
// and worker threads); a whole reply or one stream per request.
class http_answer {
  public:
    virtual ~http_answer() = default;
    virtual void reply(int status, const std::string &content_type, std::string body) = 0;
    // A streamed answer (chunked): start, any number of chunks, end.
    virtual void start_stream(const std::string &content_type) = 0;
    virtual void send_chunk(std::string data) = 0;
    virtual void end_stream() = 0;
    // A stream that failed partway: the connection closes without the chunked terminator, so
    // the client sees the answer was cut short.
    virtual void abort_stream() = 0;
    // True once a write failed: the client has gone (a generation for it may stop).
    virtual bool gone() const = 0;
};

struct rest_request {
    std::string method; // "GET", "POST", ...
    std::string path;   // without the query
    std::string content_type;
    std::string body;
};

// {"error":{"message","type","param","code"}} with its HTTP status.
std::string openai_error(const std::string &message, const std::string &type,
                         const std::string &param, const std::string &code);

// One of the voice names OpenAI's clients send (each speaks with the server's own voice)?
bool is_openai_voice(std::string_view name);
// A voice a client may ask for: one of OpenAI's names, or one of the engine's own voices (by
// name, at most 64 bytes, checked against its list; none without an engine).
bool voice_available(const std::string &name, tts_engine *tts);

class openai_rest {
  public:
    openai_rest(const session_engines &engines, const session_config &config,
                const server_info &info);
    ~openai_rest();

    // Is this one of its paths (/v1/...)?
    static bool handles(std::string_view path);
    // The largest body the route takes: uploads up to `upload_max`, JSON up to 1 MiB.
    static size_t body_limit(std::string_view path, size_t upload_max);

    // Answers the request, now or later from another thread.
    void handle(rest_request req, std::shared_ptr<http_answer> answer);

    struct impl;

  private:
    std::unique_ptr<impl> impl_;
};

} // namespace parley
