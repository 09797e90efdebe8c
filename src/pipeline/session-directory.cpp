#include "pipeline/session-directory.h"

namespace parley {

std::shared_ptr<session> session_directory::claim(const std::string &id,
                                                  const std::shared_ptr<session> &s) {
    std::lock_guard lock(m_);
    std::weak_ptr<session> &slot = live_[id];
    std::shared_ptr<session> prev = slot.lock();
    slot = s;
    return prev == s ? nullptr : prev;
}

void session_directory::release(const std::string &id, const session *s) {
    std::lock_guard lock(m_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    std::shared_ptr<session> holder = it->second.lock();
    if (!holder || holder.get() == s) live_.erase(it);
}

size_t session_directory::size() const {
    std::lock_guard lock(m_);
    return live_.size();
}

} // namespace parley
