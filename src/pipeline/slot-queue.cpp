#include "pipeline/slot-queue.h"

#include "llm/llm.h"

namespace parley {

int slot_queue::request(const void *who, grant granted, place moved, size_t *position) {
    std::lock_guard lock(m_);
    if (line_.empty()) {
        if (int slot = llm_.acquire_slot(); slot >= 0) return slot;
    }
    line_.push_back({who, std::move(granted), std::move(moved)});
    if (position) *position = line_.size();
    return -1;
}

int slot_queue::try_take() {
    std::lock_guard lock(m_);
    return line_.empty() ? llm_.acquire_slot() : -1;
}

void slot_queue::release(int slot) {
    if (slot < 0) return;
    for (;;) {
        waiter next;
        std::deque<waiter> rest;
        {
            std::lock_guard lock(m_);
            if (line_.empty()) {
                llm_.release_slot(slot);
                return;
            }
            next = std::move(line_.front());
            line_.pop_front();
            rest = line_;
        }
        if (!next.granted(slot)) continue; // gone: the next in line
        tell_places(rest, 0);
        return;
    }
}

void slot_queue::cancel(const void *who) {
    std::deque<waiter> rest;
    size_t from = 0;
    {
        std::lock_guard lock(m_);
        for (size_t i = 0; i < line_.size(); ++i)
            if (line_[i].who == who) {
                line_.erase(line_.begin() + std::ptrdiff_t(i));
                rest = line_;
                from = i;
                break;
            }
        if (rest.empty()) return;
    }
    tell_places(rest, from);
}

size_t slot_queue::waiting() const {
    std::lock_guard lock(m_);
    return line_.size();
}

// Everyone from `from` on moved up one place.
void slot_queue::tell_places(const std::deque<waiter> &line, size_t from) const {
    for (size_t i = from; i < line.size(); ++i)
        if (line[i].moved) line[i].moved(i + 1);
}

} // namespace parley
