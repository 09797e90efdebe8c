#include "pipeline/session.h"

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

namespace {

std::string new_session_id() {
    static std::mutex m;
    static std::mt19937_64 rng{std::random_device{}()};
    std::lock_guard lock(m);
    char buf[33];
    snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)rng(),
             (unsigned long long)rng());
    return buf;
}

// Server-side echo cancellation: while a reply plays, input below this level (-40 dBFS), or
// below ECHO_GATE_FRACTION of the reply's level, is taken as the canceller's residual echo, not
// as the user barging in.
constexpr double ECHO_GATE_RMS = 328;
constexpr double ECHO_GATE_FRACTION = 1.0 / 16;

bool valid_session_id(const std::string &id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    return true;
}

} // namespace

// One reply: the LLM's phrases on their way out, in order, and the turn's account.
struct session::turn : turn_account {
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    // Set while a held turn has its first phrase and waits for the end of the user's turn.
    std::shared_ptr<std::atomic<bool>> pause = std::make_shared<std::atomic<bool>>(false);
    // Until the first phrase is out (llm_request::urgent).
    std::shared_ptr<std::atomic<bool>> urgent = std::make_shared<std::atomic<bool>>(true);
    bool want_audio = false;

    std::mutex m;
    phrase_chunker chunker;
    std::deque<std::string> pending; // phrases not yet sent
    bool tts_busy = false;           // a phrase's audio is being made
    bool llm_done = false;
    bool final_sent = false;
    bool finished = false;
    int next_chunk = 0;
    std::string sent_text; // text of the chunks sent so far
    // A speculative turn (started from the partial transcript at stop) holds its output until
    // the final transcript confirms it.
    bool held = false;
    bool llm_done_pending_finish = false;
    std::vector<std::pair<reply_chunk_event, int>> held_out; // with their chunks' indexes
    reply_playout playout; // the chunks sent, where the client plays them, what was heard
};

session::session(const session_engines &engines, const session_config &config,
                 std::shared_ptr<session_sink> out)
    : eng_(engines), cfg_(config), out_(std::move(out)), tts_params_(config.tts),
      worker_(std::make_unique<actor>(
          eng_.session_pool ? *eng_.session_pool : actor_pool::sessions(), "session")) {
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
    std::lock_guard lock(m_);
    return id_;
}

void session::post(std::function<void()> task) {
    std::lock_guard lock(m_);
    if (closed_ || !worker_) return;
    worker_->post(std::move(task));
}

void session::error(const std::string &code, const std::string &message) {
    if (eng_.stats) eng_.stats->count_error(code);
    out_->on_event(error_event{code, message});
}

void session::open(const std::string &resume_id) {
    bool resumed = false, resume_failed = false;
    std::vector<turn_record> turns;
    std::string id;
    if (!resume_id.empty() && valid_session_id(resume_id) && eng_.db) {
        std::string err = store_call("resume a session", [&] {
            if (eng_.db->session_exists(resume_id)) {
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
    if (id.empty()) id = new_session_id();
    if (!resume_id.empty() && !resumed && !resume_failed)
        error("unknown_session", "no session " + resume_id.substr(0, 64) + "; started a new one");
    if (!resumed && eng_.db) {
        if (!store_call("create a session", [&] { eng_.db->create_session(id); }).empty())
            error("store_failed", "this conversation cannot be saved; it goes on unsaved");
    }
    int64_t n;
    {
        std::lock_guard lock(m_);
        id_ = id;
        history_ = std::move(turns);
        next_turn_id_ = history_.empty() ? 1 : history_.back().turn_id + 1;
        n = int64_t(history_.size());
        if (eng_.llm && slot_ < 0) slot_ = eng_.llm->acquire_slot();
    }
    out_->on_event(ready_event{id, cfg_.audio_out_rate, resumed, n, eng_.llm != nullptr,
                               eng_.tts != nullptr});
    // Typed turns may come before any start: get speech ready with the default voice.
    bool check = false;
    tts_params params;
    {
        std::lock_guard lock(m_);
        if (eng_.tts && tts_wanted_ && tts_state_ == TTS_STATE_OFF) {
            tts_state_ = TTS_STATE_PENDING;
            check = true;
            params = tts_params_;
        }
    }
    if (check) request_tts_check(params);
}

void session::close() {
    std::shared_ptr<turn> t;
    std::unique_ptr<actor> w;
    int slot;
    {
        std::lock_guard lock(m_);
        if (closed_) return;
        closed_ = true;
        t = current_;
        w = std::move(worker_);
        slot = slot_;
        slot_ = -1;
    }
    if (t) cancel_turn(t, false);
    std::unique_ptr<actor> end_pass;
    {
        std::lock_guard lock(m_);
        end_pass = std::move(end_pass_worker_);
    }
    end_pass.reset(); // its last task may post to the session worker, which is closed now
    w.reset();        // joins the session worker
    if (eng_.llm && slot >= 0) eng_.llm->release_slot(slot);
}

void session::reject(const std::string &code, const std::string &message) {
    error(code, message);
}

void session::interrupt(mono_time now) {
    barge_in(now); // the reply stops; its history keeps what was heard
}

void session::start(const session_start &p) {
    bool resume = false;
    {
        std::lock_guard lock(m_);
        if (recording_) {
            // A second start restarts the utterance; the audio so far is dropped.
            log_debug("session %s: start while recording restarts the utterance", id_.c_str());
        }
        resume = !p.session_id.empty() && p.session_id != id_;
    }
    if (resume) {
        // Switch this connection to the stored session.
        std::shared_ptr<turn> t;
        {
            std::lock_guard lock(m_);
            t = current_;
        }
        if (t) cancel_turn(t, true);
        open(p.session_id);
    }
    tts_params params = cfg_.tts;
    if (!p.voice.empty()) params.voice = p.voice;
    if (p.rate_wpm) params.rate_wpm = p.rate_wpm;
    bool check_tts = false;
    {
        std::lock_guard lock(m_);
        started_ = true;
        recording_ = true;
        in_rate_ = p.sample_rate;
        tts_wanted_ = p.tts;
        bool changed = params.voice != tts_params_.voice || params.rate_wpm != tts_params_.rate_wpm;
        tts_params_ = params;
        if (p.tts && eng_.tts && (tts_state_ == TTS_STATE_OFF || changed)) {
            tts_state_ = TTS_STATE_PENDING;
            check_tts = true;
        }
    }
    if (check_tts) request_tts_check(params);
    if (p.tts && !eng_.tts)
        error("tts_unavailable", "no TTS engine is configured; replies are text-only");
    int rate = p.sample_rate;
    bool hands_free = p.mode == SESSION_MODE_HANDS_FREE;
    vad_params vp = cfg_.vad;
    if (p.vad_threshold > 0) {
        vp.threshold = p.vad_threshold;
        vp.neg_threshold = -1; // follows the threshold
    }
    if (p.min_speech_ms >= 0) vp.min_speech_ms = p.min_speech_ms;
    if (p.min_silence_ms >= 0) vp.min_silence_ms = p.min_silence_ms;
    if (p.prefix_pad_ms >= 0) vp.prefix_pad_ms = p.prefix_pad_ms;
    bool want_aec =
        hands_free && (cfg_.echo == ECHO_MODE_ON ||
                       (cfg_.echo == ECHO_MODE_AUTO && p.echo == CLIENT_ECHO_NONE));
    {
        std::lock_guard lock(m_);
        hands_free_ = hands_free;
        if (!want_aec) aec_.reset();
    }
    if (want_aec) {
        try {
            auto aec = std::make_shared<echo_canceller>();
            std::lock_guard lock(m_);
            if (!aec_) aec_ = std::move(aec);
        } catch (const std::exception &e) {
            error("echo_unavailable", std::string(e.what()) + "; continuing without it");
        }
    }
    post([this, rate, hands_free, vp] {
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
    });
}

void session::request_tts_check(const tts_params &params) {
    if (!eng_.tts_worker || !eng_.tts) return;
    // Lazy: the engine initialises on its first check, on the TTS worker, off the network path.
    auto self = shared_from_this();
    eng_.tts_worker->post([self, params = tts_params(params)]() mutable {
        mono_time t0 = mono_now();
        if (!self->eng_.tts->knows_voice(params.voice)) {
            // The session goes on with the configured voice.
            std::string asked = params.voice;
            params.voice = self->cfg_.tts.voice;
            {
                std::lock_guard lock(self->m_);
                if (self->tts_params_.voice == asked) self->tts_params_.voice = params.voice;
            }
            self->error("unknown_voice", self->eng_.tts->name() + " has no voice '" +
                                             asked.substr(0, 64) + "'; speaking with '" +
                                             params.voice + "'");
        }
        std::string err = self->eng_.tts->check(params);
        // The engine loads on its first check (lazily, off the network path): its load time.
        if (metrics *st = self->eng_.stats; st && st->tts_load_ms.load() == 0 && err.empty())
            st->tts_load_ms = ms_between(t0, mono_now());
        if (!err.empty()) self->error("tts_unavailable", err + "; replies are text-only");
        self->tts_checked(err.empty());
    });
}

void session::tts_checked(bool ok) {
    tts_state_ = ok ? TTS_STATE_OK : TTS_STATE_FAILED;
    std::shared_ptr<turn> t;
    {
        std::lock_guard lock(m_);
        t = current_;
    }
    if (t) pump(t);
}

void session::stop(mono_time t_stop) {
    bool was_recording;
    {
        std::lock_guard lock(m_);
        was_recording = recording_;
        recording_ = false;
    }
    if (!was_recording) {
        error("not_recording", "stop without a start: send start, then audio, then stop");
        return;
    }
    post([this, t_stop] {
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
                    out_->on_event(speech_stopped_event{
                        e.ms(), e.decided_sample * 1000.0 / VAD_SAMPLE_RATE});
            end_hands_free_utterance(t_stop, 0);
        }
        in_resampler_.reset();
    });
}

void session::text(std::string text, mono_time t0) {
    post([this, text = std::move(text), t0] { start_turn(text, t0, t0); });
}

void session::audio(std::vector<int16_t> pcm) {
    bool started, recording;
    {
        std::lock_guard lock(m_);
        started = started_;
        recording = recording_;
    }
    if (!started) {
        error("not_started",
              "audio before start: send {\"type\":\"start\",\"sample_rate\":...} first");
        return;
    }
    if (!recording) {
        error("not_recording", "audio after stop: send start to begin a new utterance");
        return;
    }
    int rate;
    {
        std::lock_guard lock(m_);
        rate = in_rate_;
    }
    near_received_ += int64_t(pcm.size()) * ASR_SAMPLE_RATE / rate;
    post([this, pcm = std::move(pcm)]() mutable { feed_audio(std::move(pcm)); });
}

void session::feed_audio(std::vector<int16_t> pcm) {
    {
        std::lock_guard lock(m_);
        near_processed_ += int64_t(pcm.size()) * ASR_SAMPLE_RATE / in_rate_;
    }
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

void session::feed_hands_free(std::vector<int16_t> s16k, mono_time now) {
    std::shared_ptr<echo_canceller> aec;
    {
        std::lock_guard lock(m_);
        aec = aec_;
    }
    std::vector<int16_t> quiet;
    double level = -1, gate = 0; // after the canceller, and its gate (debug log at a barge-in)
    if (aec) {
        s16k = aec->process(s16k);
        // What AEC3 leaves of the echo is quiet but still sounds like speech, and Silero scores
        // speech at any level: while the reply plays, quiet input is not the user.
        if (!s16k.empty() && reply_active(now)) {
            double sum = 0;
            for (int16_t x : s16k)
                sum += double(x) * x;
            // What AEC3 leaves of an echo 6 dB down (10 ms frames, 20 replies): 0.02% of the
            // reply's level at the median, 1% at p99, 4.7% at p99.9, once 27%. A talker over
            // the reply is louder than 1/16 of its level (-24 dB); the rare louder frame of
            // residual is alone, and a barge-in needs --barge-in-ms of speech in a row.
            gate = std::max(ECHO_GATE_RMS, ECHO_GATE_FRACTION * aec->far_level());
            level = std::sqrt(sum / double(s16k.size()));
            if (level < gate) quiet.assign(s16k.size(), 0);
        }
    }
    auto accept = [this](std::span<const int16_t> pcm) {
        if (!asr_ && direct_audio()) utt_audio_.insert(utt_audio_.end(), pcm.begin(), pcm.end());
        if (!asr_ || pcm.empty()) return;
        // Once a reply has started from the pause's transcript, more silence changes nothing
        // it was made from: the pause's audio waits, and is decoded (before the speech after
        // it) only if the user goes on. At the end of the turn the transcript is the one the
        // reply started from; the recogniser's work in the last 300 ms before the end of the
        // turn (4-6 ms a 20 ms frame at 4 clients) does not compete with the reply's first
        // phrase for the cores.
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
    };
    auto ms_of = [](int64_t samples) { return samples * 1000.0 / VAD_SAMPLE_RATE; };
    bool fed = false;
    for (vad_event &e : vad_->process(quiet.empty() ? s16k : quiet)) {
        if (e.type == VAD_EVENT_SPEECH_STARTED) {
            t_onset_ =
                now - std::chrono::microseconds(int64_t(ms_of(vad_->position() - e.sample) * 1000));
            begin_utterance();
            out_->on_event(speech_started_event{e.ms()});
            accept(e.audio); // the prefix padding and the speech so far, this frame included
            fed = true;
        } else if (utterance_open_) {
            // The frame that ends the turn ends a silence the recogniser has already heard
            // `min_silence_ms` of: decoding it (4-6 ms of PocketSphinx a 20 ms frame here)
            // would only put off the end of the turn. Direct audio keeps it.
            if (!fed && !asr_) accept(s16k);
            fed = true;
            mono_time t_event = mono_now();
            {
                // The end of the turn's messages (speech_stopped, the final transcript, a held
                // reply's first phrase and its audio) leave together, in the 0.1-0.5 ms it
                // takes to make them: woken for the first of them, the writer thread could take
                // this core, and the rest wait for the next tick (4 ms) on a busy machine.
                // A recogniser with an end-of-utterance pass takes a while: the decision goes
                // out at once, the transcript and reply when the pass is done.
                bool end_pass = asr_ && (cfg_.asr_final_pass || !asr_->partial_is_final());
                if (end_pass)
                    out_->on_event(speech_stopped_event{e.ms(), ms_of(e.decided_sample)});
                end_of_turn_burst burst(*this);
                if (!end_pass)
                    out_->on_event(speech_stopped_event{e.ms(), ms_of(e.decided_sample)});
                end_hands_free_utterance(now, ms_of(vad_->position() - e.sample));
            }
            log_debug("vad: end of turn %.2f ms into its frame's processing; the turn went on "
                      "%.2f ms after",
                      ms_between(now, t_event), ms_between(t_event, mono_now()));
        }
    }
    if (utterance_open_ && !fed) accept(s16k);
    // Barge-in: speech over a reply that lasts past a click or a cough stops it. Over the echo
    // of a reply the canceller is still taking away, it must last twice as long: what AEC3
    // leaves while it re-converges comes in short bursts.
    int need_ms = aec && aec->far_level() > ECHO_GATE_RMS ? 2 * cfg_.barge_in_ms : cfg_.barge_in_ms;
    bool speech = vad_->in_speech() || vad_->pending_speech_ms() >= need_ms;
    if (!speech && !vad_->in_speech()) barging_ = false;
    if (speech && !barging_ && reply_active(now)) {
        barging_ = true;
        if (aec)
            log_debug("session %s: speech over the reply: after the echo canceller RMS %.0f "
                      "(gate %.0f, the reply's level %.0f; -1: no reply playing), %d ms needed",
                      id().c_str(), level, gate, aec->far_level(), need_ms);
        cut_by_speech_ = barge_in(now);
    }
    // A false start: the sound that cut the reply ended before it was speech.
    // (Not while the recogniser's end pass is still at work: that utterance was speech.)
    if (cut_by_speech_ && !utterance_open_ && end_passes_pending_ == 0 && !vad_->in_speech() &&
        vad_->pending_speech_ms() == 0) {
        std::shared_ptr<turn> t = std::move(cut_by_speech_);
        cut_by_speech_.reset();
        resume_turn(t);
    }
    if (!utterance_open_ || !asr_) return;
    if (since_partial_ >= size_t(cfg_.partial_interval_ms) * ASR_SAMPLE_RATE / 1000) {
        since_partial_ = 0;
        mono_time t = mono_now();
        std::string p = asr_->partial();
        utt_asr_ms_ += ms_between(t, mono_now());
        if (!p.empty() && p != last_partial_) {
            last_partial_ = p;
            out_->on_event(transcript_event{p, false, 0});
            if (cfg_.prefill_while_speaking && !spec_) prefill(p);
        }
    }
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
}

// In a pause that may be the end of the turn, start the reply from the partial transcript; it
// is held until the turn really ends with the same words, and thrown away if the user goes on.
// A recogniser with an end pass (the transcript is not the partial) starts that pass in the
// pause instead, and the reply starts from its result if the pause lasts.
void session::maybe_speculate(mono_time now) {
    if (cfg_.speculative_silence_ms <= 0 || !eng_.llm || !asr_ || !vad_->in_speech()) return;
    int silence = vad_->trailing_silence_ms();
    if (silence == 0) { // the user went on
        if (spec_) discard_turn(spec_);
        spec_.reset();
        if (early_end_) early_end_->stale = true;
        early_end_.reset();
        return;
    }
    if (spec_ || early_end_ || silence < cfg_.speculative_silence_ms || cfg_.asr_final_pass)
        return;
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
    std::lock_guard lock(m_);
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
        if (t) {
            std::lock_guard lock(t->m);
            t->speech_end_ms = speech_end_ms;
        }
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
        hands_free_transcript(early->text, std::move(spec), t_decided, speech_end_ms);
        return;
    }
    if (!end_pass) {
        hands_free_transcript(text, std::move(spec), t_decided, speech_end_ms);
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
    post_end_pass([self, end_pass = std::move(end_pass), spec, t_decided, speech_end_ms,
                   early] {
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
                return;
            }
            self->utt_asr_ms_ += ms;
            self->hands_free_transcript(text, spec, t_decided, speech_end_ms);
        });
    });
}

// The utterance's final transcript: a reply started in the pause goes on if it had the same
// words; otherwise a new turn starts (or none, for a noise).
void session::hands_free_transcript(const std::string &text, std::shared_ptr<turn> spec,
                                    mono_time t_decided, double speech_end_ms) {
    if (spec) {
        if (spec->user == text) {
            {
                std::lock_guard lock(spec->m);
                spec->t0 = t_decided; // times count from the end of the turn, as for any turn
                spec->asr_ms = utt_asr_ms_;
                spec->speech_end_ms = speech_end_ms;
            }
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
            resume_turn(cut);
        }
        return;
    }
    auto t = start_turn(text, t_decided, mono_now());
    if (t) {
        std::lock_guard lock(t->m);
        t->speech_end_ms = speech_end_ms;
    }
}

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

void session::finish_utterance(mono_time t_stop) {
    if (direct_audio() && !asr_ && in_resampler_) {
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
        return;
    }
    if (!asr_ || !in_resampler_) {
        out_->on_event(transcript_event{"", true, 0});
        return;
    }
    std::string text;
    std::shared_ptr<turn> spec;
    mono_time t_begin = mono_now();
    try {
        mono_time t_asr = mono_now();
        asr_->accept(in_resampler_->flush());
        std::string guess = asr_->partial();
        utt_asr_ms_ += ms_between(t_asr, mono_now());
        if (!cfg_.asr_final_pass && asr_->partial_is_final()) {
            // Every frame is already decoded: the first pass's hypothesis is the transcript,
            // and the engine's end-of-utterance pass runs after the reply has started.
            in_resampler_.reset();
            mono_time t_transcript = mono_now();
            out_->on_event(transcript_event{guess, true, 0});
            if (!guess.empty()) start_turn(guess, t_stop, t_transcript);
            // The engine's end-of-utterance pass would compete with the reply for the CPU; it
            // runs when the next utterance starts (it only resets the decoder).
            asr_end_pending_ = true;
            log_debug("asr: transcript %.1f ms after stop (%.1f ms queued)",
                      ms_between(t_stop, t_transcript), ms_between(t_stop, t_begin));
            return;
        }
        // With the end pass: it costs tens of ms, and its result is almost always the first
        // pass's, so the reply starts from that now and its output is held until the final
        // transcript confirms it (or is thrown away when it differs).
        if (!guess.empty() && eng_.llm) spec = start_turn(guess, t_stop, mono_time{}, true);
        t_asr = mono_now();
        text = asr_->finish();
        utt_asr_ms_ += ms_between(t_asr, mono_now());
        if (spec) {
            std::lock_guard lock(spec->m);
            spec->asr_ms = utt_asr_ms_;
        }
    } catch (const std::exception &e) {
        if (spec) discard_turn(spec);
        error("asr_failed", e.what());
        return;
    }
    in_resampler_.reset();
    log_debug("asr: final after %.1f ms queued + %.1f ms decoding%s", ms_between(t_stop, t_begin),
              ms_between(t_begin, mono_now()), spec ? " (reply started at stop)" : "");
    if (spec) {
        if (spec->user == text) {
            release_turn(spec, text);
            return;
        }
        discard_turn(spec);
    }
    out_->on_event(transcript_event{text, true, 0});
    if (text.empty()) return; // nothing heard: no reply (the empty final transcript says so)
    start_turn(text, t_stop, mono_now());
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
    t->held = held;
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
    if (old && !(held && old->held)) cancel_turn(old, true); // a new user turn cuts the old reply
    if (old && held && old->held) discard_turn(old);
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
        if (t->finished) return;
        if (t->t_first_token == mono_time{}) t->t_first_token = mono_now();
        for (std::string &p : t->chunker.push(piece))
            t->pending.push_back(std::move(p));
        // A held reply stops after its first phrase: that is all the end of the turn needs at
        // once, and the user may go on talking (then the rest would be thrown away).
        if (t->chunker.released() > 0 && t->urgent->load()) {
            log_debug("turn %lld: first phrase %.1f ms after the first token",
                      static_cast<long long>(t->id), ms_between(t->t_first_token, mono_now()));
            t->urgent->store(false);
            if (t->held) t->pause->store(true);
        }
    }
    pump(t);
}

void session::on_llm_done(const std::shared_ptr<turn> &t, const llm_result &r) {
    {
        std::lock_guard lock(t->m);
        if (t->finished) return;
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
    if (t->finished || t->cancel->load()) return;
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
            if (t->finished || t->cancel->load()) return;
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
    if (t->held) {
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
        if (t->finished && !t->llm_done_pending_finish) return; // cancelled meanwhile
        t->held = false;
        t->pause->store(false);
        t->t_transcript = mono_now();
        out_->on_event(transcript_event{final_text, true, t->id});
        for (auto &[chunk, index] : t->held_out)
            emit_locked(t, std::move(chunk), index);
        t->held_out.clear();
        if (t->llm_done_pending_finish) {
            t->llm_done_pending_finish = false;
            t->finished = false;
            finish_turn_locked(t);
        }
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
    t->finished = true;
    t->held_out.clear();
    std::lock_guard slock(m_);
    if (current_ == t) current_.reset();
    if (next_turn_id_ == t->id + 1) next_turn_id_ = t->id; // the id was never seen
    if (eng_.stats) --eng_.stats->turns;
}

void session::finish_turn_locked(const std::shared_ptr<turn> &t) {
    if (t->finished) return;
    if (t->held) {
        // Everything is generated but not yet confirmed: finish on release.
        t->llm_done_pending_finish = true;
        t->finished = true;
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
    t->finished = true;
    record_turn(t, false);
}

void session::cancel_turn(const std::shared_ptr<turn> &t, bool notify) {
    t->cancel->store(true);
    mono_time now = mono_now();
    std::lock_guard lock(t->m);
    if (t->finished) return;
    t->finished = true;
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
    return !t->held && !t->finished;
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
        generating = !t->held && !t->finished;
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
    int64_t turn_id = r.turn_id;
    const std::string &chunk_id = r.chunk_id;
    int played_ms = r.played_ms;
    mono_time now = mono_now();
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
