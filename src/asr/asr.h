// Speech recognition engines.
//
// An asr_engine is shared by all sessions; open() (thread-safe) gives each utterance stream its
// own decoder. An asr_stream is used from one thread at a time: accept() 16 kHz mono PCM as it
// arrives (decoding runs incrementally, so finish() only has the last few frames left), read
// partial() while the user speaks, and finish() at the end of the utterance. After finish() the
// stream is ready for the next utterance.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace parley {

class option_table;

constexpr int ASR_SAMPLE_RATE = 16000;

struct asr_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A word of a transcript and where it is spoken, in seconds from the utterance's first sample.
struct asr_word {
    std::string word;
    double start = 0, end = 0;
};

// A word as a transcript's word list gives it: valid UTF-8, without the punctuation (ASCII
// other than letters and digits) at its ends; empty for punctuation alone.
std::string bare_word(std::string word);

class asr_stream {
  public:
    virtual ~asr_stream() = default;
    virtual void accept(std::span<const int16_t> pcm16k) = 0;
    virtual std::string partial() = 0;
    virtual std::string finish() = 0;
    // True when partial() right after the last accept() already covers all the audio (an
    // incremental decoder): the session then uses it as the final transcript and calls
    // finish() later, off the reply's path. False: finish() does the real work.
    virtual bool partial_is_final() const { return false; }
    // finish() in two halves, for engines whose end of utterance is real work: ends the
    // utterance now (the stream takes the next one at once) and returns the rest as a job that
    // any thread may run, once, while the engine lives; it returns the transcript or throws
    // asr_error. By default finish() runs here and the job only hands its result over.
    virtual std::function<std::string()> finish_deferred() {
        std::string text = finish();
        return [text] { return text; };
    }
    // For engines with an end pass: a job (as finish_deferred()'s) that decodes the utterance
    // so far as if it ended now, without ending it; empty when the engine has no such pass.
    virtual std::function<std::string()> end_pass_so_far() { return {}; }
    // Ends the utterance without a transcript (the caller has one from end_pass_so_far()).
    virtual void drop() { finish(); }
    // finish(), with the transcript's words and their times in *words when the engine times
    // words (asr_engine::times_words()), in order, without punctuation; left empty otherwise.
    virtual std::string finish_timed(std::vector<asr_word> *words) {
        words->clear();
        return finish();
    }
};

class asr_engine {
  public:
    virtual ~asr_engine() = default;
    virtual std::string name() const = 0;
    virtual std::unique_ptr<asr_stream> open() = 0;
    // Whether its streams' finish_timed() gives the words' times.
    virtual bool times_words() const { return false; }
};

struct asr_config {
    std::string engine = "pocketsphinx"; // pocketsphinx, whisper, parakeet, none
    std::string model_dir;               // pocketsphinx: empty for Debian's pocketsphinx-en-us
    std::string model_path;              // whisper, parakeet: the model file
    std::string language = "en";
    int threads = 0;                // 0: the engine's choice
    int pool = 2;                   // decoders made at start, ready for the first sessions
    int partial_interval_ms = 1000; // engines that re-decode for partials: how often
    // Another server (OpenAI's /v1/audio/transcriptions) instead of an engine here.
    std::string url;
    std::string api_key;
    std::string remote_model; // the "model" field sent (empty: whisper-1)
    // PocketSphinx: the first pass alone with a narrowed search (less CPU, the transcript ready
    // as the utterance ends) instead of the engine's own full search and end-of-utterance
    // passes. It costs accuracy (docs/benchmarks.md), so it is off unless asked for.
    bool fast = false;
};

// Registers the recognisers' settings (--asr and its engines' options) in the option table.
void register_asr_options(option_table &t, asr_config &c);

// Throws asr_error with a one-line reason when the engine cannot load.
std::unique_ptr<asr_engine> make_asr_engine(const asr_config &config);

} // namespace parley
