// The engine a configuration names (each engine's own file makes it).
#include "tts/tts.h"

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

} // namespace parley
