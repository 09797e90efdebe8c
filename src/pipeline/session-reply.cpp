// The session's replies: the prompt, the LLM's tokens through the phrase chunker and the TTS
// to ordered reply chunks, held and released, finished and recorded.
#include "pipeline/session-turn.h"
#include "pipeline/session.h"

#include "audio/echo-canceller.h"
#include "audio/resampler.h"
#include "core/actor.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/secret.h"
#include "core/worker.h"
#include "llm/tool-calls.h"
#include "pipeline/turn-record.h"
#include "store/store.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>

namespace parley {

bool session::direct_audio() const {
    return cfg_.direct_audio && eng_.llm && eng_.llm->supports_audio();
}

void session::prefill(const std::string &partial) {
    if (!eng_.llm || current_ || slot_ < 0) return; // a reply is running: leave its cache alone
    if (prefill_busy_->exchange(true)) return;      // one at a time per session
    llm_request req;
    req.slot = slot_;
    req.max_tokens = 0;
    // The prompt is made on the LLM's worker from this copy of the history: as much of it as
    // fits the budget (the oldest turns go HISTORY_DROP_STEP at a time, so the cut stays put
    // for the next turns and their KV cache with it).
    req.messages = [history = history_, system = cfg_.system_prompt,
                    partial](int budget, const token_counter &count) {
        return fit_history(system, history, partial, budget, count, HISTORY_DROP_STEP);
    };
    req.on_done = [busy = prefill_busy_](const llm_result &) { busy->store(false); };
    eng_.llm->submit(std::move(req));
}

std::shared_ptr<session::turn> session::start_turn(const std::string &user_text, mono_time t0,
                                                   mono_time t_transcript, bool held,
                                                   std::vector<int16_t> audio,
                                                   const response_request *asked) {
    if (!eng_.llm) {
        error("no_model", "no language model is loaded; start the server with --model FILE.gguf "
                          "(make serve MODEL=FILE.gguf)");
        return nullptr;
    }
    if (queued_) {
        error("queued", "every place with the language model is taken: this session is number " +
                            std::to_string(queue_position_) +
                            " in line, and is told when it is its turn (admitted)");
        return nullptr;
    }
    auto t = std::make_shared<turn>();
    t->user = user_text;
    t->t0 = t0;
    t->t_transcript = t_transcript;
    t->state = held ? REPLY_STATE_HELD : REPLY_STATE_LIVE;
    t->holding = held;
    t->llm_side.chunker = phrase_chunker(cfg_.chunker);
    cut_by_speech_.reset(); // the user said something: the reply they cut stays cut
    t->asr_ms = utt_asr_ms_;
    utt_asr_ms_ = 0;
    std::shared_ptr<turn> old = current_;
    mono_time now = mono_now();
    if (old && !(held && old->held())) cancel_turn(old, true); // a new user turn cuts the old reply
    if (old && held && old->held()) discard_turn(old);
    // The last reply was still being played: the history keeps what was heard of it. (A reply
    // the client asked for goes after it: the client cuts what it wants cut.)
    if (speaking_ && speaking_ != old && clock_.playing(now) && !held && !asked)
        cut_playing(speaking_, now);
    t->id = next_turn_id_++;
    t->want_audio = tts_wanted_ && eng_.tts != nullptr;
    t->tools = cfg_.tools;
    t->grammar = cfg_.tool_grammar;
    if (asked) {
        if (asked->tools) t->tools = *asked->tools;
        if (asked->tool_grammar) t->grammar = *asked->tool_grammar;
        t->out_of_band = asked->out_of_band;
        t->tag = asked->tag;
        if (asked->audio) t->want_audio = *asked->audio && eng_.tts != nullptr;
        t->system = asked->instructions;
        t->input = asked->input;
        if (asked->max_tokens) t->max_tokens = *asked->max_tokens;
    }
    if (t->tools.empty()) t->grammar.clear();
    t->llm_side.holding = !t->tools.empty();
    current_ = t;
    if (eng_.stats) ++eng_.stats->turns;
    submit_reply(t, std::move(audio));
    if (!held) {
        out_->on_event(reply_started_event{t->id, t->tag, t->out_of_band});
        if (!t->out_of_band) save_started(*t);
    }
    return t;
}

void session::respond(response_request r, mono_time t0) {
    post([this, r = std::move(r), t0] {
        if (end_passes_pending_ > 0) {
            // The utterance that just ended is still being recognised: its words come first.
            waiting_response_.emplace(r, t0);
            return;
        }
        respond_now(r, t0);
    });
}

void session::respond_now(const response_request &r, mono_time t0) {
    if (current_ && current_->state == REPLY_STATE_LIVE) {
        error("reply_active", "a reply is going: cancel it first, or ask again after its end");
        return;
    }
    if (current_) discard_turn(current_); // a reply held for the end of a turn
    auto t = start_turn(r.input ? std::string() : pending_user_text(), t0, t0, false, {}, &r);
    if (t && !r.out_of_band && !r.input) pending_user_.clear();
}

std::string session::pending_user_text() const {
    std::string user;
    for (const std::string &m : pending_user_)
        user += (user.empty() ? "" : "\n") + m;
    return user;
}

void session::forget(int64_t turn_id, std::string text, bool assistant) {
    post([this, turn_id, text = std::move(text), assistant] {
        forget_now(turn_id, text, assistant);
    });
}

void session::forget_now(int64_t turn_id, const std::string &text, bool assistant) {
    if (assistant && turn_id < 0) {
        // Words the client gave the assistant (add_message): a turn of their own, found by them.
        for (auto r = history_.rbegin(); r != history_.rend(); ++r)
            if (r->assistant == text) {
                r->assistant.clear();
                save_turn(*r);
                return;
            }
        return;
    }
    if (turn_id <= 0) {
        auto it = std::find(pending_user_.begin(), pending_user_.end(), text);
        if (it != pending_user_.end()) pending_user_.erase(it);
        return;
    }
    if (assistant) {
        truncate_now(turn_id, "");
        return;
    }
    auto rec = std::find_if(history_.begin(), history_.end(),
                            [&](const turn_record &r) { return r.turn_id == turn_id; });
    if (rec == history_.end()) return;
    // The turn's user words are its messages joined by newlines: this one goes.
    std::string &user = rec->user;
    size_t at = user.find(text);
    if (at == std::string::npos) return;
    size_t end = at + text.size();
    if (end < user.size() && user[end] == '\n')
        ++end;
    else if (at > 0 && user[at - 1] == '\n')
        --at;
    user.erase(at, end - at);
    save_turn(*rec);
}

void session::hold_user_text(const std::string &text) {
    if (text.empty()) return;
    pending_user_.push_back(text);
}

void session::configure(const session_settings &s) {
    post([this, s] {
        if (s.instructions) cfg_.system_prompt = *s.instructions;
        if (s.max_tokens) cfg_.max_tokens = *s.max_tokens;
        if (s.auto_respond) cfg_.auto_respond = *s.auto_respond;
        if (s.interrupt_on_speech) cfg_.interrupt_on_speech = *s.interrupt_on_speech;
        if (s.tools) cfg_.tools = *s.tools;
        if (s.tool_grammar) cfg_.tool_grammar = *s.tool_grammar;
    });
}

void session::add_message(message_role role, std::string text) {
    post([this, role, text = std::move(text)] {
        if (role == MESSAGE_ROLE_USER) {
            hold_user_text(text);
            return;
        }
        // The assistant's words: a turn of its own, after the user's words added before it.
        turn_record rec;
        rec.turn_id = next_turn_id_++;
        rec.user = pending_user_text();
        pending_user_.clear();
        rec.assistant = text;
        rec.timings_json = "{}";
        rec.created_ms = unix_ms();
        history_.push_back(rec);
        save_turn(rec);
    });
}

void session::submit_reply(std::shared_ptr<turn> t, std::vector<int16_t> audio) {
    llm_request req;
    req.slot = slot_;
    req.sampling = cfg_.sampling;
    req.max_tokens = t->max_tokens >= 0 ? t->max_tokens : cfg_.max_tokens;
    req.cancel = t->cancel;
    req.tools = t->tools;
    req.grammar = t->grammar;
    req.pause = t->pause;
    req.urgent = t->urgent;
    auto self = shared_from_this();
    // A message longer than the model's context is cut to what fits, and the client told once.
    std::string system = t->system.value_or(cfg_.system_prompt);
    req.messages = [self, history = history_, system, user = t->user,
                    warned = std::make_shared<std::atomic<bool>>(false)](
                       int budget, const token_counter &count) {
        bool cut = false;
        auto msgs = fit_history(system, history, user, budget, count, HISTORY_DROP_STEP, &cut);
        // Asked to reply with no new words from the user: the conversation as it stands.
        if (user.empty() && !msgs.empty() && msgs.back().role == "user") msgs.pop_back();
        if (cut && !warned->exchange(true))
            self->error("text_cut", "the message is longer than the model's context (" +
                                        std::to_string(budget) +
                                        " tokens for the prompt): its beginning is answered");
        return msgs;
    };
    if (t->input) {
        // The client's own prompt for this reply.
        req.messages = [system, input = *t->input](int, const token_counter &) {
            std::vector<chat_message> msgs{{"system", system}};
            msgs.insert(msgs.end(), input.begin(), input.end());
            return msgs;
        };
    }
    if (!audio.empty()) {
        // Direct audio: the model hears the utterance and writes its transcript, then replies.
        req.audio = pcm16_to_float(audio);
        req.audio_mode = LLM_AUDIO_DIRECT;
        req.messages = [history = history_,
                        system = cfg_.system_prompt](int budget, const token_counter &count) {
            auto msgs = fit_history(system, history, "", budget, count, HISTORY_DROP_STEP);
            if (!msgs.empty() && msgs.back().role == "user" && msgs.back().content.empty())
                msgs.pop_back(); // the engine adds the user's turn with the audio
            return msgs;
        };
        req.on_transcript = [self, t](const std::string &text) {
            mono_time now = mono_now();
            self->post([self, t, text, now] {
                t->user = text;
                t->t_transcript = now;
                self->out_->on_event(transcript_event{text, true, t->id});
            });
        };
    }
    req.on_piece = [self, t](std::string_view piece) { self->on_piece(t, piece); };
    req.on_done = [self, t](const llm_result &r) { self->on_llm_done(t, r); };
    eng_.llm->submit(std::move(req));
}

// On the LLM's worker: whole phrases go to the session's actor.
void session::on_piece(std::shared_ptr<turn> t, std::string_view piece) {
    auto &l = t->llm_side;
    if (l.t_first_token == mono_time{}) l.t_first_token = mono_now();
    std::vector<std::string> phrases;
    if (l.holding) {
        // Tools offered: a reply that may still be a call is neither spoken nor shown yet.
        l.held += piece;
        if (may_be_tool_call(l.held)) return;
        l.holding = false;
        phrases = l.chunker.push(l.held);
    } else {
        phrases = l.chunker.push(piece);
    }
    if (phrases.empty()) return;
    // A held reply stops after its first phrase: that is all the end of the turn needs at
    // once, and the user may go on talking (then the rest would be thrown away). The actor's
    // release clears `holding` and then `pause`: whichever order the two threads meet in, the
    // reply is not left paused once released.
    if (t->urgent->exchange(false)) {
        log_debug("turn %lld: first phrase %.1f ms after the first token",
                  static_cast<long long>(t->id), ms_between(l.t_first_token, mono_now()));
        if (t->holding) {
            t->pause->store(true);
            if (!t->holding) t->pause->store(false);
        }
    }
    auto self = shared_from_this();
    post([self, t, phrases = std::move(phrases), first = l.t_first_token]() mutable {
        self->add_phrases(t, std::move(phrases), first);
    });
}

void session::on_llm_done(std::shared_ptr<turn> t, const llm_result &r) {
    std::vector<std::string> rest;
    auto &l = t->llm_side;
    std::vector<tool_call> calls;
    if (l.holding) {
        // The whole reply was held: the calls in it, and the text around them as phrases.
        parsed_reply p = parse_tool_calls(l.held, t->tools);
        calls = std::move(p.calls);
        rest = l.chunker.push(calls.empty() ? l.held : p.content);
        for (tool_call &c : calls)
            c.id = "call_" + random_hex(12);
    }
    if (std::string p = l.chunker.flush(); !p.empty()) rest.push_back(std::move(p));
    auto self = shared_from_this();
    post([self, t, r, rest = std::move(rest), first = t->llm_side.t_first_token,
          calls = std::move(calls)]() mutable {
        if (t->finished()) return;
        if (!calls.empty()) self->out_->on_event(tool_calls_event{t->id, std::move(calls)});
        t->llm = r;
        if (r.stop_reason == LLM_STOP_ERROR) self->error("llm_failed", r.error);
        t->llm_done = true;
        self->add_phrases(t, std::move(rest), first);
    });
}

void session::add_phrases(std::shared_ptr<turn> t, std::vector<std::string> phrases,
                          mono_time t_first_token) {
    if (t->finished()) return;
    if (t->t_first_token == mono_time{}) t->t_first_token = t_first_token;
    for (std::string &p : phrases)
        t->pending.push_back(std::move(p));
    pump(t);
}

void session::pump(std::shared_ptr<turn> t) {
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
            synthesize(t, std::move(text));
        } else {
            emit_chunk(t, std::move(text), {}, nullptr);
        }
    }
    if (!t->tts_busy && t->pending.empty() && t->llm_done) finish_turn(t);
}

// The phrase's speech is made on the shared TTS worker, which serves the earliest need first
// across sessions: when the audio already sent for this reply has played (now, for its first
// phrase).
void session::synthesize(std::shared_ptr<turn> t, std::string text) {
    auto self = shared_from_this();
    mono_time needed = t->playout.audio_end(mono_now());
    eng_.tts_worker->post_by(needed, [self, t, text = std::move(text), params = tts_params_,
                                      out_rate = cfg_.audio_out_rate]() mutable {
        if (t->cancel->load()) return;
        speech s;
        s.text = std::move(text);
        mono_time t_synth = mono_now();
        try {
            s.audio = self->eng_.tts->synthesize(s.text, params);
            s.pcm = s.audio.sample_rate == out_rate
                        ? std::move(s.audio.pcm)
                        : resample(s.audio.pcm, s.audio.sample_rate, out_rate);
            if (s.pcm.empty()) s.error = "TTS produced no audio";
        } catch (const std::exception &e) {
            s.error = e.what();
        }
        s.ms = ms_between(t_synth, mono_now());
        self->post([self, t, s = std::move(s)]() mutable { self->speech_made(t, std::move(s)); });
    });
}

void session::speech_made(std::shared_ptr<turn> t, speech s) {
    if (t->finished() || t->cancel->load()) return;
    t->tts_ms += s.ms;
    if (t->tts_calls++ == 0) t->tts_first_ms = s.ms;
    if (!s.error.empty()) {
        // No audio for this phrase; the rest of the turn goes out as text.
        t->want_audio = false;
        error("tts_failed", "chunk_id_" + std::to_string(t->next_chunk) + ": " + s.error +
                                "; continuing with text only");
        emit_chunk(t, std::move(s.text), {}, nullptr);
    } else {
        emit_chunk(t, std::move(s.text), std::move(s.pcm), &s.audio);
    }
    t->tts_busy = false;
    pump(t);
}

void session::emit_chunk(std::shared_ptr<turn> t, std::string text, std::vector<int16_t> pcm,
                         const tts_result *speech) {
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
    emit(t, std::move(c), chunk);
}

void session::emit(std::shared_ptr<turn> t, reply_chunk_event c, int chunk) {
    if (t->held()) {
        t->held_out.emplace_back(std::move(c), chunk);
        return;
    }
    mono_time now = mono_now();
    if (t->t_first_chunk == mono_time{}) t->t_first_chunk = now;
    if (c.has_audio) {
        if (t->t_first_audio == mono_time{}) t->t_first_audio = now;
        if (chunk >= 0 && size_t(chunk) < t->playout.chunks().size()) {
            // The client plays its audio queue without gaps: this chunk starts when the audio
            // before it ends, or now.
            if (!speaking_) clock_.stop(now);
            t->playout.set_play_start(
                size_t(chunk), clock_.schedule(t->playout.chunks()[size_t(chunk)].audio_ms, now));
            speaking_ = t;
            if (aec_) {
                // The far end of the echo canceller: this audio as the client's speaker plays it.
                aec_->far_end(resample(c.pcm, cfg_.audio_out_rate, ASR_SAMPLE_RATE),
                              near_received_.load() - near_processed_.load());
            }
        }
    }
    out_->on_event(std::move(c));
}

void session::release_turn(std::shared_ptr<turn> t, const std::string &final_text) {
    if (t->state == REPLY_STATE_DONE) return; // cancelled meanwhile
    bool generated = t->state == REPLY_STATE_HELD_DONE;
    t->state = REPLY_STATE_LIVE;
    t->holding = false; // then the pause (see on_piece)
    t->pause->store(false);
    t->t_transcript = mono_now();
    out_->on_event(transcript_event{final_text, true, t->id});
    out_->on_event(reply_started_event{t->id, t->tag, t->out_of_band});
    for (auto &[chunk, index] : t->held_out)
        emit(t, std::move(chunk), index);
    t->held_out.clear();
    if (generated) finish_turn(t);
    pump(t);
    if (t->state != REPLY_STATE_DONE) save_started(*t);
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

void session::discard_turn(std::shared_ptr<turn> t) {
    t->cancel->store(true);
    t->state = REPLY_STATE_DONE;
    t->held_out.clear();
    if (current_ == t) current_.reset();
    if (next_turn_id_ == t->id + 1) next_turn_id_ = t->id; // the id was never seen
    if (eng_.stats) --eng_.stats->turns;
}

void session::finish_turn(std::shared_ptr<turn> t) {
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
        emit(t, std::move(c), -1);
        t->final_sent = true;
    }
    t->state = REPLY_STATE_DONE;
    record_turn(t, false);
}

void session::cancel_turn(std::shared_ptr<turn> t, bool notify) {
    t->cancel->store(true);
    mono_time now = mono_now();
    if (t->finished()) return;
    t->state = REPLY_STATE_DONE;
    t->playout.cut(now);
    if (notify)
        out_->on_event(interrupted_event{t->id, t->playout.heard_text(), t->playout.heard_ms()});
    if (eng_.stats) ++eng_.stats->interruptions;
    record_turn(t, true);
    if (speaking_ == t) {
        speaking_.reset();
        clock_.stop(now);
    }
    cut_ = t;
}

void session::record_turn(std::shared_ptr<turn> t, bool interrupted) {
    turn_timings tt = turn_timings_of(*t, mono_now(), eng_.stats);
    turn_record rec = turn_record_of(*t, tt, interrupted, t->playout.heard_text());
    std::string sid = id();
    if (current_ == t) current_.reset();
    if (!t->out_of_band) {
        history_.push_back(rec);
        save_turn(rec);
    }
    if (eng_.stats && !interrupted) observe_turn(*eng_.stats, *t, tt);
    if (!interrupted)
        out_->on_event(reply_done_event{t->id, rec.assistant, tt, t->llm.stop_reason});
    log_info("turn %s/%lld: end of speech to first audio %.1f ms (after the end of the turn: "
             "first text %.1f ms, first audio %.1f ms), %d tokens%s",
             sid.c_str(), (long long)t->id, tt.speech_end_to_audio_ms,
             tt.first_text_ms.value_or(-1), tt.first_audio_ms.value_or(-1), t->llm.generated_tokens,
             interrupted ? " (interrupted)" : "");
    check_drained();
}

} // namespace parley
