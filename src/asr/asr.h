// Speech recognition engines.
//
// An asr_engine is shared by all sessions; open() (thread-safe) gives each utterance stream its
// own decoder. An asr_stream is used from one thread at a time: accept() 16 kHz mono PCM as it
// arrives (decoding runs incrementally, so finish() only has the last few frames left), read
// partial() while the user speaks, and finish() at the end of the utterance. After finish() the
// stream is ready for the next utterance.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

namespace parley {

constexpr int ASR_SAMPLE_RATE = 16000;

struct asr_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class asr_stream {
  public:
    virtual ~asr_stream() = default;
    virtual void accept(std::span<const int16_t> pcm16k) = 0;
    virtual std::string partial() = 0;
    virtual std::string finish() = 0;
};

class asr_engine {
  public:
    virtual ~asr_engine() = default;
    virtual std::string name() const = 0;
    virtual std::unique_ptr<asr_stream> open() = 0;
};

struct asr_config {
    std::string engine = "pocketsphinx";
    std::string model_dir; // empty: the engine's default (Debian's pocketsphinx-en-us)
    int pool = 2;          // decoders made at start, ready for the first sessions
};

// Throws asr_error with a one-line reason when the engine cannot load.
std::unique_ptr<asr_engine> make_asr_engine(const asr_config &config);

} // namespace parley
