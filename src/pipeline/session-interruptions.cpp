// The session's interruptions: barge-in, what the history keeps of a cut reply, the client's
// playback reports, and the resume after a false start.
#include "pipeline/session-turn.h"
#include "pipeline/session.h"

#include "audio/echo-canceller.h"
#include "audio/resampler.h"
#include "core/actor.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "pipeline/turn-record.h"
#include "store/store.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>

namespace parley {

// A reply that was generated in full but whose audio was still playing: it keeps only what
// was heard.
void session::amend_turn(std::shared_ptr<turn> t, const std::string &heard, bool interrupted) {
    t->playout.set_heard_text(heard);
    auto it = std::find_if(history_.begin(), history_.end(),
                           [&](const turn_record &r) { return r.turn_id == t->id; });
    if (it == history_.end()) return;
    it->assistant = heard;
    it->interrupted = interrupted;
    cut_ = t;
    save_turn(*it);
}

bool session::reply_active(mono_time now) {
    if (speaking_ && clock_.playing(now)) return true;
    return current_ && current_->state == REPLY_STATE_LIVE;
}

// The reply still playing at the client stops where it is: the history keeps what was heard.
void session::cut_playing(std::shared_ptr<turn> t, mono_time now) {
    std::string heard = t->playout.cut(now);
    amend_turn(t, heard);
    out_->on_event(interrupted_event{t->id, heard, t->playout.heard_ms()});
    if (speaking_ == t) speaking_.reset();
    clock_.stop(now);
}

// The user spoke over the reply: stop it where they stopped hearing it.
std::shared_ptr<session::turn> session::barge_in(mono_time now) {
    std::shared_ptr<turn> cut;
    if (current_ && current_->state == REPLY_STATE_LIVE) {
        cut = current_;
        cancel_turn(cut, true);
    } else if (speaking_) {
        cut = speaking_;
        cut_playing(cut, now);
        if (eng_.stats) ++eng_.stats->interruptions;
    }
    if (aec_) aec_->clear_far_end();
    log_debug("session %s: barge-in", id().c_str());
    return cut;
}

// After a false start: the reply goes on from the first word the client did not play, with
// the audio already made (generation that was cut is not redone). The history gets the reply
// back.
void session::resume_turn(std::shared_ptr<turn> t) {
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
        emit_chunk(t, c.text, std::move(c.pcm), c.has_audio ? &speech : nullptr);
    }
    t->llm_done = llm_done;
    amend_turn(t, t->playout.text(), !complete);
    if (eng_.stats) --eng_.stats->interruptions;
    log_debug("session %s: false start; turn %lld goes on", id().c_str(), (long long)t->id);
}

void session::truncate(int64_t turn_id, std::string heard) {
    post_control([this, turn_id, heard = std::move(heard)] { truncate_now(turn_id, heard); });
}

void session::truncate_now(int64_t turn_id, const std::string &heard) {
    mono_time now = mono_now();
    std::shared_ptr<turn> t;
    for (const auto &c : {current_, speaking_, cut_})
        if (c && c->id == turn_id) {
            t = c;
            break;
        }
    if (t && !t->finished()) cancel_turn(t, true); // still being made: it stops here
    if (t && speaking_ == t) {
        speaking_.reset();
        clock_.stop(now);
        if (aec_) aec_->clear_far_end();
    }
    if (t) t->playout.set_heard_text(heard);
    auto it = std::find_if(history_.begin(), history_.end(),
                           [&](const turn_record &r) { return r.turn_id == turn_id; });
    if (it == history_.end() || (it->assistant == heard && it->interrupted)) return;
    it->assistant = heard;
    it->interrupted = true;
    save_turn(*it);
}

void session::playback(const playback_report &r) {
    mono_time now = mono_now(); // when the client's report arrived
    post_control([this, r, now] { apply_playback(r, now); });
}

void session::apply_playback(const playback_report &r, mono_time now) {
    int64_t turn_id = r.turn_id;
    const std::string &chunk_id = r.chunk_id;
    int played_ms = r.played_ms;
    for (const auto &t : {cut_, speaking_, current_}) {
        if (!t || (turn_id > 0 && t->id != turn_id)) continue;
        std::optional<size_t> k = t->playout.find(chunk_id);
        if (!k) continue;
        if (t->playout.is_cut()) {
            std::string heard = t->playout.report_cut(*k, played_ms);
            if (heard != t->playout.heard_text()) amend_turn(t, heard);
            return;
        }
        // Still playing: correct the playout clock from this chunk on.
        auto shift = t->playout.report_playing(*k, played_ms, now);
        if (speaking_ == t) clock_.shift(shift);
        return;
    }
    log_debug("playback report for unknown chunk %s ignored", chunk_id.c_str());
}

} // namespace parley
