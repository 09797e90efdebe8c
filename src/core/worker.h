// A thread with a task queue ordered by deadline.
//
// post() may be called from any thread; tasks run one at a time on the worker's own thread.
// Each task has a deadline, when its result is needed: post() means now, post_by() a time in
// the future. The earliest deadline runs first, and tasks with the same deadline run in the
// order posted, so a worker fed only by post() is a FIFO. The TTS worker uses deadlines so that
// a reply's first phrase, which a listener is waiting for, goes ahead of other replies' later
// phrases, whose audio is only needed once what was sent before them has played.
// The destructor stops taking tasks, runs none of those still queued, and joins the thread.
// Tasks must not throw (an exception is caught and logged). A worker is an actor (actor.h) with
// a pool of one thread of its own.
#pragma once

#include "core/actor.h"
#include "core/clock.h"

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

namespace parley {

// Names the calling thread (the first 15 bytes, Linux's limit), as `top -H` and /proc show it.
// Threads it starts afterwards, such as an OpenMP team, inherit the name.
void set_thread_name(const std::string &name);

// Asks the kernel to run the calling thread in slices of `us` microseconds (Linux 6.12 or later:
// sched_setattr's sched_runtime for SCHED_OTHER, 100..100,000 us; no privilege needed). With
// the EEVDF scheduler a thread woken with a shorter slice than the running thread's takes the
// core at once; with the same or a longer one it waits for that thread to block or for the
// next tick (4 ms at HZ=250). For threads that wake, do little and sleep (the WebSocket
// writers). Threads started afterwards by the calling thread inherit the slice (the session
// threads, started by the writers). 0 does nothing. Returns the error, empty when the kernel took
// it (older kernels take it and ignore it).
std::string set_thread_slice(int us);
// The calling thread's slice as the kernel reports it (Linux 6.12+; 0 where it reports none).
int thread_slice_us();

// Runs the calling thread under SCHED_FIFO at `priority` (1..99): woken, it takes a core from
// any normal thread at once, whatever the slices and the tick. For threads that only wake, do
// little and sleep (the WebSocket writers), as audio servers run their I/O threads. Needs
// CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `priority`; the kernel still keeps 5% of each
// second for normal threads (sched_rt_runtime_us). Threads it starts afterwards run under the
// normal policy (SCHED_RESET_ON_FORK). 0 does nothing. Returns the error, empty on success.
std::string set_thread_realtime(int priority);
// The calling thread's SCHED_FIFO/SCHED_RR priority; 0 under a normal policy.
int thread_realtime_priority();

// The priority options' convention (`parley serve --io-rt-priority`, `parley bench
// --client-rt-priority`): N > 0 asks for N, 0 for nothing, -1 for REALTIME_PRIORITY_AUTO where
// the kernel allows it.
constexpr int REALTIME_PRIORITY_AUTO = 10;
struct realtime_grant {
    int priority = 0;  // granted; 0: the normal policy
    int tried = 0;     // asked of the kernel; 0: nothing was asked
    std::string error; // why it was refused
};
realtime_grant request_thread_realtime(int option);

class worker {
  public:
    explicit worker(std::string name) : pool_(name, 1), actor_(pool_, std::move(name)) {}
    worker(const worker &) = delete;
    worker &operator=(const worker &) = delete;

    void post(std::function<void()> task) { actor_.post(std::move(task)); }
    void post_by(mono_time deadline, std::function<void()> task) {
        actor_.post_by(deadline, std::move(task));
    }
    size_t queued() const { return actor_.queued(); }

  private:
    actor_pool pool_; // one thread, named after the worker
    actor actor_;     // destroyed first: drops the queue, waits for a running task
};

} // namespace parley
