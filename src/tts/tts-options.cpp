// The speech engines' settings in the option table.
#include "core/option-table.h"
#include "tts/tts.h"

namespace parley {

void register_tts_options(option_table &t, tts_config &c, tts_params &session_voice) {
    t.group("Speech output");
    t.add_choice("tts", c.engine, {"espeak", "piper", "none"},
                 "speech output engine (none: text-only replies)");
    t.add_string("tts-model", c.model_path, "VOICE.onnx",
                 "piper voice (with VOICE.onnx.json beside it)");
    t.add_string("tts-url", c.url, "URL",
                 "another server speaks each phrase (OpenAI's /v1/audio/speech: another "
                 "Parley...): http://HOST:PORT");
    t.add_string("tts-api-key", c.api_key, "KEY",
                 "bearer token for --tts-url (PARLEY_TTS_API_KEY keeps it out of ps)");
    t.add_string("tts-url-model", c.remote_model, "NAME",
                 "model name sent to --tts-url (default tts-1)");
    option_spec voice;
    voice.name = "voice";
    voice.value = "NAME";
    voice.help = "espeak-ng voice sessions start with";
    voice.fallback = session_voice.voice;
    voice.set = [&c, &session_voice](const std::string &v) -> std::string {
        session_voice.voice = c.defaults.voice = v;
        return {};
    };
    t.add(std::move(voice));
    t.add_int("rate", session_voice.rate_wpm, 80, 450, "WPM", "speaking rate, words per minute");
    auto set_rate = t.last().set;
    t.last().set = [&c, &session_voice, set_rate](const std::string &v) -> std::string {
        std::string err = set_rate(v);
        c.defaults.rate_wpm = session_voice.rate_wpm;
        return err;
    };
    t.last().check = [&session_voice]() -> std::string {
        return session_voice.rate_wpm < 80 || session_voice.rate_wpm > 450
                   ? "rate must be 80..450 words per minute"
                   : "";
    };
}

} // namespace parley
