// The session: lifecycle, its inputs and their dispatch.
#include "pipeline/session.h"
#include "pipeline/session-turn.h"

#include "audio/echo-canceller.h"
#include "audio/resampler.h"
#include "core/actor.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/secret.h"
#include "core/worker.h"
#include "pipeline/session-directory.h"
#include "pipeline/slot-queue.h"
#include "pipeline/turn-record.h"
#include "store/store.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>

namespace parley {

namespace {

bool valid_session_id(const std::string &id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    return true;
}

} // namespace

session::session(const session_engines &engines, const session_config &config,
                 std::shared_ptr<session_sink> out)
    : eng_(engines), cfg_(config), out_(std::move(out)),
      worker_(std::make_unique<actor>(
          eng_.session_pool ? *eng_.session_pool : actor_pool::sessions(), "session")),
      tts_params_(config.tts) {
    if (eng_.stats) {
        ++eng_.stats->sessions_open;
        ++eng_.stats->sessions_total;
    }
}

session::~session() {
    close();
    if (eng_.stats) --eng_.stats->sessions_open;
}

std::string session::id() const {
    std::lock_guard lock(id_m_);
    return id_;
}

void session::post(std::function<void()> task) {
    std::lock_guard lock(door_);
    if (closed_ || drained_ || !worker_) return;
    worker_->post(std::move(task));
}

void session::post_at(mono_time when, std::function<void()> task) {
    std::lock_guard lock(door_);
    if (closed_ || drained_ || !worker_) return;
    worker_->post_by(when, std::move(task));
}

// Control inputs go ahead of the audio queued before them (the earliest deadline).
void session::post_control(std::function<void()> task) {
    std::lock_guard lock(door_);
    if (closed_ || drained_ || !worker_) return;
    worker_->post_by(mono_time{}, std::move(task));
}

void session::error(const std::string &code, const std::string &message) {
    if (eng_.stats) eng_.stats->count_error(code);
    out_->on_event(error_event{code, message});
}

void session::open(const std::string &resume_id) {
    post([this, resume_id] { open_now(resume_id); });
}

void session::open_now(const std::string &resume_id) {
    leave_id();
    bool resumed = false, resume_failed = false;
    std::vector<turn_record> turns;
    std::string id;
    // A session another connection holds is taken over: that one is closed first, so its
    // turns are in the store before they are read here.
    std::shared_ptr<session> prev;
    if (!resume_id.empty() && valid_session_id(resume_id) && eng_.sessions) {
        prev = eng_.sessions->claim(resume_id, shared_from_this());
        if (prev) prev->taken_over();
    }
    holder_ = random_hex(8);
    moved_ = false;
    if (!resume_id.empty() && valid_session_id(resume_id) && eng_.db) {
        std::string err = store_call("resume a session", [&] {
            if (eng_.db->claim_session(resume_id, holder_)) {
                turns = eng_.db->load_turns(resume_id);
                id = resume_id;
                resumed = true;
            }
        });
        if (!err.empty()) {
            error("store_failed", "the stored session cannot be read; started a new one");
            resume_failed = true;
        }
    }
    std::string token, hash;
    if (!resumed && prev && !prev->row_saved_) {
        // Taken over before anything was said: nothing stored, the same (empty) session.
        id = resume_id;
        resumed = true;
        hash = prev->token_hash_;
    }
    // A new session: its id (also a bearer secret: it resumes the conversation) and the token
    // that reads its history, 128 random bits each; only the token's hash is kept.
    if (id.empty()) {
        id = random_hex(16);
        token = random_hex(16);
        hash = secret_hash(token);
    }
    if (!resume_id.empty() && !resumed && !resume_failed)
        error("unknown_session", "no session " + resume_id.substr(0, 64) + "; started a new one");
    if (eng_.sessions) {
        if (id != resume_id && !resume_id.empty()) eng_.sessions->release(resume_id, this);
        eng_.sessions->claim(id, shared_from_this());
    }
    // Its row is written with its first turn.
    token_hash_ = hash;
    row_saved_ = resumed && hash.empty();
    if (eng_.db) db_generation_ = eng_.db->generation();
    {
        std::lock_guard lock(id_m_);
        id_ = id;
    }
    history_ = std::move(turns);
    next_turn_id_ = history_.empty() ? 1 : history_.back().turn_id + 1;
    out_->on_event(ready_event{id, token, cfg_.audio_out_rate, resumed, int64_t(history_.size()),
                               eng_.llm != nullptr, eng_.tts != nullptr});
    take_slot();
    // Typed turns may come before any start: get speech ready with the default voice.
    if (eng_.tts && tts_wanted_ && tts_state_ == TTS_STATE_OFF) {
        tts_state_ = TTS_STATE_PENDING;
        request_tts_check(tts_params_);
    }
}

void session::close() {
    std::lock_guard once(close_m_);
    if (close_done_) return;
    close_done_ = true;
    std::unique_ptr<actor> w, end_pass;
    {
        std::lock_guard lock(door_);
        if (closed_) return;
        closed_ = true;
        w = std::move(worker_);
        end_pass = std::move(end_pass_worker_);
    }
    end_pass.reset(); // its last task may post to the session's actor: refused now
    w.reset();        // waits for the actor's running task and drops the rest
    // No task of the session runs from here on: its state is this thread's.
    if (current_) cancel_turn(current_, false);
    leave_id();
    give_slot_back();
}

void session::take_slot() {
    if (!eng_.llm || slot_ >= 0 || queued_) return;
    if (!eng_.slots) {
        slot_ = eng_.llm->acquire_slot();
        return;
    }
    std::weak_ptr<session> weak = shared_from_this();
    auto granted = [weak](int slot) {
        auto s = weak.lock();
        return s && s->slot_granted(slot);
    };
    auto moved = [weak](size_t position) {
        if (auto s = weak.lock())
            s->post([s, position] {
                if (!s->queued_ || position == s->queue_position_) return;
                s->queue_position_ = position;
                s->out_->on_event(queued_event{position});
            });
    };
    size_t position = 0;
    slot_ = eng_.slots->request(this, granted, moved, &position);
    if (slot_ >= 0) return;
    queued_ = true;
    queue_position_ = position;
    out_->on_event(queued_event{position});
}

// The line gives this session a slot: kept where close() finds it too, then taken on the actor.
bool session::slot_granted(int slot) {
    std::lock_guard lock(door_);
    if (closed_ || !worker_) return false;
    granted_slot_ = slot;
    worker_->post([this] {
        int s = granted_slot_.exchange(-1);
        if (s < 0) return;
        slot_ = s;
        queued_ = false;
        out_->on_event(admitted_event{});
    });
    return true;
}

// At close (the actor gone): the slot to the next in line, or out of the line.
void session::give_slot_back() {
    if (eng_.slots && queued_) eng_.slots->cancel(this);
    if (int s = granted_slot_.exchange(-1); s >= 0 && slot_ < 0) slot_ = s;
    if (slot_ >= 0) {
        if (eng_.slots)
            eng_.slots->release(slot_);
        else if (eng_.llm)
            eng_.llm->release_slot(slot_);
    }
    slot_ = -1;
    queued_ = false;
}

// The session lets its id go (closed, or on to another): its turns saved or said lost.
void session::leave_id() {
    std::string old = id();
    if (old.empty()) return;
    flush_or_drop("left");
    if (eng_.sessions) eng_.sessions->release(old, this);
}

void session::taken_over() {
    error("session_taken", "another connection resumed this session; this one is closed");
    close();
    out_->end("session_taken");
}

void session::reject(const std::string &code, const std::string &message) {
    error(code, message);
}

void session::interrupt(mono_time now) {
    // The reply stops where the client was when it asked; its history keeps what was heard.
    post_control([this, now] { barge_in(now); });
}

void session::start(const session_start &p) {
    if (recording_) {
        // A second start restarts the utterance; the audio so far is dropped.
        log_debug("session %s: start while recording restarts the utterance", id().c_str());
    }
    started_ = true;
    recording_ = true;
    in_rate_ = p.sample_rate;
    post([this, p] { start_now(p); });
}

void session::start_now(const session_start &p) {
    if (!p.session_id.empty() && p.session_id != id()) {
        // Switch this connection to the stored session.
        if (current_) cancel_turn(current_, true);
        open_now(p.session_id);
    }
    start_speech_output(p);
    bool hands_free = p.mode == SESSION_MODE_HANDS_FREE;
    start_echo_canceller(hands_free && (cfg_.echo == ECHO_MODE_ON || (cfg_.echo == ECHO_MODE_AUTO &&
                                                                      p.echo == CLIENT_ECHO_NONE)));
    vad_params vp = cfg_.vad;
    if (p.vad_threshold > 0) {
        vp.threshold = p.vad_threshold;
        vp.neg_threshold = -1; // follows the threshold
    }
    if (p.min_speech_ms >= 0) vp.min_speech_ms = p.min_speech_ms;
    if (p.min_silence_ms >= 0) vp.min_silence_ms = p.min_silence_ms;
    if (p.prefix_pad_ms >= 0) vp.prefix_pad_ms = p.prefix_pad_ms;
    begin_listening(p.sample_rate, hands_free, vp);
}

// The start's voice and rate, checked by the TTS engine (on its worker) when they changed.
void session::start_speech_output(const session_start &p) {
    tts_params params = cfg_.tts;
    if (!p.voice.empty()) params.voice = p.voice;
    if (p.rate_wpm) params.rate_wpm = p.rate_wpm;
    tts_wanted_ = p.tts;
    bool changed = params.voice != tts_params_.voice || params.rate_wpm != tts_params_.rate_wpm;
    tts_params_ = params;
    if (p.tts && eng_.tts && (tts_state_ == TTS_STATE_OFF || changed)) {
        tts_state_ = TTS_STATE_PENDING;
        request_tts_check(params);
    }
    if (p.tts && !eng_.tts)
        error("tts_unavailable", "no TTS engine is configured; replies are text-only");
}

void session::start_echo_canceller(bool wanted) {
    if (!wanted) {
        aec_.reset();
        return;
    }
    try {
        if (!aec_) aec_ = std::make_unique<echo_canceller>();
    } catch (const std::exception &e) {
        error("echo_unavailable", std::string(e.what()) + "; continuing without it");
    }
}

// A new utterance (push-to-talk) or listening (hands-free) begins.
void session::begin_listening(int rate, bool hands_free, const vad_params &vp) {
    try {
        if (eng_.asr && !asr_) asr_ = eng_.asr->open();
        if (asr_) asr_->finish(); // ends the previous utterance (or drops one in progress)
        asr_end_pending_ = false;
        in_resampler_ = std::make_unique<resampler>(rate, ASR_SAMPLE_RATE);
        since_partial_ = 0;
        last_partial_.clear();
        utt_asr_ms_ = 0;
        utt_audio_.clear();
    } catch (const std::exception &e) {
        error("asr_failed", e.what());
    }
    utt_samples_ = 0;
    utterance_cut_ = false;
    if (spec_) {
        discard_turn(spec_);
        spec_.reset();
    }
    utterance_open_ = false;
    barging_ = false;
    if (!hands_free) {
        vad_.reset();
        return;
    }
    try {
        static const std::shared_ptr<vad_model> energy = make_energy_vad();
        std::shared_ptr<const vad_model> model = eng_.vad ? eng_.vad : energy;
        vad_ = std::make_unique<vad_stream>(model, vp);
    } catch (const std::exception &e) {
        vad_.reset();
        error("bad_vad", std::string(e.what()) + "; push to talk instead");
    }
}

// Lazy: the engine initialises on its first check, on the TTS worker, off the network path.
void session::request_tts_check(const tts_params &params) {
    if (!eng_.tts_worker || !eng_.tts) return;
    auto self = shared_from_this();
    uint64_t check = ++tts_checks_; // an earlier check's answer does not count after this one
    eng_.tts_worker->post([self, check, params = tts_params(params)]() mutable {
        mono_time t0 = mono_now();
        if (!self->eng_.tts->knows_voice(params.voice)) {
            // The session goes on with the configured voice.
            std::string asked = params.voice;
            params.voice = self->cfg_.tts.voice;
            self->post([self, asked, voice = params.voice] {
                if (self->tts_params_.voice == asked) self->tts_params_.voice = voice;
            });
            self->error("unknown_voice", self->eng_.tts->name() + " has no voice '" +
                                             asked.substr(0, 64) + "'; speaking with '" +
                                             params.voice + "'");
        }
        std::string err = self->eng_.tts->check(params);
        // The engine loads on its first check (lazily, off the network path): its load time.
        if (metrics *st = self->eng_.stats; st && st->tts_load_ms.load() == 0 && err.empty())
            st->tts_load_ms = ms_between(t0, mono_now());
        if (!err.empty()) self->error("tts_unavailable", err + "; replies are text-only");
        bool ok = err.empty();
        self->post([self, ok, check] {
            if (check == self->tts_checks_) self->tts_checked(ok);
        });
    });
}

void session::tts_checked(bool ok) {
    tts_state_ = ok ? TTS_STATE_OK : TTS_STATE_FAILED;
    if (current_) pump(current_);
}

void session::stop(mono_time t_stop) {
    if (!recording_) {
        error("not_recording", "stop without a start: send start, then audio, then stop");
        return;
    }
    recording_ = false;
    post([this, t_stop] { stop_now(t_stop); });
}

void session::stop_now(mono_time t_stop) {
    if (std::exchange(utterance_cut_, false)) return; // already ended at --max-turn-seconds
    if (!vad_) {
        finish_utterance(t_stop);
        return;
    }
    // Hands-free listening ends: an utterance in progress ends here.
    std::vector<vad_event> events = vad_->finish();
    vad_.reset();
    if (utterance_open_) {
        for (const vad_event &e : events)
            if (e.type == VAD_EVENT_SPEECH_STOPPED)
                out_->on_event(
                    speech_stopped_event{e.ms(), e.decided_sample * 1000.0 / VAD_SAMPLE_RATE});
        end_hands_free_utterance(t_stop, 0);
    }
    in_resampler_.reset();
}

// Input side: a client may send audio ahead of real time (a file, a reconnect's backlog) up to
// AUDIO_BURST_S, and then at most AUDIO_SPEED_MAX times real time; beyond that its frames are
// refused with audio_too_fast (said at most once a second).
bool session::take_audio_credit(double seconds) {
    mono_time now = mono_now();
    if (audio_credit_s_ < 0)
        audio_credit_s_ = AUDIO_BURST_S;
    else
        audio_credit_s_ =
            std::min(AUDIO_BURST_S,
                     audio_credit_s_ + ms_between(audio_credit_at_, now) / 1000 * AUDIO_SPEED_MAX);
    audio_credit_at_ = now;
    if (seconds <= audio_credit_s_) {
        audio_credit_s_ -= seconds;
        return true;
    }
    if (too_fast_said_ == mono_time{} || ms_between(too_fast_said_, now) >= 1000) {
        too_fast_said_ = now;
        error("audio_too_fast", "audio faster than " + std::to_string(int(AUDIO_SPEED_MAX)) +
                                    "x real time after a " + std::to_string(int(AUDIO_BURST_S)) +
                                    " s burst: frames are dropped until it slows down");
    }
    return false;
}

void session::text(std::string text, mono_time t0) {
    post([this, text = std::move(text), t0] { start_turn(text, t0, t0); });
}

void session::audio(std::vector<int16_t> pcm) {
    if (!started_) {
        error("not_started", "audio before start");
        return;
    }
    if (!recording_) {
        error("not_recording", "audio after stop: send start to begin a new utterance");
        return;
    }
    int rate = in_rate_;
    if (!take_audio_credit(double(pcm.size()) / rate)) return;
    near_received_ += int64_t(pcm.size()) * ASR_SAMPLE_RATE / rate;
    post([this, pcm = std::move(pcm), rate]() mutable { feed_audio(std::move(pcm), rate); });
}

} // namespace parley
