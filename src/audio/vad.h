// Voice activity detection: where speech starts and where a turn ends, in a 16 kHz mono stream.
//
// Two parts:
// - vad_model: the detector's weights, loaded once and shared by every session (Silero v5 on ONNX
//   Runtime, or the energy detector, which has no weights). Thread-safe; hold it in a shared_ptr.
// - vad_stream: one per session. Feed it the client's audio, resampled to 16 kHz, in frames of
//   any size; it scores 512-sample windows (32 ms) and returns events. Not thread-safe: call it
//   from the one thread (or strand) that owns the session.
//
//     auto model = make_vad_model(config.vad);   // at start-up; may throw vad_error
//     vad_stream vad(model, session_params);      // per session (per-session overrides)
//     for (const vad_event &e : vad.process(pcm_16k)) ...   // per audio frame
//
// Positions are stream sample offsets (16 kHz samples since the stream was made or reset()).
// speech_started carries the onset (the first window that scored as speech, not the moment the
// speech was confirmed, which is min_speech_ms later) and, in `audio`, the prefix padding plus
// the speech so far, so the ASR gets the whole utterance. speech_stopped carries the end of the
// speech and is emitted once min_silence_ms of silence followed it.
//
// The detector uses two thresholds (Silero's own scheme): a window is speech at
// probability >= threshold, and a run of speech goes on until a window falls below
// neg_threshold (threshold - 0.15 by default). A run of min_speech_ms starts an utterance; its
// onset is the run's first window, moved back over up to three rising windows (probability at
// least threshold / 3), as the models score an onset late. In an utterance, a pause starts at
// the first window below neg_threshold; min_resume_ms of consecutive windows at or above
// threshold cancel it, shorter runs (breaths, clicks) do not; a pause of min_silence_ms ends the
// utterance.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace parley {

struct vad_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct vad_params {
    std::string engine = "silero"; // silero (falls back to energy when no model is found), energy
    std::string model_path;        // silero: the .onnx; empty: find_silero_model()
    float threshold = 0.5f;        // speech probability at which a window is speech (0..1)
    float neg_threshold = -1.0f;   // below this, speech is over; < 0: threshold - 0.15
    int min_speech_ms = 250;       // shorter bursts (a click, a cough) are not speech
    int min_silence_ms = 500;      // silence that ends the turn
    int min_resume_ms = 90;        // speech in a pause shorter than this (a breath, a smack)
                                   // does not cancel the pause
    int prefix_pad_ms = 300;       // audio before the onset handed to the ASR

    // Empty when valid; otherwise a one-line reason.
    std::string validate() const;
    // neg_threshold with the default resolved.
    float effective_neg_threshold() const;
};

// Per-stream scoring state of a model (recurrent state, noise floor...). One per vad_stream.
class vad_scorer {
  public:
    virtual ~vad_scorer() = default;
    // Speech probability (0..1) of one window of VAD_WINDOW samples in [-1, 1].
    virtual float score(std::span<const float> window) = 0;
    virtual void reset() = 0;
};

// A detector's weights, shared by all sessions. make_scorer() is thread-safe and so are the
// scorers' calls into the shared model (ONNX Runtime's Run is thread-safe).
class vad_model {
  public:
    virtual ~vad_model() = default;
    virtual std::string name() const = 0; // "silero" or "energy"
    virtual std::unique_ptr<vad_scorer> make_scorer() const = 0;
};

constexpr int VAD_SAMPLE_RATE = 16000;
constexpr int VAD_WINDOW = 512; // samples per scored window (32 ms)

// Loads a Silero VAD v5 ONNX model. Throws vad_error with one line naming the file when it is
// missing, not an ONNX model, or does not have Silero v5's inputs and outputs.
std::shared_ptr<vad_model> load_silero_vad(const std::string &path);

// RMS level against an adaptive noise floor, mapped to a probability: 0.5 at 9 dB above the
// floor (so threshold 0.5 means "9 dB louder than the background"), about 0.25 at 7 dB, 0.8 at
// 12 dB; windows below -55 dBFS are silence whatever the floor.
std::shared_ptr<vad_model> make_energy_vad();

// The default Silero model: $PARLEY_VAD_MODEL, then
// node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx under the current directory, then
// under the executable's directory and its parents. Empty when none exists.
std::string find_silero_model();

// The engine params ask for. "energy": the energy detector. "silero": the model at model_path
// (a load error throws vad_error) or, when model_path is empty, find_silero_model(); when no
// model is found or the found one does not load, logs why and returns the energy detector.
// Throws vad_error for an unknown engine.
std::shared_ptr<vad_model> make_vad_model(const vad_params &params);

enum vad_event_type {
    VAD_EVENT_SPEECH_STARTED,
    VAD_EVENT_SPEECH_STOPPED,
};

struct vad_event {
    vad_event_type type = VAD_EVENT_SPEECH_STARTED;
    int64_t sample = 0;         // started: onset; stopped: end of speech (stream samples)
    int64_t decided_sample = 0; // stream position at which the event was decided
    std::vector<int16_t> audio; // started only: [onset - prefix_pad, position()) (what is kept)
    int64_t audio_start = 0;    // started only: stream sample of audio[0]

    double ms() const { return sample * 1000.0 / VAD_SAMPLE_RATE; }
    // How long after the fact the event was decided.
    double delay_ms() const { return (decided_sample - sample) * 1000.0 / VAD_SAMPLE_RATE; }
};

class vad_stream {
  public:
    // Throws vad_error when params are invalid or model is null.
    vad_stream(std::shared_ptr<const vad_model> model, const vad_params &params = {});

    // 16 kHz mono PCM, any frame size (empty is fine). Events in stream order.
    std::vector<vad_event> process(std::span<const int16_t> pcm);

    // End of the input (client `stop`, disconnect): speech_stopped at the end of the speech when
    // an utterance is open; unconfirmed speech is dropped. The stream stays usable.
    std::vector<vad_event> finish();

    // Per-session overrides (threshold, timings, padding; engine and model_path are ignored).
    // Takes effect from the next window; the stream's state is kept. Throws vad_error if invalid.
    void set_params(const vad_params &params);
    const vad_params &params() const { return params_; }

    // Back to a fresh stream: model state, position 0, no utterance.
    void reset();

    bool in_speech() const { return in_speech_; }
    // In speech: how long the current silence has lasted (0 while speaking); 0 outside speech.
    // The session may start a speculative reply when this passes a shorter silence.
    int trailing_silence_ms() const;
    // Not in speech: how long the unconfirmed speech run has lasted (0 when none). Lets the
    // session react (e.g. duck a reply) before min_speech_ms confirms.
    int pending_speech_ms() const;
    float probability() const { return probability_; } // last window's speech probability
    int64_t position() const { return position_; }     // samples received
    std::string engine() const { return model_->name(); }

    // Kept audio from `from` (clamped to what is kept) to position(). The stream keeps the last
    // prefix_pad_ms + min_speech_ms + 1 s.
    std::vector<int16_t> audio_since(int64_t from) const;

  private:
    void score_window(std::vector<vad_event> &events);
    void keep_audio(std::span<const int16_t> pcm);
    static int64_t ms_to_samples(int ms) { return int64_t(ms) * VAD_SAMPLE_RATE / 1000; }

    std::shared_ptr<const vad_model> model_;
    std::unique_ptr<vad_scorer> scorer_;
    vad_params params_;

    std::vector<float> window_; // pending samples of the next window
    int64_t position_ = 0;      // samples received
    int64_t scored_ = 0;        // samples scored (whole windows)
    float probability_ = 0.0f;

    bool in_speech_ = false;
    int64_t candidate_start_ = -1; // not in speech: start of the unconfirmed speech run
    int64_t silence_start_ = -1;   // in speech: start of the current silence run
    int64_t resume_start_ = -1;    // in a silence: start of a run of speech that may end it
    float recent_[2] = {0, 0};     // probabilities of the two windows before the last

    std::vector<int16_t> kept_; // the last samples received, for the prefix padding
    int64_t kept_start_ = 0;    // stream sample of kept_[0]
};

} // namespace parley
