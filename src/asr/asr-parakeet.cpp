// Parakeet TDT engine (libparakeet, whisper.cpp's port of NVIDIA's FastConformer-TDT).
//
// One model context is shared by all streams; each stream has its own parakeet_state.
// libparakeet streams by chunks: parakeet_chunk() transcribes one piece of audio and appends its
// text to the state's results, with no acoustic context carried from the previous piece. So
// accept() cuts the audio into pieces of partial_interval_ms as it arrives (at the quietest
// 10 ms near the end of each piece, to avoid cutting words) and transcribes each at once;
// partial() returns what the pieces gave so far without decoding; finish() transcribes the
// rest (a tail under half a second goes with the previous piece, re-decoded). Each utterance
// starts on a fresh state, made at its first accept().
//
// A stream is used from one thread; its destructor may run on another thread while a decode is
// in progress: it aborts the decode (ggml's abort_callback) and waits for it to return.
#include "asr/asr-ggml-file.h"
#include "asr/asr.h"

#include "core/log.h"
#include "core/own-thread.h"
#include "text/utf8.h"

#include <ggml-backend.h>
#include <parakeet.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parley {

std::unique_ptr<asr_engine> make_asr_parakeet(const asr_config &config);
// For tests: how many audio pieces the stream has transcribed.
int asr_parakeet_chunk_count(const asr_stream &stream);

namespace {

constexpr size_t MIN_PIECE_SAMPLES = ASR_SAMPLE_RATE / 2;   // shorter tails join the last piece
constexpr size_t MIN_DECODE_SAMPLES = ASR_SAMPLE_RATE / 10; // a few encoder frames
constexpr size_t QUIET_FRAME = ASR_SAMPLE_RATE / 100;       // 10 ms

using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

void on_parakeet_log(ggml_log_level level, const char *text, void *) {
    // Its warnings include one line per "non-standard" size, which every small model has.
    ggml_engine_log("parakeet", level, text, false);
}

void check_model_file(const std::string &path) {
    check_ggml_model_file("parakeet", path, "ggml Parakeet model", [](ggml_model_file &file) {
        int32_t n_durations = 0;
        for (const char *field :
             {"n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_mels",
              "ftype", "n_fft", "subsampling_factor", "n_subsampling_channels", "n_conv_kernel",
              "n_pred_dim", "n_pred_layers", "n_tdt_durations", "n_max_tokens"}) {
            int32_t v = strcmp(field, "ftype") == 0 ? file.i32() : file.positive(field);
            if (strcmp(field, "n_tdt_durations") == 0) n_durations = v;
        }
        int32_t n_mel = file.positive("mel filters"), n_bins = file.positive("mel filter length");
        file.skip(uint64_t(n_mel) * uint64_t(n_bins) * sizeof(float));
        file.skip(uint64_t(file.positive("window length")) * sizeof(float));
        file.skip(uint64_t(n_durations) * sizeof(uint32_t));
    });
}

// Where to end a piece of n samples: the quietest 10 ms in its last quarter.
size_t quiet_cut(const std::vector<float> &pcm, size_t n) {
    size_t best = n, from = n - n / 4;
    double best_energy = -1;
    for (size_t at = from; at + QUIET_FRAME <= n; at += QUIET_FRAME) {
        double energy = 0;
        for (size_t i = at; i < at + QUIET_FRAME; ++i)
            energy += double(pcm[i]) * pcm[i];
        if (best_energy < 0 || energy < best_energy) {
            best_energy = energy;
            best = at + QUIET_FRAME / 2;
        }
    }
    return best;
}

class asr_parakeet;

class stream_parakeet : public asr_stream {
  public:
    explicit stream_parakeet(asr_parakeet &engine) : engine_(engine) {}
    ~stream_parakeet() override;

    void accept(std::span<const int16_t> pcm) override;
    std::string partial() override {
        std::lock_guard lock(mutex_);
        return joined_locked();
    }
    std::string finish() override { return finish_timed(nullptr); }
    std::string finish_timed(std::vector<asr_word> *words) override;

    int chunk_count() const { return chunk_count_.load(); }

  private:
    // at: the piece's first sample in the utterance.
    void transcribe_locked(const float *pcm, size_t n, size_t at);
    std::string joined_locked() const;
    std::vector<asr_word> piece_words(int first_segment, int end_segment, double offset,
                                      double end) const;
    void reset_locked();

    asr_parakeet &engine_;
    std::mutex mutex_; // held while a call uses the state; the destructor waits on it
    std::atomic<bool> abort_{false};
    parakeet_state *state_ = nullptr; // made at an utterance's first accept()
    int segments_seen_ = 0;
    std::vector<float> pending_;    // audio not transcribed yet
    size_t pending_at_ = 0;         // its first sample in the utterance
    std::vector<float> last_piece_; // the last piece transcribed, for a short tail
    size_t last_piece_at_ = 0;
    std::vector<std::string> texts_;           // one per piece
    std::vector<std::vector<asr_word>> words_; // one list per piece, times in the utterance
    std::atomic<int> chunk_count_{0};
};

class asr_parakeet : public asr_engine {
  public:
    explicit asr_parakeet(const asr_config &config)
        : path_(config.model_path),
          threads_(config.threads > 0 ? config.threads
                                      : int(std::max(1u, std::thread::hardware_concurrency()))) {
        check_model_file(path_);
        ensure_ggml_backends();
        parakeet_log_set(on_parakeet_log, nullptr);

        parakeet_context_params params = parakeet_context_default_params();
        params.use_gpu = false;
        auto t0 = clock_type::now();
        ggml_first_error.clear();
        ctx_ = parakeet_init_from_file_with_params_no_state(path_.c_str(), params);
        if (!ctx_) {
            std::string why =
                ggml_first_error.empty() ? "corrupt or truncated file" : ggml_first_error;
            throw asr_error("parakeet: cannot load " + path_ + ": " + why);
        }
        // A piece, with a short tail joined to it, must fit the model's audio context (mel frames
        // of 10 ms).
        size_t max_piece = size_t(parakeet_model_n_audio_ctx(ctx_)) * PARAKEET_HOP_LENGTH;
        max_piece = std::max(max_piece, 2 * MIN_PIECE_SAMPLES) - MIN_PIECE_SAMPLES;
        piece_samples_ = size_t(std::max(0, config.partial_interval_ms)) * ASR_SAMPLE_RATE / 1000;
        piece_samples_ = std::clamp(piece_samples_, MIN_PIECE_SAMPLES, max_piece);
        // Fail at start, not on the first utterance, when a state cannot be made.
        try {
            parakeet_free_state(make_state());
        } catch (...) {
            parakeet_free(ctx_);
            throw;
        }
        log_info("parakeet: loaded %s in %.0f ms (%.1f s pieces, %d threads)", path_.c_str(),
                 ms_since(t0), double(piece_samples_) / ASR_SAMPLE_RATE, threads_);
    }

    ~asr_parakeet() override { parakeet_free(ctx_); }

    std::string name() const override { return "parakeet"; }
    bool times_words() const override { return true; }

    std::unique_ptr<asr_stream> open() override { return std::make_unique<stream_parakeet>(*this); }

    parakeet_state *make_state() {
        parakeet_state *state = parakeet_init_state(ctx_);
        if (!state) throw asr_error("parakeet: cannot allocate a decoder state for " + path_);
        return state;
    }

    parakeet_context *ctx() const { return ctx_; }
    int threads() const { return threads_; }
    size_t piece_samples() const { return piece_samples_; }

  private:
    std::string path_;
    int threads_;
    size_t piece_samples_ = 0;
    parakeet_context *ctx_ = nullptr;
};

stream_parakeet::~stream_parakeet() {
    abort_ = true;
    std::lock_guard lock(mutex_); // a decode on another thread returns soon after abort_
    if (state_) parakeet_free_state(state_);
}

void stream_parakeet::accept(std::span<const int16_t> pcm) {
    std::lock_guard lock(mutex_);
    if (!state_) {
        auto t0 = clock_type::now();
        state_ = engine_.make_state();
        segments_seen_ = 0;
        log_debug("parakeet: new state in %.1f ms", ms_since(t0));
    }
    pending_.reserve(pending_.size() + pcm.size());
    for (int16_t s : pcm)
        pending_.push_back(s / 32768.0f);
    while (pending_.size() >= engine_.piece_samples() && !abort_) {
        size_t cut = quiet_cut(pending_, engine_.piece_samples());
        last_piece_.assign(pending_.begin(), pending_.begin() + cut);
        pending_.erase(pending_.begin(), pending_.begin() + cut);
        last_piece_at_ = pending_at_;
        pending_at_ += cut;
        try {
            transcribe_locked(last_piece_.data(), last_piece_.size(), last_piece_at_);
        } catch (...) {
            last_piece_.clear(); // it has no text for finish() to replace
            throw;
        }
    }
}

std::string stream_parakeet::finish_timed(std::vector<asr_word> *words) {
    std::lock_guard lock(mutex_);
    std::string text;
    if (words) words->clear();
    try {
        if (state_ && !abort_) {
            if (pending_.size() < MIN_PIECE_SAMPLES && !last_piece_.empty()) {
                last_piece_.insert(last_piece_.end(), pending_.begin(), pending_.end());
                texts_.pop_back();
                words_.pop_back();
                transcribe_locked(last_piece_.data(), last_piece_.size(), last_piece_at_);
            } else if (pending_.size() >= MIN_DECODE_SAMPLES) {
                transcribe_locked(pending_.data(), pending_.size(), pending_at_);
            }
        }
        text = joined_locked();
        if (words)
            for (const std::vector<asr_word> &piece : words_)
                words->insert(words->end(), piece.begin(), piece.end());
    } catch (...) {
        reset_locked();
        throw;
    }
    reset_locked();
    return text; // built before the lock is released: nothing touches *this after that
}

void stream_parakeet::transcribe_locked(const float *pcm, size_t n, size_t at) {
    parakeet_full_params params = parakeet_full_default_params(PARAKEET_SAMPLING_GREEDY);
    params.n_threads = engine_.threads();
    params.no_context = true;
    params.abort_callback = [](void *self) {
        return static_cast<stream_parakeet *>(self)->abort_.load(std::memory_order_relaxed);
    };
    params.abort_callback_user_data = this;

    auto t0 = clock_type::now();
    // On a thread of its own: its OpenMP team must not outlive the decode (core/own-thread.h).
    int rc = run_on_own_thread(
        [&] { return parakeet_chunk(engine_.ctx(), state_, params, pcm, int(n)); });
    double ms = ms_since(t0);
    chunk_count_++;
    if (abort_) return;
    if (rc != 0) throw asr_error("parakeet: decoding failed (code " + std::to_string(rc) + ")");

    std::string text;
    int n_segments = parakeet_full_n_segments_from_state(state_);
    for (int i = segments_seen_; i < n_segments; ++i)
        if (const char *s = parakeet_full_get_segment_text_from_state(state_, i)) text += s;
    std::vector<asr_word> words = piece_words(
        segments_seen_, n_segments, double(at) / ASR_SAMPLE_RATE, double(at + n) / ASR_SAMPLE_RATE);
    segments_seen_ = n_segments;
    size_t start = text.find_first_not_of(' ');
    texts_.push_back(start == std::string::npos ? std::string()
                                                : utf8_sanitize(text.substr(start)));
    words_.push_back(std::move(words));

    double seconds = double(n) / ASR_SAMPLE_RATE;
    log_debug("parakeet: %.2f s piece in %.0f ms (%.0f ms per s of audio)", seconds, ms,
              ms / seconds);
}

// The words of a piece's segments: a token marked as a word's start begins one (its
// SentencePiece space mark dropped); the token times (10 ms steps from the piece's start) moved
// to the utterance's.
std::vector<asr_word> stream_parakeet::piece_words(int first_segment, int end_segment,
                                                   double offset, double end) const {
    static const std::string SPACE_MARK = "\xe2\x96\x81"; // U+2581
    std::vector<asr_word> out;
    auto close = [&] {
        if (out.empty()) return;
        out.back().word = bare_word(std::move(out.back().word));
        if (out.back().word.empty()) out.pop_back();
    };
    for (int i = first_segment; i < end_segment; ++i) {
        int n_tokens = parakeet_full_n_tokens_from_state(state_, i);
        for (int j = 0; j < n_tokens; ++j) {
            parakeet_token_data t = parakeet_full_get_token_data_from_state(state_, i, j);
            const char *piece =
                parakeet_full_get_token_text_from_state(engine_.ctx(), state_, i, j);
            if (!piece || !*piece) continue;
            std::string text = piece;
            bool marked = text.starts_with(SPACE_MARK);
            if (marked) text.erase(0, SPACE_MARK.size());
            double t0 = std::clamp(offset + double(t.t0) / 100, offset, end);
            double t1 = std::clamp(offset + double(t.t1) / 100, t0, end);
            if (t.is_word_start || marked || out.empty()) {
                close();
                out.push_back({text, t0, t1});
            } else {
                out.back().word += text;
                out.back().end = std::max(out.back().end, t1);
            }
        }
    }
    close();
    return out;
}

std::string stream_parakeet::joined_locked() const {
    std::string out;
    for (const std::string &t : texts_) {
        if (t.empty()) continue;
        if (!out.empty()) out += ' ';
        out += t;
    }
    return out;
}

void stream_parakeet::reset_locked() {
    pending_.clear();
    pending_at_ = last_piece_at_ = 0;
    last_piece_.clear();
    texts_.clear();
    words_.clear();
    // The state keeps every piece's result until freed; the next utterance makes a new one.
    if (state_) parakeet_free_state(state_);
    state_ = nullptr;
}

} // namespace

std::unique_ptr<asr_engine> make_asr_parakeet(const asr_config &config) {
    return std::make_unique<asr_parakeet>(config);
}

int asr_parakeet_chunk_count(const asr_stream &stream) {
    auto *s = dynamic_cast<const stream_parakeet *>(&stream);
    return s ? s->chunk_count() : -1;
}

} // namespace parley
