#include "asr/asr.h"

#include "text/utf8.h"

#include <cctype>

namespace parley {

std::unique_ptr<asr_engine> make_asr_pocketsphinx(const asr_config &config);
std::unique_ptr<asr_engine> make_asr_whisper(const asr_config &config);
std::unique_ptr<asr_engine> make_asr_parakeet(const asr_config &config);
std::unique_ptr<asr_engine> make_asr_remote(const asr_config &config);

std::string bare_word(std::string word) {
    word = utf8_sanitize(word);
    auto punct = [](unsigned char c) { return c < 0x80 && !std::isalnum(c); };
    size_t b = 0, e = word.size();
    while (b < e && punct(word[b]))
        ++b;
    while (e > b && punct(word[e - 1]))
        --e;
    return word.substr(b, e - b);
}

std::unique_ptr<asr_engine> make_asr_engine(const asr_config &config) {
    if (!config.url.empty()) return make_asr_remote(config);
    if (config.engine == "pocketsphinx") return make_asr_pocketsphinx(config);
    if (config.engine == "whisper") return make_asr_whisper(config);
    if (config.engine == "parakeet") return make_asr_parakeet(config);
    if (config.engine == "audio-llm")
        throw asr_error("the audio-llm ASR is made from the language model (make_audio_llm_asr)");
    throw asr_error("unknown ASR engine '" + config.engine +
                    "' (available: pocketsphinx, whisper, parakeet, audio-llm)");
}

} // namespace parley
