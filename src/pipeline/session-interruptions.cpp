// The session's interruptions: barge-in, what the history keeps of a cut reply, the client's
// playback reports, and the resume after a false start.
#include "pipeline/session.h"
#include "pipeline/session-turn.h"

#include "audio/echo-canceller.h"
#include "audio/resampler.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/actor.h"
#include "core/worker.h"
#include "store/store.h"
#include "pipeline/turn-record.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>

namespace parley {

// A reply that was generated in full but whose audio was still playing: it keeps only what
// was heard. Called with the turn's lock held.
void session::amend_turn(const std::shared_ptr<turn> &t, const std::string &heard,
                         bool interrupted) {
    t->playout.set_heard_text(heard);
    turn_record rec;
    std::string sid;
    {
        std::lock_guard lock(m_);
        auto it = std::find_if(history_.begin(), history_.end(),
                               [&](const turn_record &r) { return r.turn_id == t->id; });
        if (it == history_.end()) return;
        it->assistant = heard;
        it->interrupted = interrupted;
        rec = *it;
        sid = id_;
        cut_ = t;
    }
    if (eng_.db) {
        if (!store_call("save a cut turn", [&] { eng_.db->append_turn(sid, rec); }).empty())
            error("store_failed", "the turn cannot be saved; the conversation goes on");
    }
}

bool session::reply_active(mono_time now) {
    std::shared_ptr<turn> t;
    {
        std::lock_guard lock(m_);
        if (speaking_ && clock_.playing(now)) return true;
        t = current_;
    }
    if (!t) return false;
    std::lock_guard lock(t->m);
    return t->state == REPLY_STATE_LIVE;
}

// The user spoke over the reply: stop it where they stopped hearing it.
std::shared_ptr<session::turn> session::barge_in(mono_time now) {
    std::shared_ptr<turn> t, spk;
    std::shared_ptr<echo_canceller> aec;
    {
        std::lock_guard lock(m_);
        t = current_;
        spk = speaking_;
        aec = aec_;
    }
    bool generating = false;
    if (t) {
        std::lock_guard lock(t->m);
        generating = t->state == REPLY_STATE_LIVE;
    }
    std::shared_ptr<turn> cut;
    if (generating) {
        cancel_turn(t, true);
        cut = t;
    } else if (spk) {
        cut = spk;
        std::lock_guard lock(spk->m);
        std::string heard = spk->playout.cut(now);
        amend_turn(spk, heard);
        out_->on_event(interrupted_event{spk->id, heard});
        if (eng_.stats) ++eng_.stats->interruptions;
        std::lock_guard slock(m_);
        if (speaking_ == spk) speaking_.reset();
        clock_.stop(now);
    }
    if (aec) aec->clear_far_end();
    log_debug("session %s: barge-in", id().c_str());
    return cut;
}

// After a false start: the reply goes on from the first word the client did not play, with
// the audio already made (generation that was cut is not redone). The history gets the reply
// back.
void session::resume_turn(const std::shared_ptr<turn> &t) {
    std::lock_guard lock(t->m);
    std::vector<sent_chunk> rest = t->playout.take_unheard();
    if (rest.empty()) return;
    bool complete = t->llm_done && t->pending.empty();
    out_->on_event(resumed_event{t->id});
    bool llm_done = t->llm_done;
    t->pending.clear();
    for (size_t i = 0; i < rest.size(); i++) {
        sent_chunk &c = rest[i];
        t->llm_done = llm_done && i + 1 == rest.size(); // is_final on the last one only
        tts_result speech;
        for (const chunk_word &w : c.words)
            speech.words.push_back({w.text, w.start_ms, w.end_ms});
        speech.words_estimated = c.words_estimated;
        emit_chunk_locked(t, c.text, std::move(c.pcm), c.has_audio ? &speech : nullptr);
    }
    t->llm_done = llm_done;
    amend_turn(t, t->playout.text(), !complete);
    if (eng_.stats) --eng_.stats->interruptions;
    log_debug("session %s: false start; turn %lld goes on", id().c_str(), (long long)t->id);
}

void session::playback(const playback_report &r) {
    mono_time now = mono_now(); // when the client's report arrived
    post_control([this, r, now] { apply_playback(r, now); });
}

void session::apply_playback(const playback_report &r, mono_time now) {
    int64_t turn_id = r.turn_id;
    const std::string &chunk_id = r.chunk_id;
    int played_ms = r.played_ms;
    std::vector<std::shared_ptr<turn>> candidates;
    {
        std::lock_guard lock(m_);
        candidates = {cut_, speaking_, current_};
    }
    for (const auto &t : candidates) {
        if (!t || (turn_id > 0 && t->id != turn_id)) continue;
        std::lock_guard lock(t->m);
        std::optional<size_t> k = t->playout.find(chunk_id);
        if (!k) continue;
        if (t->playout.is_cut()) {
            std::string heard = t->playout.report_cut(*k, played_ms);
            if (heard != t->playout.heard_text()) amend_turn(t, heard);
            return;
        }
        // Still playing: correct the playout clock from this chunk on.
        auto shift = t->playout.report_playing(*k, played_ms, now);
        std::lock_guard slock(m_);
        if (speaking_ == t) clock_.shift(shift);
        return;
    }
    log_debug("playback report for unknown chunk %s ignored", chunk_id.c_str());
}

} // namespace parley
