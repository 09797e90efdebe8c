// Runs a piece of work on a short-lived thread of its own and waits for it.
//
// Why: ggml's CPU backend here is built with OpenMP, and libgomp keeps the thread team of every
// thread that ran a parallel region for as long as that thread lives. Once the process holds
// more such threads than there are cores, libgomp stops spin-waiting at barriers in every team
// and each barrier becomes a sleep and a wake-up. Whisper decoding on a session's thread would
// leave a team behind per session and slow the language model's generation in the same process
// (measured with stories260K: 0.39 → 1.32 ms per token; a 0.5B model 13% slower). A decode run
// through run_on_own_thread takes its team with it when it returns. Creating the thread costs
// tens of microseconds; a decode costs tens to hundreds of milliseconds.
#pragma once

#include <exception>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace parley {

template <class F> std::invoke_result_t<F &> run_on_own_thread(F &&fn) {
    using result = std::invoke_result_t<F &>;
    std::exception_ptr error;
    if constexpr (std::is_void_v<result>) {
        std::thread([&] {
            try {
                fn();
            } catch (...) {
                error = std::current_exception();
            }
        }).join();
        if (error) std::rethrow_exception(error);
    } else {
        std::optional<result> out;
        std::thread([&] {
            try {
                out.emplace(fn());
            } catch (...) {
                error = std::current_exception();
            }
        }).join();
        if (error) std::rethrow_exception(error);
        return std::move(*out);
    }
}

} // namespace parley
