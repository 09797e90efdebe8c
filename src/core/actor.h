// Actors: task queues that share a pool of threads.
//
// An actor is a queue, not a thread: its tasks run one at a time, never two at once, in the
// order of their deadlines (post(): now; post_by(): a later time; equal deadlines run in the
// order posted), on whichever of its pool's threads is free. Among actors with work, the pool
// runs the one whose next task is due first, one task at a time, so a busy actor does not hold
// a thread from the others between its tasks. A thousand idle sessions are a thousand empty
// queues and no thread.
//
// Threads: post() and post_by() from any thread. The destructor stops taking tasks, drops those
// still queued and waits for a task that is running (unless it is called from that task).
// Tasks must not throw (an exception is caught and logged). A pool's destructor joins its
// threads; every actor on it must be gone by then.
#pragma once

#include "core/clock.h"

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parley {

class actor_pool {
  public:
    // threads <= 0: one per core.
    actor_pool(std::string name, int threads = 0);
    ~actor_pool();
    actor_pool(const actor_pool &) = delete;
    actor_pool &operator=(const actor_pool &) = delete;
    int threads() const { return int(threads_.size()); }

    // The process's pools, made on first use (by the thread that first asks, whose scheduling
    // settings their threads inherit): sessions' audio and turn-taking, and the recognisers'
    // end-of-utterance passes (long decodes that must not hold up the sessions' frames).
    static actor_pool &sessions();
    static actor_pool &end_passes();

  private:
    friend class actor;
    struct queue;
    void schedule(const std::shared_ptr<queue> &q, mono_time due);
    void run(std::stop_token st);

    std::string name_;
    std::mutex m_;
    std::condition_variable_any cv_;
    uint64_t scheduled_ = 0;
    std::map<std::pair<mono_time, uint64_t>, std::shared_ptr<queue>> ready_;
    std::vector<std::jthread> threads_;
};

class actor {
  public:
    actor(actor_pool &pool, std::string name);
    ~actor();
    actor(const actor &) = delete;
    actor &operator=(const actor &) = delete;

    void post(std::function<void()> task);
    void post_by(mono_time deadline, std::function<void()> task);
    size_t queued() const;

  private:
    actor_pool &pool_;
    std::shared_ptr<actor_pool::queue> q_;
};

} // namespace parley
