// The session's writes to the store: its row at its first turn, each turn as it starts (marked
// interrupted, so a crash leaves it said) and as it ends, and the turns the store did not take,
// kept and written again until it does. A database made anew (its file was removed) gets the
// whole history again.
#include "pipeline/session-turn.h"
#include "pipeline/session.h"

#include "core/actor.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/store.h"

#include <algorithm>
#include <chrono>

namespace parley {

namespace {

constexpr int RETRY_FIRST_MS = 500;
constexpr int RETRY_MAX_MS = 30000;

} // namespace

// The turn as it starts, marked interrupted with nothing heard: if the server dies before the
// turn ends, the store says it was cut rather than nothing.
void session::save_started(const turn &t) {
    turn_record r;
    r.turn_id = t.id;
    r.user = t.user;
    r.interrupted = true;
    r.timings_json = "{}";
    save_turn(r);
}

// Any thread: the store was made anew, or may take what it refused.
void session::store_changed() {
    post([this] { flush_unsaved(); });
}

void session::drain(std::function<void()> ready) {
    post_control([this, ready = std::move(ready)]() mutable {
        draining_ = std::move(ready);
        check_drained();
    });
}

void session::check_drained() {
    // A reply being written and sent waits; one held for a turn that has not ended (a
    // speculative start) is no one's reply yet.
    if (!draining_ || (current_ && !current_->finished() && !current_->held())) return;
    error("server_draining", "this server is going down: reconnect, and the conversation goes "
                             "on (resume this session) on another one");
    {
        std::lock_guard lock(door_);
        drained_ = true;
    }
    std::function<void()> ready = std::move(draining_);
    draining_ = nullptr;
    ready();
}

// A turn's record, new or amended (the same turn_id replaces it).
void session::save_turn(const turn_record &rec) {
    if (!eng_.db) return;
    auto same = [&](const turn_record &r) { return r.turn_id == rec.turn_id; };
    bool known = false; // already waiting: its error was sent
    if (auto it = std::find_if(unsaved_.begin(), unsaved_.end(), same); it != unsaved_.end()) {
        *it = rec;
        known = true;
    } else {
        unsaved_.push_back(rec);
        if (eng_.stats) ++eng_.stats->unsaved_turns;
    }
    flush_unsaved();
    if (!known && std::any_of(unsaved_.begin(), unsaved_.end(), same))
        error("store_failed", "turn " + std::to_string(rec.turn_id) +
                                  " cannot be saved now: it is kept and saved when the store "
                                  "takes it again; the conversation goes on");
}

// Writes what the store has not taken, oldest first; on a failure, tries again later (from
// half a second, doubling, up to 30 s).
void session::flush_unsaved() {
    if (!eng_.db) return;
    if (uint64_t gen = eng_.db->generation(); gen != db_generation_) {
        // A new database: this session's row and whole history again.
        db_generation_ = gen;
        row_saved_ = false;
        for (const turn_record &r : history_)
            if (std::none_of(unsaved_.begin(), unsaved_.end(),
                             [&](const turn_record &u) { return u.turn_id == r.turn_id; })) {
                unsaved_.push_back(r);
                if (eng_.stats) ++eng_.stats->unsaved_turns;
            }
        std::sort(unsaved_.begin(), unsaved_.end(),
                  [](const turn_record &a, const turn_record &b) { return a.turn_id < b.turn_id; });
    }
    if (moved_) return drop_unsaved();
    std::string sid = id();
    bool ok =
        row_saved_ || unsaved_.empty() || store_call("create a session", [&] {
                                              eng_.db->create_session(sid, token_hash_, holder_);
                                          }).empty();
    if (ok) row_saved_ = true;
    size_t done = 0;
    bool held = true;
    while (ok && held && done < unsaved_.size()) {
        ok = store_call("save a turn", [&] {
                 held = eng_.db->append_turn(sid, unsaved_[done], holder_);
             }).empty();
        if (ok && held) ++done;
    }
    unsaved_.erase(unsaved_.begin(), unsaved_.begin() + ptrdiff_t(done));
    if (eng_.stats) eng_.stats->unsaved_turns -= int64_t(done);
    if (!held) {
        // Resumed by another connection since (on another node, or before this one's turn
        // ended): the conversation goes on there, and its turns must not be replaced by ours.
        moved_ = true;
        log_warn("store: session %s was resumed by another connection: %zu turn(s) from this "
                 "one are not written; this connection is closed",
                 sid.c_str(), unsaved_.size());
        drop_unsaved();
        error("session_taken", "another connection resumed this session; this one is closed");
        out_->end("session_taken");
        return;
    }
    if (ok) {
        retry_ms_ = 0;
        return;
    }
    if (retry_pending_) return;
    retry_ms_ = retry_ms_ ? std::min(retry_ms_ * 2, RETRY_MAX_MS) : RETRY_FIRST_MS;
    retry_pending_ = true;
    post_at(mono_now() + std::chrono::milliseconds(retry_ms_), [this] {
        retry_pending_ = false;
        flush_unsaved();
    });
}

void session::drop_unsaved() {
    if (eng_.stats) eng_.stats->unsaved_turns -= int64_t(unsaved_.size());
    unsaved_.clear();
}

// Leaving the id (closed, or on to another session): a last try; what the store still refuses
// is lost, and said.
void session::flush_or_drop(const char *when) {
    if (unsaved_.empty()) return;
    flush_unsaved();
    if (unsaved_.empty()) return;
    log_error("store: session %s %s with %zu turn(s) the store did not take; they are lost",
              id().c_str(), when, unsaved_.size());
    if (eng_.stats) eng_.stats->unsaved_turns -= int64_t(unsaved_.size());
    unsaved_.clear();
}

} // namespace parley
