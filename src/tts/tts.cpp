#include "tts/tts.h"

#include <cctype>

namespace parley {

std::unique_ptr<tts_engine> make_tts_espeak();
std::unique_ptr<tts_engine> make_tts_piper(const tts_config &config);
std::unique_ptr<tts_engine> make_tts_remote(const tts_config &config);

std::unique_ptr<tts_engine> make_tts_engine(const tts_config &config) {
    if (config.engine != "none" && !config.url.empty()) return make_tts_remote(config);
    if (config.engine == "espeak") return make_tts_espeak();
    if (config.engine == "piper") return make_tts_piper(config);
    if (config.engine == "none") return nullptr;
    throw tts_error("unknown TTS engine '" + config.engine + "' (available: espeak, piper, none)");
}

bool tts_speakable(std::string_view text) {
    for (unsigned char c : text)
        if (std::isalnum(c) || c >= 0x80) return true;
    return false;
}

} // namespace parley
