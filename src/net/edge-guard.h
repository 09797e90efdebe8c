// The network edge's one guard: every HTTP route and every WebSocket message entry runs under
// edge_guard(). A failure anywhere below it (the store, an engine, memory) is logged in one line
// and returned as its message, for a 500 or an error event; the server goes on serving everyone
// else. Any thread may call it.
#pragma once

#include "core/log.h"

#include <exception>
#include <string>

namespace parley {

// Runs handler(); empty when it returned, else what it threw (logged as "WHERE: message").
template <class F> std::string edge_guard(const char *where, F &&handler) {
    try {
        handler();
        return {};
    } catch (const std::exception &e) {
        log_error("%s: %s", where, e.what());
        return e.what()[0] ? e.what() : "a failure without a message";
    } catch (...) {
        log_error("%s: an unknown failure", where);
        return "an unknown failure";
    }
}

} // namespace parley
