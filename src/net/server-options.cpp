// The server's settings in the option table.
#include "core/option-table.h"
#include "net/server.h"

namespace parley {

void register_server_options(option_table &t, server_options &o) {
    t.group("Server");
    t.add_string("host", o.host, "ADDR",
                 "listen address or host name (all but loopback need --api-key)");
    t.add_int("port", o.port, 0, 65535, "N", "listen port (0: any free port)");
    t.add_string("api-key", o.api_key, "KEY",
                 "required as a bearer token, ?api_key= or WebSocket subprotocol parley-key.KEY");
    option_spec origin;
    origin.name = "allow-origin";
    origin.value = "ORIGIN";
    origin.help = "also accept WebSocket connections from this page origin (* for any; repeatable)";
    origin.repeatable = true;
    origin.set = [&o](const std::string &v) -> std::string {
        o.allowed_origins.push_back(v);
        return {};
    };
    t.add(std::move(origin));
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
