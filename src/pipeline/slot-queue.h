// The LLM's slots (sessions with their own KV cache), handed out in order. A session that finds
// none free waits in line and is told its place; a slot let go goes to the first in line. So a
// session past the slots is told it waits, instead of every session slowing down.
//
// Thread-safe. The callbacks run on the thread that calls release() or cancel(), without the
// queue's lock; `granted` returns false when its session is gone (the slot goes on down the
// line).
#pragma once

#include <deque>
#include <functional>
#include <mutex>

namespace parley {

class llm_engine;

class slot_queue {
  public:
    using grant = std::function<bool(int slot)>;
    using place = std::function<void(size_t position)>;

    explicit slot_queue(llm_engine &llm) : llm_(llm) {}

    // A slot now (>= 0); or -1, the caller is in line at *position (1: next) and `granted` is
    // called with its slot later, `moved` with each new place.
    int request(const void *who, grant granted, place moved, size_t *position);
    // A free slot when nobody waits for one (>= 0), else -1: never a place in line.
    int try_take();
    // The slot goes to the first in line that takes it, or back to the engine.
    void release(int slot);
    // `who` leaves the line (nothing when it is not in it).
    void cancel(const void *who);
    size_t waiting() const;

  private:
    struct waiter {
        const void *who;
        grant granted;
        place moved;
    };
    void tell_places(const std::deque<waiter> &line, size_t from) const;

    llm_engine &llm_;
    mutable std::mutex m_;
    std::deque<waiter> line_;
};

} // namespace parley
