// Whisper engine (libwhisper, whisper.cpp's ggml model files).
//
// One model context is shared by all streams; each stream decodes with its own whisper_state,
// taken from a pool (a state holds ~100 MB of buffers and takes a while to make). Whisper is
// not incremental: accept() only buffers the utterance, partial() re-decodes what arrived so far
// every partial_interval_ms of new audio, and finish() decodes the whole utterance.
//
// The final decode is whisper-cli's with its default settings (the full 30 s encoder context,
// beam search of 5, the temperature fallback, timestamps): the same model gives the same words.
// Partials are for display and prefill, so they are fast: one greedy pass with the encoder
// context sized to the audio (Whisper's encoder cost grows with it; a full 30 s context for a
// 2 s "yes, please" is most of the latency). asr_config::fast makes the final decode fast too.
//
// A stream is used from one thread; its destructor may run on another thread while a decode is
// in progress: it aborts the decode (ggml's abort_callback) and waits for it to return.
#include "asr/asr-ggml-file.h"
#include "asr/asr-pool.h"
#include "asr/asr.h"

#include "core/log.h"
#include "core/own-thread.h"
#include "text/utf8.h"

#include <ggml-backend.h>
#include <whisper.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parley {

std::unique_ptr<asr_engine> make_asr_whisper(const asr_config &config);
// For tests: the encoder context (audio_ctx) of the stream's last decode, and how many decodes
// it has started.
int asr_whisper_last_audio_ctx(const asr_stream &stream);
int asr_whisper_decode_count(const asr_stream &stream);

namespace {

constexpr int SAMPLES_PER_ENCODER_FRAME = 320; // 160-sample mel hop, then a stride-2 conv
constexpr size_t MIN_DECODE_SAMPLES = ASR_SAMPLE_RATE / 10; // whisper refuses under 100 ms

using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

void on_whisper_log(ggml_log_level level, const char *text, void *) {
    ggml_engine_log("whisper", level, text, true);
}

// Missing, unreadable, non-ggml, cut and damaged files get their own reason; whisper.cpp's
// loader then checks each tensor's name and shape.
void check_model_file(const std::string &path) {
    check_ggml_model_file("whisper", path, "whisper.cpp ggml model", [](ggml_model_file &file) {
        for (const char *field :
             {"n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
              "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"})
            file.positive(field);
        file.i32(); // ftype
        int32_t n_mel = file.positive("mel filters"), n_fft = file.positive("mel filter length");
        file.skip(uint64_t(n_mel) * uint64_t(n_fft) * sizeof(float));
    });
}

int default_threads(int threads) {
    if (threads > 0) return threads;
    return std::max(1u, std::thread::hardware_concurrency());
}

class asr_whisper;

class stream_whisper : public asr_stream {
  public:
    stream_whisper(asr_whisper &engine, whisper_state *state) : engine_(engine), state_(state) {}
    ~stream_whisper() override;

    void accept(std::span<const int16_t> pcm) override {
        std::lock_guard lock(mutex_);
        pcm_.reserve(pcm_.size() + pcm.size());
        for (int16_t s : pcm)
            pcm_.push_back(s / 32768.0f);
    }

    std::string partial() override;
    std::string finish() override { return finish_timed(nullptr); }
    std::string finish_timed(std::vector<asr_word> *words) override;
    std::function<std::string()> finish_deferred() override;
    std::function<std::string()> end_pass_so_far() override;
    void drop() override {
        std::lock_guard lock(mutex_);
        reset_locked();
    }

    int last_audio_ctx() const { return last_audio_ctx_.load(); }
    int decode_count() const { return decode_count_.load(); }

  private:
    std::function<std::string()> final_job(std::vector<float> pcm);
    std::string decode_locked(bool final_pass, std::vector<asr_word> *words = nullptr);
    std::vector<asr_word> words_locked() const;
    void reset_locked();

    asr_whisper &engine_;
    whisper_state *state_;
    std::mutex mutex_; // held while a call uses the state; the destructor waits on it
    std::atomic<bool> abort_{false};
    std::vector<float> pcm_;
    size_t partial_at_ = 0; // pcm_.size() at the last partial decode
    std::string partial_text_;
    std::atomic<int> last_audio_ctx_{0};
    std::atomic<int> decode_count_{0};
};

class asr_whisper : public asr_engine {
  public:
    explicit asr_whisper(const asr_config &config)
        : path_(config.model_path), language_(config.language), fast_(config.fast),
          threads_(default_threads(config.threads)),
          partial_interval_samples_(size_t(std::max(0, config.partial_interval_ms)) *
                                    ASR_SAMPLE_RATE / 1000) {
        check_model_file(path_);
        if (!language_.empty() && language_ != "auto" && whisper_lang_id(language_.c_str()) < 0)
            throw asr_error("whisper: unknown language '" + language_ + "'");
        ensure_ggml_backends();
        whisper_log_set(on_whisper_log, nullptr);

        whisper_context_params params = whisper_context_default_params();
        params.use_gpu = false;
        auto t0 = clock_type::now();
        ggml_first_error.clear();
        ctx_ = whisper_init_from_file_with_params_no_state(path_.c_str(), params);
        if (!ctx_) {
            std::string why =
                ggml_first_error.empty() ? "corrupt or truncated file" : ggml_first_error;
            throw asr_error("whisper: cannot load " + path_ + ": " + why);
        }
        n_audio_ctx_ = whisper_model_n_audio_ctx(ctx_);
        if (!whisper_is_multilingual(ctx_) && language_ != "en")
            log_warn("whisper: %s is English-only; language '%s' is ignored", path_.c_str(),
                     language_.c_str());
        try {
            states_.fill(config.pool);
        } catch (...) {
            states_.clear();
            whisper_free(ctx_);
            throw;
        }
        load_ms_ = ms_since(t0);
        log_info("whisper: loaded %s in %.0f ms (%d-frame audio context, %d threads, %d states)",
                 path_.c_str(), load_ms_, n_audio_ctx_, threads_, config.pool);
    }

    ~asr_whisper() override {
        states_.clear(); // before the context they belong to
        whisper_free(ctx_);
    }

    std::string name() const override { return "whisper"; }
    bool times_words() const override { return true; }

    std::unique_ptr<asr_stream> open() override {
        return std::make_unique<stream_whisper>(*this, states_.take());
    }

    void give_back(whisper_state *state) { states_.give_back(state); }

    // Encoder frames for n samples: the utterance rounded up, at most the model's 30 s.
    int audio_ctx_for(size_t n_samples) const {
        size_t frames = (n_samples + SAMPLES_PER_ENCODER_FRAME - 1) / SAMPLES_PER_ENCODER_FRAME;
        return int(std::min<size_t>(frames, size_t(n_audio_ctx_)));
    }

    whisper_context *ctx() const { return ctx_; }
    const std::string &language() const { return language_; }
    int threads() const { return threads_; }
    size_t partial_interval_samples() const { return partial_interval_samples_; }
    bool fast() const { return fast_; }
    int n_audio_ctx() const { return n_audio_ctx_; }

  private:
    whisper_state *make_state() {
        whisper_state *state = whisper_init_state(ctx_);
        if (!state) throw asr_error("whisper: cannot allocate a decoder state for " + path_);
        return state;
    }

    std::string path_;
    std::string language_;
    bool fast_;
    int threads_;
    size_t partial_interval_samples_;
    whisper_context *ctx_ = nullptr;
    int n_audio_ctx_ = 0;
    double load_ms_ = 0;
    decoder_pool<whisper_state> states_{[this] { return make_state(); }, whisper_free_state};
};

stream_whisper::~stream_whisper() {
    abort_ = true;
    std::lock_guard lock(mutex_); // a decode on another thread returns soon after abort_
    engine_.give_back(state_);
}

std::string stream_whisper::partial() {
    std::lock_guard lock(mutex_);
    if (pcm_.size() < partial_at_ + std::max<size_t>(engine_.partial_interval_samples(), 1))
        return partial_text_;
    partial_at_ = pcm_.size();
    partial_text_ = decode_locked(false);
    return partial_text_;
}

std::string stream_whisper::finish_timed(std::vector<asr_word> *words) {
    std::lock_guard lock(mutex_);
    std::string text;
    if (words) words->clear();
    try {
        text = decode_locked(true, words);
    } catch (...) {
        reset_locked();
        throw;
    }
    reset_locked();
    return text; // built before the lock is released: nothing touches *this after that
}

// The utterance moves to a stream of its own (its own decoder state), which the job finishes:
// this stream takes the next utterance at once, and its partials use its own state meanwhile.
std::function<std::string()> stream_whisper::finish_deferred() {
    std::vector<float> pcm;
    {
        std::lock_guard lock(mutex_);
        pcm = std::move(pcm_);
        reset_locked();
    }
    return final_job(std::move(pcm));
}

// The same decode on a copy of the audio so far; the utterance goes on here.
std::function<std::string()> stream_whisper::end_pass_so_far() {
    std::vector<float> pcm;
    {
        std::lock_guard lock(mutex_);
        pcm = pcm_;
    }
    return final_job(std::move(pcm));
}

std::function<std::string()> stream_whisper::final_job(std::vector<float> pcm) {
    if (pcm.size() < MIN_DECODE_SAMPLES) return [] { return std::string(); };
    std::shared_ptr<asr_stream> other = engine_.open();
    static_cast<stream_whisper &>(*other).pcm_ = std::move(pcm);
    return [other] { return other->finish(); };
}

void stream_whisper::reset_locked() {
    pcm_.clear();
    partial_at_ = 0;
    partial_text_.clear();
}

// The words of the last decode: a token that starts with a space starts a word; times from
// whisper.cpp's token timestamps (the timestamp tokens' probabilities), in 10 ms steps.
std::vector<asr_word> stream_whisper::words_locked() const {
    std::vector<asr_word> out;
    whisper_context *ctx = engine_.ctx();
    const whisper_token eot = whisper_token_eot(ctx);
    const double length = double(pcm_.size()) / ASR_SAMPLE_RATE;
    auto close = [&] {
        if (out.empty()) return;
        out.back().word = bare_word(std::move(out.back().word));
        if (out.back().word.empty()) out.pop_back();
    };
    int n_segments = whisper_full_n_segments_from_state(state_);
    for (int i = 0; i < n_segments; ++i) {
        int n_tokens = whisper_full_n_tokens_from_state(state_, i);
        for (int j = 0; j < n_tokens; ++j) {
            whisper_token_data t = whisper_full_get_token_data_from_state(state_, i, j);
            if (t.id >= eot) continue; // special and timestamp tokens
            const char *piece = whisper_full_get_token_text_from_state(ctx, state_, i, j);
            if (!piece || !*piece) continue;
            double t0 = std::clamp(double(t.t0) / 100, 0.0, length);
            double t1 = std::clamp(double(t.t1) / 100, t0, length);
            if (piece[0] == ' ' || out.empty()) {
                close();
                out.push_back({piece[0] == ' ' ? piece + 1 : piece, t0, t1});
            } else {
                out.back().word += piece;
                out.back().end = std::max(out.back().end, t1);
            }
        }
    }
    close();
    return out;
}

std::string stream_whisper::decode_locked(bool final_pass, std::vector<asr_word> *words) {
    const size_t n = pcm_.size();
    if (n < MIN_DECODE_SAMPLES || abort_) return {};
    decode_count_++;

    const bool like_cli = final_pass && !engine_.fast();
    whisper_full_params params = whisper_full_default_params(like_cli ? WHISPER_SAMPLING_BEAM_SEARCH
                                                                      : WHISPER_SAMPLING_GREEDY);
    params.n_threads = engine_.threads();
    params.no_context = true;
    params.print_progress = false;
    params.print_realtime = false;
    params.print_timestamps = false;
    params.print_special = false;
    params.language = engine_.language().empty() ? "auto" : engine_.language().c_str();
    if (like_cli) {
        // whisper-cli's defaults: 5 beams (5 candidates when the fallback samples), the
        // temperature fallback, the full encoder context, timestamps.
        params.beam_search.beam_size = 5;
        params.greedy.best_of = 5;
    } else {
        params.no_timestamps = true;
        params.single_segment = true;
        params.audio_ctx = engine_.audio_ctx_for(n);
        // A bound on the text: speech runs at a few tokens a second, and a model that loops on
        // noise would otherwise write until its context is full.
        params.max_tokens = 16 + int(n * 10 / ASR_SAMPLE_RATE);
        // One greedy pass. The temperature fallback re-decodes up to five more times, with five
        // samplers each, when a pass looks unsure: seconds of delay.
        params.temperature_inc = 0.0f;
    }
    // Timestamps per token, computed after each segment is decoded: its words are the same.
    if (words) params.token_timestamps = true;
    params.abort_callback = [](void *self) {
        return static_cast<stream_whisper *>(self)->abort_.load(std::memory_order_relaxed);
    };
    params.abort_callback_user_data = this;

    auto t0 = clock_type::now();
    // On a thread of its own: its OpenMP team must not outlive the decode (core/own-thread.h).
    int rc = run_on_own_thread([&] {
        return whisper_full_with_state(engine_.ctx(), state_, params, pcm_.data(), int(n));
    });
    double ms = ms_since(t0);
    last_audio_ctx_ = params.audio_ctx > 0 ? params.audio_ctx : engine_.n_audio_ctx();
    if (abort_) return {};
    if (rc != 0) throw asr_error("whisper: decoding failed (code " + std::to_string(rc) + ")");

    std::string text;
    int n_segments = whisper_full_n_segments_from_state(state_);
    for (int i = 0; i < n_segments; ++i)
        if (const char *s = whisper_full_get_segment_text_from_state(state_, i)) text += s;
    // Byte-level tokens can end in half a character.
    text = utf8_sanitize(text);
    size_t start = text.find_first_not_of(' ');
    text = start == std::string::npos ? std::string() : text.substr(start);
    if (words) *words = words_locked();

    double seconds = double(n) / ASR_SAMPLE_RATE;
    log_debug("whisper: %s decode of %.2f s (audio_ctx %d) in %.0f ms (%.0f ms per s of audio)",
              final_pass ? "final" : "partial", seconds, params.audio_ctx, ms, ms / seconds);
    return text;
}

} // namespace

std::unique_ptr<asr_engine> make_asr_whisper(const asr_config &config) {
    return std::make_unique<asr_whisper>(config);
}

int asr_whisper_last_audio_ctx(const asr_stream &stream) {
    auto *s = dynamic_cast<const stream_whisper *>(&stream);
    return s ? s->last_audio_ctx() : -1;
}

int asr_whisper_decode_count(const asr_stream &stream) {
    auto *s = dynamic_cast<const stream_whisper *>(&stream);
    return s ? s->decode_count() : -1;
}

} // namespace parley
