// The live sessions by id: one connection holds a session at a time. A second connection that
// resumes the id takes the session over: the first is told (`session_taken`) and closed, its
// turn in flight recorded, before the second reads the history; so two resumes of one id never
// both number turns from the same history.
//
// Thread-safe; claim() and release() are quick (the sessions' own work is done by the caller).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace parley {

class session;

class session_directory {
  public:
    // `s` holds `id` from now on; returns the session that held it (null: none, or gone).
    std::shared_ptr<session> claim(const std::string &id, const std::shared_ptr<session> &s);
    // `s` lets `id` go (nothing when another holds it by now).
    void release(const std::string &id, const session *s);
    size_t size() const;

  private:
    mutable std::mutex m_;
    std::map<std::string, std::weak_ptr<session>> live_;
};

} // namespace parley
