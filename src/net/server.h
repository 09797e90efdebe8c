// HTTP + WebSocket server (Boost.Beast). The only part of Parley that sees Beast.
//
// run() serves until SIGTERM/SIGINT (or stop()), then closes every session cleanly: turns in
// progress are cancelled and recorded, finished turns are already stored. Routes: / and its
// assets (the page), /ws (the native protocol), /health, /sessions/{id}. Binding to anything
// but loopback needs an API key (checked in app_config::validate()). Every request's Host, and a
// browser's Origin, are checked first (net/access.h); a session's history is read with its
// resume token or the API key.
#pragma once

#include "pipeline/session.h"

#include <memory>
#include <string>
#include <vector>

namespace parley {

class option_table;

struct server_options {
    std::string host = "127.0.0.1";
    int port = 8000;
    std::string api_key;                      // empty: no key needed (loopback only)
    std::string api_key_flag, api_key_file;   // where api_key came from (one of them)
    std::vector<std::string> allowed_origins; // besides the page's own origin; "*" allows any
    std::vector<std::string> allowed_hosts;   // Host names served besides loopback ones; "*": any
    std::vector<std::string> trusted_proxies; // load balancers whose X-Forwarded-For is believed
    // Limits: open WebSocket sessions (0: 4 per LLM slot, 32 without a model), per client
    // address (0: no limit of its own), and seconds without a message from the client before
    // its session is closed (0: never).
    int max_sessions = 0;
    int max_sessions_per_ip = 0;
    int idle_timeout_s = 600;
    int drain_seconds = 30; // SIGTERM: how long replies in progress may take (0: stop at once)
    int io_threads = 2;
    // The scheduler slice the I/O threads ask for (set_thread_slice): woken to write a reply's
    // audio, they take a core from the engines' threads at once instead of at the next tick.
    // The session threads they start inherit it. Off by default: real-time priority (below)
    // does the same job better where the kernel allows it (docs/configuration.md).
    int io_slice_us = 0; // 0: the kernel's default
    // SCHED_FIFO priority of the I/O threads: -1 (default) REALTIME_PRIORITY_AUTO (10) where the
    // kernel allows it, else normal; 0 the normal policy; 1..99 that priority (a warning where
    // refused).
    int io_rt_priority = -1;
    // TLS: HTTPS and WSS on the same port. A certificate and key (PEM files), or "self-signed":
    // one made for this host's names and kept in tls_dir (made again when the names change or
    // it nears its end). With TLS on, plain HTTP is served only to loopback clients.
    std::string tls_mode = "off"; // off, self-signed; a --tls-cert turns it on
    std::string tls_cert, tls_key;
    std::string tls_dir; // empty: the database's folder's tls/
    // The largest upload /v1/audio/transcriptions takes (OpenAI's limit: 25 MB).
    int max_upload_mb = 25;
    bool tls() const { return tls_mode == "self-signed" || !tls_cert.empty(); }
};

struct server_info {
    std::string llm, asr, tts; // engine names, empty when absent
    double llm_load_ms = 0;
};

// Registers the server's settings (--host, --port, ...) in the option table.
void register_server_options(option_table &t, server_options &o);

class server {
  public:
    server(const server_options &options, const session_engines &engines,
           const session_config &config, const server_info &info);
    ~server();
    // Blocks until stopped. Throws std::runtime_error when the address cannot be bound.
    void run();
    void stop();
    int port() const; // the bound port (useful with port 0)
    // The URL clients reach: http://HOST:PORT or https://HOST:PORT.
    std::string url() const;
    // With TLS: the certificate's SHA-256 fingerprint (AB:CD:...), else empty.
    std::string tls_fingerprint() const;

    struct impl; // defined in server.cpp

  private:
    std::unique_ptr<impl> impl_;
};

} // namespace parley
