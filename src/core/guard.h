// One way to stop a failure at a boundary: run_guarded() runs a handler and turns whatever it
// throws into one log line and a message. The network edge runs every HTTP route and every
// WebSocket message under it (a 500 or an `error` event follows), and every call on the store
// goes through it (store/store.h: store_call), so that a failure below costs a request or a
// record, never a session or the process. Any thread may call it.
#pragma once

#include "core/log.h"

#include <exception>
#include <string>

namespace parley {

// Runs handler(); empty when it returned, else what it threw (logged as "WHERE: message").
template <class F> std::string run_guarded(const std::string &where, F &&handler) {
    try {
        handler();
        return {};
    } catch (const std::exception &e) {
        log_error("%s: %s", where.c_str(), e.what());
        return e.what()[0] ? e.what() : "a failure without a message";
    } catch (...) {
        log_error("%s: an unknown failure", where.c_str());
        return "an unknown failure";
    }
}

} // namespace parley
