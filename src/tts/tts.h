// Text-to-speech engines.
//
// synthesize() is blocking and thread-safe (an engine with global state serializes calls
// itself); a session calls it from the shared TTS worker, one phrase at a time, so a reply's
// phrases are spoken in order while the LLM writes the next one. Engines initialise lazily on
// the first call to check() or synthesize(); check() reports a readable reason when the engine
// or the requested voice cannot be used, so a session can fall back to text-only replies.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley {

class option_table;

struct tts_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct tts_params {
    std::string voice = "en-us"; // espeak-ng voice name
    int rate_wpm = 175;          // words per minute
};

struct tts_word {
    std::string text;
    int start_ms = 0;
    int end_ms = 0;
};

struct tts_result {
    std::vector<int16_t> pcm; // mono s16
    int sample_rate = 0;
    std::vector<tts_word> words;
    bool words_estimated = false; // from the text's shape, not the engine's own timing events
};

class tts_engine {
  public:
    virtual ~tts_engine() = default;
    virtual std::string name() const = 0;
    // Empty when usable with these parameters; otherwise why not.
    virtual std::string check(const tts_params &params) = 0;
    // False when the engine has no voice of this name (a client's choice, checked by name
    // against the engine's own list before it reaches any library). True when the engine cannot
    // load at all: check() says why.
    virtual bool knows_voice(const std::string &voice) { return !voice.empty(); }
    virtual int sample_rate() = 0;
    virtual tts_result synthesize(std::string_view text, const tts_params &params) = 0;
};

struct tts_config {
    std::string engine = "espeak"; // espeak, piper, none
    std::string model_path;        // piper: the voice's .onnx (its .onnx.json beside it)
    tts_params defaults;
    // Another server (OpenAI's /v1/audio/speech) instead of an engine here.
    std::string url;
    std::string api_key;
    std::string remote_model; // the "model" field sent (empty: tts-1)
};

// Registers the speech engines' settings (--tts, --voice, ...). `session_voice`: the voice
// and rate sessions start with, set together with the engine's defaults.
void register_tts_options(option_table &t, tts_config &c, tts_params &session_voice);

// Null for engine "none". Does not load anything yet (engines are lazy).
std::unique_ptr<tts_engine> make_tts_engine(const tts_config &config);

// True when the text has something to pronounce (letters or digits).
bool tts_speakable(std::string_view text);

} // namespace parley
