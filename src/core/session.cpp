#include "core/session.h"

#include "audio/resampler.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "store/store.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>

namespace parley {

using json = nlohmann::json;

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

bool valid_session_id(const std::string &id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    return true;
}

} // namespace

// One reply: the LLM's phrases on their way out, in order.
struct session::turn {
    int64_t id = 0;
    std::string user;
    mono_time t0, t_transcript, t_first_token, t_first_chunk, t_first_audio;
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
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
    std::vector<std::pair<bool, std::string>> held_out;
    llm_result llm;
    double tts_ms = 0;
    int audio_ms = 0;
};

session::session(const session_engines &engines, const session_config &config,
                 std::shared_ptr<session_output> out)
    : eng_(engines), cfg_(config), out_(std::move(out)), tts_params_(config.tts),
      worker_(std::make_unique<worker>("session")) {
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
    out_->send_text(encode_error(code, message));
}

void session::open(const std::string &resume_id) {
    bool resumed = false;
    std::vector<turn_record> turns;
    std::string id;
    if (!resume_id.empty() && valid_session_id(resume_id) && eng_.db) {
        try {
            if (eng_.db->session_exists(resume_id)) {
                turns = eng_.db->load_turns(resume_id);
                id = resume_id;
                resumed = true;
            }
        } catch (const std::exception &e) {
            log_error("store: %s", e.what());
        }
    }
    if (id.empty()) id = new_session_id();
    if (!resume_id.empty() && !resumed)
        error("unknown_session", "no session " + resume_id.substr(0, 64) + "; started a new one");
    if (!resumed && eng_.db) {
        try {
            eng_.db->create_session(id);
        } catch (const std::exception &e) {
            log_error("store: %s", e.what());
        }
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
    out_->send_text(encode_ready(id, cfg_.audio_out_rate, resumed, n, eng_.llm != nullptr,
                                 eng_.tts != nullptr));
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
    std::unique_ptr<worker> w;
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
    w.reset(); // joins the session worker
    if (eng_.llm && slot >= 0) eng_.llm->release_slot(slot);
}

void session::on_text(std::string_view message) {
    mono_time t_recv = mono_now();
    auto parsed = parse_client_message(message);
    if (auto *err = std::get_if<protocol_error>(&parsed)) {
        error(err->code, err->message);
        return;
    }
    const client_message &m = std::get<client_message>(parsed);
    switch (m.type) {
    case CLIENT_MSG_START:
        handle_start(m.start);
        break;
    case CLIENT_MSG_STOP:
        handle_stop(t_recv);
        break;
    case CLIENT_MSG_TEXT:
        handle_text(m.text, t_recv);
        break;
    case CLIENT_MSG_INTERRUPT: {
        std::shared_ptr<turn> t;
        {
            std::lock_guard lock(m_);
            t = current_;
        }
        if (t) cancel_turn(t, true);
        break;
    }
    case CLIENT_MSG_PLAYBACK:
        break; // accepted; playback tracking is used by barge-in
    }
}

void session::handle_start(const start_params &p) {
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
    post([this, rate] {
        try {
            if (eng_.asr && !asr_) asr_ = eng_.asr->open();
            if (asr_) asr_->finish(); // ends the previous utterance (or drops one in progress)
            asr_end_pending_ = false;
            in_resampler_ = std::make_unique<resampler>(rate, ASR_SAMPLE_RATE);
            since_partial_ = 0;
            last_partial_.clear();
        } catch (const std::exception &e) {
            error("asr_failed", e.what());
        }
    });
}

void session::request_tts_check(const tts_params &params) {
    if (!eng_.tts_worker || !eng_.tts) return;
    // Lazy: the engine initialises on its first check, on the TTS worker, off the network path.
    auto self = shared_from_this();
    eng_.tts_worker->post([self, params] {
        std::string err = self->eng_.tts->check(params);
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

void session::handle_stop(mono_time t_stop) {
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
    post([this, t_stop] { finish_utterance(t_stop); });
}

void session::handle_text(const std::string &text, mono_time t0) {
    post([this, text, t0] { start_turn(text, t0, t0); });
}

void session::on_binary(std::string_view bytes) {
    protocol_error err;
    if (!check_audio_frame(bytes.size(), &err).empty()) {
        error(err.code, err.message);
        return;
    }
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
    std::vector<int16_t> pcm(bytes.size() / 2);
    std::memcpy(pcm.data(), bytes.data(), pcm.size() * 2);
    post([this, pcm = std::move(pcm)]() mutable { feed_audio(std::move(pcm)); });
}

void session::feed_audio(std::vector<int16_t> pcm) {
    if (!asr_ || !in_resampler_) return;
    try {
        std::vector<int16_t> s16k = in_resampler_->process(pcm);
        asr_->accept(s16k);
        since_partial_ += s16k.size();
        if (since_partial_ >= size_t(cfg_.partial_interval_ms) * ASR_SAMPLE_RATE / 1000) {
            since_partial_ = 0;
            std::string p = asr_->partial();
            if (!p.empty() && p != last_partial_) {
                last_partial_ = p;
                out_->send_text(encode_transcript(p, false, 0));
                if (cfg_.prefill_while_speaking) prefill(p);
            }
        }
    } catch (const std::exception &e) {
        error("asr_failed", e.what());
    }
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
        std::vector<turn_record> history;
        {
            std::lock_guard lock(self->m_);
            history = self->history_;
        }
        return fit_history(self->cfg_.system_prompt, history, partial, budget, count);
    };
    req.on_done = [busy = prefill_busy_](const llm_result &) { busy->store(false); };
    eng_.llm->submit(std::move(req));
}

void session::finish_utterance(mono_time t_stop) {
    if (!asr_ || !in_resampler_) {
        out_->send_text(encode_transcript("", true, 0));
        return;
    }
    std::string text;
    std::shared_ptr<turn> spec;
    mono_time t_begin = mono_now();
    try {
        asr_->accept(in_resampler_->flush());
        std::string guess = asr_->partial();
        if (!cfg_.asr_final_pass && asr_->partial_is_final()) {
            // Every frame is already decoded: the first pass's hypothesis is the transcript,
            // and the engine's end-of-utterance pass runs after the reply has started.
            in_resampler_.reset();
            mono_time t_transcript = mono_now();
            out_->send_text(encode_transcript(guess, true, 0));
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
        text = asr_->finish();
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
    out_->send_text(encode_transcript(text, true, 0));
    if (text.empty()) return; // nothing heard: no reply (the empty final transcript says so)
    start_turn(text, t_stop, mono_now());
}

std::shared_ptr<session::turn> session::start_turn(const std::string &user_text, mono_time t0,
                                                   mono_time t_transcript, bool held) {
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
    int slot;
    {
        std::lock_guard lock(m_);
        old = current_;
        slot = slot_;
    }
    if (old) cancel_turn(old, true); // a new user turn cuts the old reply
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
    auto self = shared_from_this();
    req.messages = [self, t](int budget, const token_counter &count) {
        std::vector<turn_record> history;
        {
            std::lock_guard lock(self->m_);
            history = self->history_;
        }
        return fit_history(self->cfg_.system_prompt, history, t->user, budget, count);
    };
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
    }
    pump(t);
}

void session::on_llm_done(const std::shared_ptr<turn> &t, const llm_result &r) {
    {
        std::lock_guard lock(t->m);
        if (t->finished) return;
        t->llm = r;
        if (r.stop_reason == "error") {
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
        text_chunk_event c;
        c.chunk_id = "chunk_id_" + std::to_string(t->next_chunk++);
        c.text = text;
        c.is_final = t->llm_done && t->pending.empty();
        c.has_audio = t->want_audio && tts_state_ == TTS_STATE_OK && tts_speakable(text);
        c.turn_id = t->id;
        mono_time now = mono_now();
        c.processing_time_ms = int64_t(ms_between(t->t0, now));
        if (!t->sent_text.empty()) t->sent_text += " ";
        t->sent_text += text;
        t->final_sent = c.is_final;
        emit_locked(t, false, encode_text_chunk(c));
        if (c.has_audio) {
            // The text is out; its audio follows as soon as it is made, and the next phrase's
            // text waits for it (a chunk's audio directly follows its text_chunk).
            t->tts_busy = true;
            synthesize(t, std::move(text), c.chunk_id);
        }
    }
    if (!t->tts_busy && t->pending.empty() && t->llm_done) finish_turn_locked(t);
}

void session::synthesize(const std::shared_ptr<turn> &t, std::string text, std::string chunk_id) {
    auto self = shared_from_this();
    tts_params params;
    {
        std::lock_guard lock(m_);
        params = tts_params_;
    }
    int out_rate = cfg_.audio_out_rate;
    eng_.tts_worker->post([self, t, text = std::move(text), chunk_id, params, out_rate] {
        if (t->cancel->load()) return;
        std::vector<int16_t> pcm;
        std::string err;
        mono_time t_synth = mono_now();
        try {
            tts_result audio = self->eng_.tts->synthesize(text, params);
            pcm = audio.sample_rate == out_rate ? std::move(audio.pcm)
                                                : resample(audio.pcm, audio.sample_rate, out_rate);
            if (pcm.empty()) err = "TTS produced no audio";
        } catch (const std::exception &e) {
            err = e.what();
        }
        {
            std::lock_guard lock(t->m);
            if (t->finished || t->cancel->load()) return;
            t->tts_ms += ms_between(t_synth, mono_now());
            if (!err.empty()) {
                // No audio will follow this chunk; the rest of the turn goes out as text.
                t->want_audio = false;
                self->error("tts_failed",
                            "chunk " + chunk_id + ": " + err + "; continuing with text only");
            } else {
                t->audio_ms += int(pcm.size() * 1000 / size_t(out_rate));
                self->emit_locked(
                    t, true,
                    std::string(reinterpret_cast<const char *>(pcm.data()), pcm.size() * 2));
            }
            t->tts_busy = false;
        }
        self->pump(t);
    });
}

void session::emit_locked(const std::shared_ptr<turn> &t, bool binary, std::string data) {
    if (t->held) {
        t->held_out.emplace_back(binary, std::move(data));
        return;
    }
    mono_time now = mono_now();
    if (binary) {
        if (t->t_first_audio == mono_time{}) t->t_first_audio = now;
        out_->send_binary(std::move(data));
    } else {
        if (t->t_first_chunk == mono_time{}) t->t_first_chunk = now;
        out_->send_text(std::move(data));
    }
}

void session::release_turn(const std::shared_ptr<turn> &t, const std::string &final_text) {
    {
        std::lock_guard lock(t->m);
        if (t->finished && !t->llm_done_pending_finish) return; // cancelled meanwhile
        t->held = false;
        t->t_transcript = mono_now();
        out_->send_text(encode_transcript(final_text, true, t->id));
        for (auto &[binary, data] : t->held_out)
            emit_locked(t, binary, std::move(data));
        t->held_out.clear();
        if (t->llm_done_pending_finish) {
            t->llm_done_pending_finish = false;
            t->finished = false;
            finish_turn_locked(t);
        }
    }
    pump(t);
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
        text_chunk_event c;
        c.chunk_id = "chunk_id_" + std::to_string(t->next_chunk++);
        c.is_final = true;
        c.turn_id = t->id;
        c.processing_time_ms = int64_t(ms_between(t->t0, mono_now()));
        emit_locked(t, false, encode_text_chunk(c));
        t->final_sent = true;
    }
    t->finished = true;
    record_turn(t, false);
}

void session::cancel_turn(const std::shared_ptr<turn> &t, bool notify) {
    t->cancel->store(true);
    std::lock_guard lock(t->m);
    if (t->finished) return;
    t->finished = true;
    if (notify) out_->send_text(encode_interrupted(t->id));
    if (eng_.stats) ++eng_.stats->interruptions;
    record_turn(t, true);
}

// Called with the turn's lock held.
void session::record_turn(const std::shared_ptr<turn> &t, bool interrupted) {
    mono_time done = mono_now();
    auto since = [&](mono_time x) -> json {
        if (x == mono_time{}) return nullptr;
        return std::round(ms_between(t->t0, x) * 100) / 100;
    };
    json timings = {{"transcript_ms", since(t->t_transcript)},
                    {"first_token_ms", since(t->t_first_token)},
                    {"first_text_ms", since(t->t_first_chunk)},
                    {"first_audio_ms", since(t->t_first_audio)},
                    {"total_ms", since(done)},
                    {"llm_queue_ms", t->llm.queue_ms},
                    {"llm_prompt_ms", t->llm.prompt_ms},
                    {"prompt_tokens", t->llm.prompt_tokens},
                    {"cached_tokens", t->llm.cached_tokens},
                    {"generated_tokens", t->llm.generated_tokens},
                    {"tts_ms", t->tts_ms},
                    {"audio_ms", t->audio_ms}};
    turn_record rec;
    rec.turn_id = t->id;
    rec.user = t->user;
    rec.assistant = interrupted ? t->sent_text : t->llm.text;
    // Keep spacing as generated when the whole reply went out.
    if (!interrupted) {
        size_t b = rec.assistant.find_first_not_of(" \n\t");
        size_t e = rec.assistant.find_last_not_of(" \n\t");
        rec.assistant = b == std::string::npos ? "" : rec.assistant.substr(b, e - b + 1);
    }
    rec.interrupted = interrupted;
    rec.timings_json = timings.dump();
    rec.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::string sid;
    {
        std::lock_guard lock(m_);
        history_.push_back(rec);
        sid = id_;
        if (current_ == t) current_.reset();
    }
    if (eng_.db) {
        try {
            eng_.db->append_turn(sid, rec);
        } catch (const std::exception &e) {
            log_error("store: %s", e.what());
        }
    }
    if (eng_.stats && !interrupted) {
        auto observe = [&](latency_histogram &h, mono_time x) {
            if (x != mono_time{}) h.observe(ms_between(t->t0, x));
        };
        observe(eng_.stats->transcript, t->t_transcript);
        observe(eng_.stats->first_token, t->t_first_token);
        observe(eng_.stats->first_text, t->t_first_chunk);
        observe(eng_.stats->first_audio, t->t_first_audio);
        observe(eng_.stats->total, done);
    }
    if (!interrupted) {
        out_->send_text(
            encode_response_done(t->id, rec.assistant, rec.timings_json, t->llm.stop_reason));
    }
    log_info("turn %s/%lld: first text %.1f ms, first audio %.1f ms, %d tokens%s", sid.c_str(),
             (long long)t->id,
             t->t_first_chunk == mono_time{} ? -1.0 : ms_between(t->t0, t->t_first_chunk),
             t->t_first_audio == mono_time{} ? -1.0 : ms_between(t->t0, t->t_first_audio),
             t->llm.generated_tokens, interrupted ? " (interrupted)" : "");
}

} // namespace parley
