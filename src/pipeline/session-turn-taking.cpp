// The session's turn-taking: audio in, resampling, echo cancelling, the VAD, partial
// transcripts, the speculative start and the end of each turn (push-to-talk and hands-free).
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

namespace {

// Server-side echo cancellation: while a reply plays, input below this level (-40 dBFS), or
// below ECHO_GATE_FRACTION of the reply's level, is taken as the canceller's residual echo, not
// as the user barging in.
constexpr double ECHO_GATE_RMS = 328;
constexpr double ECHO_GATE_FRACTION = 1.0 / 16;

} // namespace

// Counts the utterance's audio; past --max-turn-seconds it says so (turn_too_long), and the
// caller ends the turn there.
bool session::turn_too_long(size_t more) {
    utt_samples_ += int64_t(more);
    if (utt_samples_ <= int64_t(cfg_.max_turn_seconds) * ASR_SAMPLE_RATE) return false;
    error("turn_too_long", "a turn is at most " + std::to_string(cfg_.max_turn_seconds) +
                               " s (--max-turn-seconds): it ends here, with what was heard");
    return true;
}

void session::feed_audio(std::vector<int16_t> pcm, int rate) {
    near_processed_ += int64_t(pcm.size()) * ASR_SAMPLE_RATE / rate;
    if (!in_resampler_) return;
    if (vad_) {
        try {
            feed_hands_free(in_resampler_->process(pcm), mono_now());
        } catch (const std::exception &e) {
            error("asr_failed", e.what());
        }
        return;
    }
    if (direct_audio() && !asr_) {
        std::vector<int16_t> s16k = in_resampler_->process(pcm);
        utt_audio_.insert(utt_audio_.end(), s16k.begin(), s16k.end());
        return;
    }
    if (!asr_) return;
    if (turn_too_long(pcm.size() * ASR_SAMPLE_RATE / size_t(rate))) {
        finish_utterance(mono_now()); // the audio after it, up to the stop, is dropped
        utterance_cut_ = true;
        return;
    }
    try {
        std::vector<int16_t> s16k = in_resampler_->process(pcm);
        mono_time t_asr = mono_now();
        asr_->accept(s16k);
        utt_asr_ms_ += ms_between(t_asr, mono_now());
        since_partial_ += s16k.size();
        if (since_partial_ >= size_t(cfg_.partial_interval_ms) * ASR_SAMPLE_RATE / 1000) {
            since_partial_ = 0;
            std::string p = asr_->partial();
            if (!p.empty() && p != last_partial_) {
                last_partial_ = p;
                out_->on_event(transcript_event{p, false, 0});
                if (cfg_.prefill_while_speaking) prefill(p);
            }
        }
    } catch (const std::exception &e) {
        error("asr_failed", e.what());
    }
}

// The echo canceller's pass over a hands-free frame; while a reply plays, a frame quieter than
// the echo gate is taken as the canceller's residual, not the user (gate.quiet).
session::echo_gate session::cancel_echo(std::vector<int16_t> &s16k, mono_time now) {
    echo_gate g;
    if (!aec_) return g;
    s16k = aec_->process(s16k);
    // What AEC3 leaves of the echo is quiet but still sounds like speech, and Silero scores
    // speech at any level: while the reply plays, quiet input is not the user.
    if (s16k.empty() || !reply_active(now)) return g;
    double sum = 0;
    for (int16_t x : s16k)
        sum += double(x) * x;
    // What AEC3 leaves of an echo 6 dB down (10 ms frames, 20 replies): 0.02% of the reply's
    // level at the median, 1% at p99, 4.7% at p99.9, once 27%. A talker over the reply is
    // louder than 1/16 of its level (-24 dB); the rare louder frame of residual is alone, and a
    // barge-in needs --barge-in-ms of speech in a row.
    g.gate = std::max(ECHO_GATE_RMS, ECHO_GATE_FRACTION * aec_->far_level());
    g.level = std::sqrt(sum / double(s16k.size()));
    g.quiet = g.level < g.gate;
    return g;
}

// Audio of the open utterance, to the recogniser (or kept, in direct audio mode).
void session::accept_speech(std::span<const int16_t> pcm) {
    if (!asr_ && direct_audio()) utt_audio_.insert(utt_audio_.end(), pcm.begin(), pcm.end());
    if (!asr_ || pcm.empty()) return;
    // Once a reply has started from the pause's transcript, more silence changes nothing it was
    // made from: the pause's audio waits, and is decoded (before the speech after it) only if
    // the user goes on. At the end of the turn the transcript is the one the reply started
    // from; the recogniser's work in the last 300 ms before the end of the turn (4-6 ms a 20 ms
    // frame at 4 clients) does not compete with the reply's first phrase for the cores.
    if (spec_ && vad_->trailing_silence_ms() > 0) {
        pause_audio_.insert(pause_audio_.end(), pcm.begin(), pcm.end());
        return;
    }
    mono_time t = mono_now();
    if (!pause_audio_.empty()) {
        asr_->accept(pause_audio_);
        since_partial_ += pause_audio_.size();
        pause_audio_.clear();
    }
    asr_->accept(pcm);
    utt_asr_ms_ += ms_between(t, mono_now());
    since_partial_ += pcm.size();
}

namespace {

double vad_ms(int64_t samples) {
    return samples * 1000.0 / VAD_SAMPLE_RATE;
}

} // namespace

// The detector decided the turn is over at this frame.
void session::end_turn_at(const vad_event &e, mono_time now) {
    mono_time t_event = mono_now();
    {
        // The end of the turn's messages (speech_stopped, the final transcript, a held reply's
        // first phrase and its audio) leave together, in the 0.1-0.5 ms it takes to make them:
        // woken for the first of them, the writer thread could take this core, and the rest
        // wait for the next tick (4 ms) on a busy machine. A recogniser with an
        // end-of-utterance pass takes a while: the decision goes out at once, the transcript
        // and reply when the pass is done.
        bool end_pass = asr_ && (cfg_.asr_final_pass || !asr_->partial_is_final());
        if (end_pass) out_->on_event(speech_stopped_event{e.ms(), vad_ms(e.decided_sample)});
        end_of_turn_burst burst(*this);
        if (!end_pass) out_->on_event(speech_stopped_event{e.ms(), vad_ms(e.decided_sample)});
        end_hands_free_utterance(now, vad_ms(vad_->position() - e.sample));
    }
    log_debug("vad: end of turn %.2f ms into its frame's processing; the turn went on %.2f ms "
              "after",
              ms_between(now, t_event), ms_between(t_event, mono_now()));
}

// Barge-in: speech over a reply that lasts past a click or a cough stops it; a sound that cut
// the reply and ended before it was speech lets it go on (a false start).
void session::check_barge_in(mono_time now, const echo_gate &g) {
    echo_canceller *aec = aec_.get();
    // Over the echo of a reply the canceller is still taking away, speech must last twice as
    // long: what AEC3 leaves while it re-converges comes in short bursts.
    int need_ms = aec && aec->far_level() > ECHO_GATE_RMS ? 2 * cfg_.barge_in_ms : cfg_.barge_in_ms;
    bool speech = vad_->in_speech() || vad_->pending_speech_ms() >= need_ms;
    if (!speech && !vad_->in_speech()) barging_ = false;
    if (speech && !barging_ && cfg_.interrupt_on_speech && reply_active(now)) {
        barging_ = true;
        if (aec)
            log_debug("session %s: speech over the reply: after the echo canceller RMS %.0f "
                      "(gate %.0f, the reply's level %.0f; -1: no reply playing), %d ms needed",
                      id().c_str(), g.level, g.gate, aec->far_level(), need_ms);
        cut_by_speech_ = barge_in(now);
    }
    // (Not while the recogniser's end pass is still at work: that utterance was speech.)
    if (cut_by_speech_ && !utterance_open_ && end_passes_pending_ == 0 && !vad_->in_speech() &&
        vad_->pending_speech_ms() == 0) {
        std::shared_ptr<turn> t = std::move(cut_by_speech_);
        cut_by_speech_.reset();
        if (cfg_.resume_after_false_start) resume_turn(t);
    }
}

// A partial transcript every partial_interval_ms of speech (and the prefill behind it).
void session::send_partial() {
    if (since_partial_ < size_t(cfg_.partial_interval_ms) * ASR_SAMPLE_RATE / 1000) return;
    since_partial_ = 0;
    mono_time t = mono_now();
    std::string p = asr_->partial();
    utt_asr_ms_ += ms_between(t, mono_now());
    if (p.empty() || p == last_partial_) return;
    last_partial_ = p;
    out_->on_event(transcript_event{p, false, 0});
    if (cfg_.prefill_while_speaking && !spec_) prefill(p);
}

void session::feed_hands_free(std::vector<int16_t> s16k, mono_time now) {
    echo_gate gate = cancel_echo(s16k, now);
    std::vector<int16_t> quiet;
    if (gate.quiet) quiet.assign(s16k.size(), 0);
    bool fed = false;
    for (vad_event &e : vad_->process(quiet.empty() ? s16k : quiet)) {
        if (e.type == VAD_EVENT_SPEECH_STARTED) {
            t_onset_ = now - std::chrono::microseconds(
                                 int64_t(vad_ms(vad_->position() - e.sample) * 1000));
            begin_utterance();
            out_->on_event(speech_started_event{e.ms()});
            accept_speech(e.audio); // the prefix padding and the speech so far, this frame too
            fed = true;
        } else if (utterance_open_) {
            // The frame that ends the turn ends a silence the recogniser has already heard
            // `min_silence_ms` of: decoding it (4-6 ms of PocketSphinx a 20 ms frame here)
            // would only put off the end of the turn. Direct audio keeps it.
            if (!fed && !asr_) accept_speech(s16k);
            fed = true;
            end_turn_at(e, now);
        }
    }
    if (utterance_open_ && !fed) accept_speech(s16k);
    if (utterance_open_ && turn_too_long(s16k.size())) {
        double at = vad_ms(vad_->position());
        out_->on_event(speech_stopped_event{at, at});
        end_hands_free_utterance(now, 0);
        // The speech that goes on is the same speech, not a barge-in on the reply to it; after
        // a pause, speech is a new turn again.
        barging_ = true;
    }
    check_barge_in(now, gate);
    if (!utterance_open_ || !asr_) return;
    send_partial();
    maybe_speculate(now);
}

void session::begin_utterance() {
    if (spec_) {
        discard_turn(spec_);
        spec_.reset();
    }
    if (eng_.asr && !asr_) asr_ = eng_.asr->open();
    if (asr_) asr_->finish(); // a fresh utterance
    pause_audio_.clear();
    asr_end_pending_ = false;
    utterance_open_ = true;
    since_partial_ = 0;
    last_partial_.clear();
    utt_asr_ms_ = 0;
    utt_audio_.clear();
    utt_samples_ = 0;
}

// In a pause that may be the end of the turn, start the reply from the partial transcript; it
// is held until the turn really ends with the same words, and thrown away if the user goes on.
// A recogniser with an end pass (the transcript is not the partial) starts that pass in the
// pause instead, and the reply starts from its result if the pause lasts.
void session::maybe_speculate(mono_time now) {
    if (cfg_.speculative_silence_ms <= 0 || !eng_.llm || !asr_ || !vad_->in_speech() ||
        !cfg_.auto_respond)
        return;
    int silence = vad_->trailing_silence_ms();
    if (silence == 0) { // the user went on
        if (spec_) discard_turn(spec_);
        spec_.reset();
        if (early_end_) early_end_->stale = true;
        early_end_.reset();
        return;
    }
    if (spec_ || early_end_ || silence < cfg_.speculative_silence_ms || cfg_.asr_final_pass) return;
    if (!asr_->partial_is_final()) {
        start_early_end_pass();
        return;
    }
    mono_time t = mono_now();
    std::string guess = asr_->partial();
    utt_asr_ms_ += ms_between(t, mono_now());
    if (guess.empty()) return;
    spec_ = start_turn(guess, now, mono_time{}, true);
    if (spec_) spec_->speculative = true;
}

void session::post_end_pass(std::function<void()> task) {
    std::lock_guard lock(door_);
    if (closed_) return;
    if (!end_pass_worker_)
        end_pass_worker_ = std::make_unique<actor>(
            eng_.end_pass_pool ? *eng_.end_pass_pool : actor_pool::end_passes(), "asr-end");
    end_pass_worker_->post(std::move(task));
}

void session::start_early_end_pass() {
    std::function<std::string()> job;
    try {
        job = asr_->end_pass_so_far();
    } catch (const std::exception &e) {
        log_debug("asr: no early end pass (%s)", e.what());
    }
    if (!job) return;
    auto early = std::make_shared<early_end_pass>();
    early_end_ = early;
    auto self = shared_from_this();
    post_end_pass([self, early, job = std::move(job)] {
        mono_time t = mono_now();
        try {
            early->text = job();
        } catch (const std::exception &e) {
            early->error = e.what();
        }
        early->ms = ms_between(t, mono_now());
        early->done = true;
        self->post([self, early] {
            // Still the same pause: the reply starts from what the transcript will be if the
            // turn ends here; it is held until then.
            if (early != self->early_end_ || early->stale || self->spec_ ||
                !self->utterance_open_ || !early->error.empty() || early->text.empty())
                return;
            self->spec_ = self->start_turn(early->text, mono_now(), mono_time{}, true);
            if (self->spec_) self->spec_->speculative = true;
        });
    });
}

void session::end_hands_free_utterance(mono_time t_decided, double speech_end_ms) {
    utterance_open_ = false;
    barging_ = false;
    if (!asr_ && direct_audio()) {
        std::vector<int16_t> audio = std::move(utt_audio_);
        utt_audio_.clear();
        auto t = start_turn("", t_decided, mono_time{}, false, std::move(audio));
        if (t) t->speech_end_ms = speech_end_ms;
        return;
    }
    std::shared_ptr<turn> spec = std::move(spec_);
    spec_.reset();
    std::shared_ptr<early_end_pass> early = std::move(early_end_);
    early_end_.reset();
    if (early && early->stale) early.reset();
    std::string text;
    std::function<std::string()> end_pass;
    try {
        mono_time t = mono_now();
        if (asr_ && !cfg_.asr_final_pass && asr_->partial_is_final()) {
            text = asr_->partial();
            asr_end_pending_ = true; // the end pass runs when the next utterance begins
        } else if (asr_ && early) {
            asr_->drop(); // the pass on the audio up to the pause is the transcript
            end_pass = [early] {
                if (!early->error.empty()) throw asr_error(early->error);
                return early->text;
            };
        } else if (asr_) {
            end_pass = asr_->finish_deferred();
        }
        utt_asr_ms_ += ms_between(t, mono_now());
    } catch (const std::exception &e) {
        if (spec) discard_turn(spec);
        error("asr_failed", e.what());
        return;
    }
    if (early && early->done && early->error.empty()) {
        utt_asr_ms_ += early->ms;
        utterance_transcript(early->text, std::move(spec), t_decided, speech_end_ms);
        return;
    }
    if (!end_pass) {
        utterance_transcript(text, std::move(spec), t_decided, speech_end_ms);
        return;
    }
    run_end_pass(std::move(end_pass), std::move(spec), t_decided, speech_end_ms, early);
}

// The recogniser's end pass on the end-pass worker (behind an early pass still at work, whose
// result it may be); its transcript comes back to the session's worker.
void session::run_end_pass(std::function<std::string()> end_pass, std::shared_ptr<turn> spec,
                           mono_time t_decided, double speech_end_ms,
                           std::shared_ptr<early_end_pass> early) {
    ++end_passes_pending_;
    auto self = shared_from_this();
    post_end_pass([self, end_pass = std::move(end_pass), spec, t_decided, speech_end_ms, early] {
        mono_time t = mono_now();
        std::string text, err;
        try {
            text = end_pass();
        } catch (const std::exception &e) {
            err = e.what();
        }
        // An early pass's own time is the recognition work too (it ran before this task).
        double ms = ms_between(t, mono_now()) + (early ? early->ms : 0);
        self->post([self, text, err, spec, t_decided, speech_end_ms, ms] {
            --self->end_passes_pending_;
            if (!err.empty()) {
                if (spec) self->discard_turn(spec);
                self->error("asr_failed", err);
                self->run_waiting_response();
                return;
            }
            self->utt_asr_ms_ += ms;
            self->utterance_transcript(text, spec, t_decided, speech_end_ms);
        });
    });
}

// The utterance's final transcript: a reply started before it (in a pause, or at stop) goes
// on if it had the same words; otherwise a new turn starts (or none, for a noise).
void session::utterance_transcript(const std::string &text, std::shared_ptr<turn> spec,
                                   mono_time t_decided, double speech_end_ms) {
    if (spec) {
        if (spec->user == text) {
            spec->t0 = t_decided; // times count from the end of the turn, as for any turn
            spec->asr_ms = utt_asr_ms_;
            spec->speech_end_ms = speech_end_ms;
            release_turn(spec, text);
            return;
        }
        discard_turn(spec);
    }
    out_->on_event(transcript_event{text, true, 0});
    if (text.empty()) {
        // A noise, or nothing the recogniser knew: no turn, and a reply it cut goes on.
        if (std::shared_ptr<turn> cut = std::move(cut_by_speech_)) {
            cut_by_speech_.reset();
            if (cfg_.resume_after_false_start) resume_turn(cut);
        }
        run_waiting_response();
        return;
    }
    if (!cfg_.auto_respond) {
        // The turn joins the conversation; its reply waits for respond().
        cut_by_speech_.reset();
        hold_user_text(text);
        run_waiting_response();
        return;
    }
    auto t = start_turn(text, t_decided, mono_now());
    if (t) t->speech_end_ms = speech_end_ms;
}

void session::run_waiting_response() {
    if (!waiting_response_ || end_passes_pending_ > 0) return;
    auto [r, t0] = std::move(*waiting_response_);
    waiting_response_.reset();
    respond_now(r, t0);
}

// Direct audio: the utterance goes to the model, which writes its transcript.
void session::finish_direct_audio(mono_time t_stop) {
    std::vector<int16_t> rest = in_resampler_->flush();
    utt_audio_.insert(utt_audio_.end(), rest.begin(), rest.end());
    in_resampler_.reset();
    std::vector<int16_t> audio = std::move(utt_audio_);
    utt_audio_.clear();
    if (audio.size() < ASR_SAMPLE_RATE / 10) { // under 100 ms: nothing to hear
        out_->on_event(transcript_event{"", true, 0});
        return;
    }
    start_turn("", t_stop, mono_time{}, false, std::move(audio));
}

// Push-to-talk: the stop ends the utterance.
void session::finish_utterance(mono_time t_stop) {
    if (direct_audio() && !asr_ && in_resampler_) return finish_direct_audio(t_stop);
    if (!asr_ || !in_resampler_) {
        out_->on_event(transcript_event{"", true, 0});
        return;
    }
    std::shared_ptr<turn> spec;
    std::function<std::string()> end_pass;
    mono_time t_begin = mono_now();
    try {
        asr_->accept(in_resampler_->flush());
        in_resampler_.reset();
        std::string guess = asr_->partial();
        utt_asr_ms_ += ms_between(t_begin, mono_now());
        if (!cfg_.asr_final_pass && asr_->partial_is_final()) {
            // Every frame is already decoded: the first pass's hypothesis is the transcript.
            // The engine's end-of-utterance pass would compete with the reply for the CPU; it
            // runs when the next utterance starts (it only resets the decoder).
            asr_end_pending_ = true;
            log_debug("asr: transcript %.1f ms after stop (%.1f ms queued)",
                      ms_between(t_stop, mono_now()), ms_between(t_stop, t_begin));
            utterance_transcript(guess, nullptr, t_stop, -1);
            return;
        }
        // With the end pass: it costs tens of ms, and its result is almost always the first
        // pass's, so the reply starts from that now and its output is held until the final
        // transcript confirms it (or is thrown away when it differs). The pass runs on the
        // end-pass actor, so the session's actor takes the reply's phrases meanwhile.
        if (!guess.empty() && eng_.llm && cfg_.auto_respond)
            spec = start_turn(guess, t_stop, mono_time{}, true);
        mono_time t = mono_now();
        end_pass = asr_->finish_deferred();
        utt_asr_ms_ += ms_between(t, mono_now());
    } catch (const std::exception &e) {
        if (spec) discard_turn(spec);
        error("asr_failed", e.what());
        return;
    }
    run_end_pass(std::move(end_pass), std::move(spec), t_stop, -1, nullptr);
}

} // namespace parley
