// The session's replies: the prompt, the LLM's tokens through the phrase chunker and the TTS
// to ordered reply chunks, held and released, finished and recorded.
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

bool session::direct_audio() const {
    return cfg_.direct_audio && eng_.llm && eng_.llm->supports_audio();
}

// The prompt's messages: the system prompt, as much of the history as fits the budget (the
// oldest turns go HISTORY_DROP_STEP at a time, so the cut stays put for the next turns and
// their KV cache with it), and the user's turn. Called on the LLM's thread.
std::vector<chat_message> session::prompt_messages(const std::string &user, int budget,
                                                   const token_counter &count) {
    std::vector<turn_record> history;
    {
        std::lock_guard lock(m_);
        history = history_;
    }
    return fit_history(cfg_.system_prompt, history, user, budget, count, HISTORY_DROP_STEP);
}

void session::prefill(const std::string &partial) {
    int slot;
    {
        std::lock_guard lock(m_);
        if (!eng_.llm || current_ || closed_) return; // a reply is running: leave its cache alone
        slot = slot_;
    }
    if (slot < 0 || prefill_busy_->exchange(true)) return; // one at a time per session
    llm_request req;
    req.slot = slot;
    req.max_tokens = 0;
    auto self = shared_from_this();
    req.messages = [self, partial](int budget, const token_counter &count) {
        return self->prompt_messages(partial, budget, count);
    };
    req.on_done = [busy = prefill_busy_](const llm_result &) { busy->store(false); };
    eng_.llm->submit(std::move(req));
}

std::shared_ptr<session::turn> session::start_turn(const std::string &user_text, mono_time t0,
                                                   mono_time t_transcript, bool held,
                                                   std::vector<int16_t> audio) {
    if (!eng_.llm) {
        error("no_model", "no language model is loaded; start the server with --model FILE.gguf "
                          "(make serve MODEL=FILE.gguf)");
        return nullptr;
    }
    std::shared_ptr<turn> old;
    auto t = std::make_shared<turn>();
    t->user = user_text;
    t->t0 = t0;
    t->t_transcript = t_transcript;
    t->state = held ? REPLY_STATE_HELD : REPLY_STATE_LIVE;
    t->chunker = phrase_chunker(cfg_.chunker);
    cut_by_speech_.reset(); // the user said something: the reply they cut stays cut
    t->asr_ms = utt_asr_ms_;
    utt_asr_ms_ = 0;
    int slot;
    std::shared_ptr<turn> playing;
    mono_time now = mono_now();
    {
        std::lock_guard lock(m_);
        old = current_;
        slot = slot_;
        if (speaking_ && speaking_ != old && clock_.playing(now) && !held) playing = speaking_;
    }
    if (old && !(held && old->held())) cancel_turn(old, true); // a new user turn cuts the old reply
    if (old && held && old->held()) discard_turn(old);
    if (playing) {
        // The last reply was still being played: the history keeps what was heard of it.
        std::lock_guard lock(playing->m);
        std::string heard = playing->playout.cut(now);
        amend_turn(playing, heard);
        out_->on_event(interrupted_event{playing->id, heard});
        std::lock_guard slock(m_);
        if (speaking_ == playing) speaking_.reset();
        clock_.stop(now);
    }
    {
        std::lock_guard lock(m_);
        if (closed_) return nullptr;
        t->id = next_turn_id_++;
        t->want_audio = tts_wanted_ && eng_.tts != nullptr;
        current_ = t;
    }
    if (eng_.stats) ++eng_.stats->turns;

    llm_request req;
    req.slot = slot;
    req.sampling = cfg_.sampling;
    req.max_tokens = cfg_.max_tokens;
    req.cancel = t->cancel;
    req.pause = t->pause;
    req.urgent = t->urgent;
    auto self = shared_from_this();
    req.messages = [self, t](int budget, const token_counter &count) {
        return self->prompt_messages(t->user, budget, count);
    };
    if (!audio.empty()) {
        // Direct audio: the model hears the utterance and writes its transcript, then replies.
        req.audio = pcm16_to_float(audio);
        req.audio_mode = LLM_AUDIO_DIRECT;
        req.messages = [self](int budget, const token_counter &count) {
            auto msgs = self->prompt_messages("", budget, count);
            if (!msgs.empty() && msgs.back().role == "user" && msgs.back().content.empty())
                msgs.pop_back(); // the engine adds the user's turn with the audio
            return msgs;
        };
        req.on_transcript = [self, t](const std::string &text) {
            std::lock_guard lock(t->m);
            t->user = text;
            t->t_transcript = mono_now();
            self->out_->on_event(transcript_event{text, true, t->id});
        };
    }
    req.on_piece = [self, t](std::string_view piece) { self->on_piece(t, piece); };
    req.on_done = [self, t](const llm_result &r) { self->on_llm_done(t, r); };
    eng_.llm->submit(std::move(req));
    return t;
}

void session::on_piece(const std::shared_ptr<turn> &t, std::string_view piece) {
    {
        std::lock_guard lock(t->m);
        if (t->finished()) return;
        if (t->t_first_token == mono_time{}) t->t_first_token = mono_now();
        for (std::string &p : t->chunker.push(piece))
            t->pending.push_back(std::move(p));
        // A held reply stops after its first phrase: that is all the end of the turn needs at
        // once, and the user may go on talking (then the rest would be thrown away).
        if (t->chunker.released() > 0 && t->urgent->load()) {
            log_debug("turn %lld: first phrase %.1f ms after the first token",
                      static_cast<long long>(t->id), ms_between(t->t_first_token, mono_now()));
            t->urgent->store(false);
            if (t->held()) t->pause->store(true);
        }
    }
    pump(t);
}

void session::on_llm_done(const std::shared_ptr<turn> &t, const llm_result &r) {
    {
        std::lock_guard lock(t->m);
        if (t->finished()) return;
        t->llm = r;
        if (r.stop_reason == LLM_STOP_ERROR) {
            error("llm_failed", r.error);
        }
        std::string rest = t->chunker.flush();
        if (!rest.empty()) t->pending.push_back(std::move(rest));
        t->llm_done = true;
    }
    pump(t);
}

void session::pump(const std::shared_ptr<turn> &t) {
    std::lock_guard lock(t->m);
    if (t->finished() || t->cancel->load()) return;
    while (!t->tts_busy && !t->pending.empty()) {
        if (t->want_audio && tts_state_ == TTS_STATE_PENDING) return; // resumed by tts_checked
        std::string text = std::move(t->pending.front());
        t->pending.pop_front();
        if (t->want_audio && tts_state_ == TTS_STATE_OK && tts_speakable(text)) {
            // The phrase goes out with its audio and word timings as soon as they are made
            // (espeak-ng takes a few ms a phrase); the next phrase waits, so a chunk's audio
            // directly follows its text_chunk.
            t->tts_busy = true;
            synthesize(t, std::move(text), {});
        } else {
            emit_chunk_locked(t, std::move(text), {}, nullptr);
        }
    }
    if (!t->tts_busy && t->pending.empty() && t->llm_done) finish_turn_locked(t);
}

void session::synthesize(const std::shared_ptr<turn> &t, std::string text, std::string) {
    auto self = shared_from_this();
    tts_params params;
    {
        std::lock_guard lock(m_);
        params = tts_params_;
    }
    int out_rate = cfg_.audio_out_rate;
    // Needed when the audio already sent for this reply has played (now for its first phrase):
    // the shared TTS worker serves the earliest need first, across sessions.
    // (The turn's lock is held by pump().)
    mono_time needed = t->playout.audio_end(mono_now());
    eng_.tts_worker->post_by(needed, [self, t, text = std::move(text), params, out_rate] {
        if (t->cancel->load()) return;
        std::vector<int16_t> pcm;
        tts_result audio;
        std::string err;
        mono_time t_synth = mono_now();
        try {
            audio = self->eng_.tts->synthesize(text, params);
            pcm = audio.sample_rate == out_rate ? std::move(audio.pcm)
                                                : resample(audio.pcm, audio.sample_rate, out_rate);
            if (pcm.empty()) err = "TTS produced no audio";
        } catch (const std::exception &e) {
            err = e.what();
        }
        {
            std::lock_guard lock(t->m);
            if (t->finished() || t->cancel->load()) return;
            double ms = ms_between(t_synth, mono_now());
            t->tts_ms += ms;
            if (t->tts_calls++ == 0) t->tts_first_ms = ms;
            if (!err.empty()) {
                // No audio for this phrase; the rest of the turn goes out as text.
                t->want_audio = false;
                self->error("tts_failed", "chunk_id_" + std::to_string(t->next_chunk) + ": " + err +
                                              "; continuing with text only");
                self->emit_chunk_locked(t, text, {}, nullptr);
            } else {
                self->emit_chunk_locked(t, text, std::move(pcm), &audio);
            }
            t->tts_busy = false;
        }
        self->pump(t);
    });
}

void session::emit_chunk_locked(const std::shared_ptr<turn> &t, std::string text,
                                std::vector<int16_t> pcm, const tts_result *speech) {
    reply_chunk_event c;
    c.chunk_id = "chunk_id_" + std::to_string(t->next_chunk++);
    c.text = text;
    c.is_final = t->llm_done && t->pending.empty();
    c.has_audio = !pcm.empty();
    c.turn_id = t->id;
    c.processing_time_ms = int64_t(ms_between(t->t0, mono_now()));
    sent_chunk sc;
    sc.id = c.chunk_id;
    sc.text = text;
    sc.has_audio = c.has_audio;
    sc.audio_ms = int(pcm.size() * 1000 / size_t(cfg_.audio_out_rate));
    if (c.has_audio && speech) {
        // Word timings within this chunk's audio: monotonic, inside [0, audio_ms].
        int prev = 0;
        for (size_t i = 0; i < speech->words.size(); i++) {
            const tts_word &w = speech->words[i];
            int start = std::clamp(w.start_ms, prev, sc.audio_ms);
            int end = w.end_ms > start ? std::min(w.end_ms, sc.audio_ms) : sc.audio_ms;
            if (i + 1 < speech->words.size())
                end = std::min(end, std::max(start, speech->words[i + 1].start_ms));
            c.words.push_back({w.text, start, std::max(start, end)});
            prev = start;
        }
        c.words_estimated = speech->words_estimated;
        sc.words = c.words;
        sc.words_estimated = c.words_estimated;
    }
    if (c.has_audio) sc.pcm = pcm;
    c.pcm = std::move(pcm);
    if (c.has_audio) t->audio_ms += sc.audio_ms;
    size_t index = t->playout.add(std::move(sc));
    if (!t->sent_text.empty()) t->sent_text += " ";
    t->sent_text += text;
    t->final_sent = c.is_final;
    int chunk = c.has_audio ? int(index) : -1;
    emit_locked(t, std::move(c), chunk);
}

void session::emit_locked(const std::shared_ptr<turn> &t, reply_chunk_event c, int chunk) {
    if (t->held()) {
        t->held_out.emplace_back(std::move(c), chunk);
        return;
    }
    mono_time now = mono_now();
    if (t->t_first_chunk == mono_time{}) t->t_first_chunk = now;
    if (c.has_audio) {
        if (t->t_first_audio == mono_time{}) t->t_first_audio = now;
        std::shared_ptr<echo_canceller> aec;
        if (chunk >= 0 && size_t(chunk) < t->playout.chunks().size()) {
            // The client plays its audio queue without gaps: this chunk starts when the audio
            // before it ends, or now.
            std::lock_guard lock(m_);
            if (!speaking_) clock_.stop(now);
            t->playout.set_play_start(
                size_t(chunk), clock_.schedule(t->playout.chunks()[size_t(chunk)].audio_ms, now));
            speaking_ = t;
            aec = aec_;
        }
        if (aec) {
            // The far end of the echo canceller: this audio as the client's speaker plays it.
            aec->far_end(resample(c.pcm, cfg_.audio_out_rate, ASR_SAMPLE_RATE),
                         near_received_.load() - near_processed_.load());
        }
    }
    out_->on_event(std::move(c));
}

void session::release_turn(const std::shared_ptr<turn> &t, const std::string &final_text) {
    {
        std::lock_guard lock(t->m);
        if (t->state == REPLY_STATE_DONE) return; // cancelled meanwhile
        bool generated = t->state == REPLY_STATE_HELD_DONE;
        t->state = REPLY_STATE_LIVE;
        t->pause->store(false);
        t->t_transcript = mono_now();
        out_->on_event(transcript_event{final_text, true, t->id});
        for (auto &[chunk, index] : t->held_out)
            emit_locked(t, std::move(chunk), index);
        t->held_out.clear();
        if (generated) finish_turn_locked(t);
    }
    pump(t);
    // Last, after the end of the turn's burst: the woken LLM thread may take this core from
    // the session thread, and what was held should be out first (waking it before the chunks
    // put 1-3 ms between the final transcript and the first audio with one client).
    if (!eng_.llm) return;
    if (in_burst_)
        wake_llm_after_burst_ = true;
    else
        eng_.llm->wake();
}

session::end_of_turn_burst::end_of_turn_burst(session &s) : s_(s) {
    s_.in_burst_ = true;
    s_.out_->hold();
}

session::end_of_turn_burst::~end_of_turn_burst() {
    s_.out_->flush();
    s_.in_burst_ = false;
    if (std::exchange(s_.wake_llm_after_burst_, false)) s_.eng_.llm->wake();
}

void session::discard_turn(const std::shared_ptr<turn> &t) {
    t->cancel->store(true);
    std::lock_guard lock(t->m);
    t->state = REPLY_STATE_DONE;
    t->held_out.clear();
    std::lock_guard slock(m_);
    if (current_ == t) current_.reset();
    if (next_turn_id_ == t->id + 1) next_turn_id_ = t->id; // the id was never seen
    if (eng_.stats) --eng_.stats->turns;
}

void session::finish_turn_locked(const std::shared_ptr<turn> &t) {
    if (t->finished()) return;
    if (t->state == REPLY_STATE_HELD) {
        // Everything is generated but not yet confirmed: finish on release.
        t->state = REPLY_STATE_HELD_DONE;
        return;
    }
    if (!t->final_sent) {
        // The reply ended on a phrase already sent: close the stream with an empty final chunk.
        reply_chunk_event c;
        c.chunk_id = "chunk_id_" + std::to_string(t->next_chunk++);
        c.is_final = true;
        c.turn_id = t->id;
        c.processing_time_ms = int64_t(ms_between(t->t0, mono_now()));
        emit_locked(t, std::move(c), -1);
        t->final_sent = true;
    }
    t->state = REPLY_STATE_DONE;
    record_turn(t, false);
}

void session::cancel_turn(const std::shared_ptr<turn> &t, bool notify) {
    t->cancel->store(true);
    mono_time now = mono_now();
    std::lock_guard lock(t->m);
    if (t->finished()) return;
    t->state = REPLY_STATE_DONE;
    t->playout.cut(now);
    if (notify) out_->on_event(interrupted_event{t->id, t->playout.heard_text()});
    if (eng_.stats) ++eng_.stats->interruptions;
    record_turn(t, true);
    std::lock_guard slock(m_);
    if (speaking_ == t) {
        speaking_.reset();
        clock_.stop(now);
    }
    cut_ = t;
}

// Called with the turn's lock held.
void session::record_turn(const std::shared_ptr<turn> &t, bool interrupted) {
    turn_timings tt = turn_timings_of(*t, mono_now(), eng_.stats);
    turn_record rec = turn_record_of(*t, tt, interrupted, t->playout.heard_text());
    std::string sid;
    {
        std::lock_guard lock(m_);
        history_.push_back(rec);
        sid = id_;
        if (current_ == t) current_.reset();
    }
    if (eng_.db) {
        if (!store_call("save a turn", [&] { eng_.db->append_turn(sid, rec); }).empty())
            error("store_failed", "the turn cannot be saved; the conversation goes on");
    }
    if (eng_.stats && !interrupted) observe_turn(*eng_.stats, *t, tt);
    if (!interrupted) out_->on_event(reply_done_event{t->id, rec.assistant, tt, t->llm.stop_reason});
    log_info("turn %s/%lld: end of speech to first audio %.1f ms (after the end of the turn: "
             "first text %.1f ms, first audio %.1f ms), %d tokens%s",
             sid.c_str(), (long long)t->id, tt.speech_end_to_audio_ms,
             tt.first_text_ms.value_or(-1), tt.first_audio_ms.value_or(-1),
             t->llm.generated_tokens, interrupted ? " (interrupted)" : "");
}

} // namespace parley
