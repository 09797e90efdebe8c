// The server's settings in the option table.
#include "core/option-table.h"
#include "net/access.h"
#include "net/server.h"

#include <fstream>

namespace parley {

void register_server_options(option_table &t, server_options &o) {
    t.group("Server");
    t.add_string("host", o.host, "ADDR",
                 "listen address or host name (all but loopback need --api-key)");
    t.add_int("port", o.port, 0, 65535, "N", "listen port (0: any free port)");
    option_spec key;
    key.name = "api-key";
    key.value = "KEY";
    key.help = "required as a bearer token, ?api_key= or WebSocket subprotocol parley-key.KEY "
               "(a flag shows in ps: PARLEY_API_KEY or --api-key-file keep it out)";
    key.set = [&o](const std::string &v) -> std::string {
        o.api_key_flag = v;
        o.api_key = v;
        return {};
    };
    t.add(std::move(key));
    option_spec key_file;
    key_file.name = "api-key-file";
    key_file.value = "FILE";
    key_file.help = "read the API key from this file (its first line)";
    key_file.set = [&o](const std::string &path) -> std::string {
        std::ifstream f(path);
        std::string line;
        if (!f || !std::getline(f, line)) return "api-key-file: cannot read " + path;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
            line.pop_back();
        if (line.empty()) return "api-key-file: " + path + " starts with an empty line";
        o.api_key_file = path;
        o.api_key = line;
        return {};
    };
    key_file.check = [&o]() -> std::string {
        if (!o.api_key_file.empty() && !o.api_key_flag.empty())
            return "give the API key once: --api-key (or PARLEY_API_KEY) or --api-key-file";
        return {};
    };
    t.add(std::move(key_file));
    t.add_list("allow-origin", o.allowed_origins, "ORIGIN",
               "also accept WebSocket connections from this page origin (* for any; repeatable)");
    t.add_list("allow-host", o.allowed_hosts, "NAME",
               "also serve requests whose Host is this name (* for any; repeatable): on a "
               "loopback address only loopback names are served, against DNS rebinding");
    t.add_list("trusted-proxy", o.trusted_proxies, "ADDR",
               "a load balancer's address (repeatable): connections from it are counted against "
               "the client it names in X-Forwarded-For (its last entry) for --max-sessions-per-ip "
               "and the logs");
    t.last().check = [&o]() -> std::string {
        for (const std::string &a : o.trusted_proxies)
            if (!valid_ip_address(a))
                return "--trusted-proxy takes IP addresses; " + a.substr(0, 64) + " is not one";
        return {};
    };
    t.add_int("max-sessions", o.max_sessions, 0, 100000, "N",
              "open sessions at most; the next connection gets HTTP 503 with Retry-After (0: 4 "
              "per LLM slot, 32 without a model)");
    t.add_int("max-sessions-per-ip", o.max_sessions_per_ip, 0, 100000, "N",
              "open sessions at most from one client address; the next gets HTTP 429 with "
              "Retry-After (0: only --max-sessions)");
    t.add_int("drain-seconds", o.drain_seconds, 0, 3600, "SECONDS",
              "on SIGTERM: refuse new sessions, let the replies in progress finish, tell their "
              "clients to reconnect, then stop; at most this long (0: stop at once, as on "
              "SIGINT)");
    t.add_int("idle-timeout", o.idle_timeout_s, 0, 86400, "SECONDS",
              "close a session whose client sent nothing for this long, with an idle_timeout "
              "error (0: never)");
    t.add_choice("tls", o.tls_mode, {"off", "self-signed"},
                 "HTTPS and WSS on the port: self-signed makes a certificate for this host's "
                 "names and keeps it (see --tls-dir); or give --tls-cert and --tls-key");
    t.add_string("tls-cert", o.tls_cert, "FILE",
                 "TLS certificate (PEM, its chain after it): HTTPS and WSS on the port");
    t.add_string("tls-key", o.tls_key, "FILE", "the TLS certificate's private key (PEM)");
    t.last().check = [&o]() -> std::string {
        if (o.tls_cert.empty() != o.tls_key.empty())
            return "give both --tls-cert FILE and --tls-key FILE";
        if (!o.tls_cert.empty() && o.tls_mode == "self-signed")
            return "--tls self-signed makes its own certificate: leave out --tls-cert/--tls-key";
        return {};
    };
    t.add_string("tls-dir", o.tls_dir, "DIR",
                 "where --tls self-signed keeps its certificate (default: tls/ beside the "
                 "database)");
    t.add_int("max-upload-mb", o.max_upload_mb, 1, 1024, "MB",
              "largest audio upload to /v1/audio/transcriptions; a larger one is refused (413) "
              "before it is read");
    t.add_int("io-threads", o.io_threads, 1, 64, "N", "network threads");
    t.add_int("io-slice-us", o.io_slice_us, 0, 100000, "N",
              "scheduler slice of the WebSocket writer threads and the session threads they "
              "start, 100..100000 us (100: a reply's audio goes out at once on a busy machine, "
              "Linux 6.12+; 0: the kernel's)",
              "0 (the kernel's default) or 100..100000");
    t.last().check = [&o]() -> std::string { // 1..99 are out
        if (o.io_slice_us != 0 && (o.io_slice_us < 100 || o.io_slice_us > 100000))
            return "io-slice-us must be 0 (the kernel's default) or 100..100000";
        return {};
    };
    t.add_int("io-rt-priority", o.io_rt_priority, -1, 99, "N",
              "SCHED_FIFO priority of the WebSocket I/O threads, 1..99 (needs CAP_SYS_NICE or "
              "RLIMIT_RTPRIO; refused: a warning); 0: the normal policy; -1: 10 where the kernel "
              "allows it, else normal",
              "-1 (10 where allowed), 0 (the normal policy) or 1..99");
}

} // namespace parley
