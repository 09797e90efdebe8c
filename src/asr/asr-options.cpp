// The recognisers' settings in the option table.
#include "asr/asr.h"
#include "core/option-table.h"

namespace parley {

void register_asr_options(option_table &t, asr_config &c) {
    t.group("Speech recognition");
    t.add_choice("asr", c.engine, {"pocketsphinx", "whisper", "parakeet", "audio-llm", "none"},
                 "speech recognition engine (audio-llm: the language model hears the user, "
                 "with --mmproj)");
    t.add_string("asr-model", c.model_path, "FILE", "whisper or parakeet model file");
    t.add_string("asr-model-dir", c.model_dir, "DIR",
                 "pocketsphinx model folder (default: Debian's pocketsphinx-en-us)");
    t.add_string("asr-url", c.url, "URL",
                 "another server transcribes each utterance (OpenAI's /v1/audio/transcriptions: "
                 "another Parley, whisper-server...): http://HOST:PORT");
    t.add_string("asr-api-key", c.api_key, "KEY",
                 "bearer token for --asr-url (PARLEY_ASR_API_KEY keeps it out of ps)");
    t.add_string("asr-url-model", c.remote_model, "NAME",
                 "model name sent to --asr-url (default whisper-1)");
    t.add_string("asr-language", c.language, "LANG", "spoken language (whisper)");
    t.add_int("asr-threads", c.threads, 0, 256, "N", "recogniser threads (0: the engine's choice)",
              "0 (auto)..256");
    t.add_switch("asr-fast", c.fast,
                 "faster transcripts at a cost in accuracy (docs/benchmarks.md). PocketSphinx: "
                 "the live first pass is the transcript, no end-of-utterance decode (mean WER "
                 "0.39 against 0.27 on the LibriVox clips). Whisper: one greedy pass on an "
                 "encoder context cut to the utterance instead of whisper-cli's beam search on "
                 "the full 30 s context");
}

} // namespace parley
