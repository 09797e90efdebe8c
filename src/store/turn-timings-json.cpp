#include "store/turn-timings-json.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace parley {

using json = nlohmann::json;

std::string turn_timings_json(const turn_timings &t) {
    auto r2 = [](double x) { return std::round(x * 100) / 100; };
    auto time = [&](std::optional<double> x) -> json { return x ? json(r2(*x)) : json(nullptr); };
    json j = {{"transcript_ms", time(t.transcript_ms)},
              {"first_token_ms", time(t.first_token_ms)},
              {"first_text_ms", time(t.first_text_ms)},
              {"first_audio_ms", time(t.first_audio_ms)},
              {"total_ms", time(t.total_ms)},
              {"llm_queue_ms", t.llm_queue_ms},
              {"llm_prompt_ms", t.llm_prompt_ms},
              {"prompt_tokens", t.prompt_tokens},
              {"cached_tokens", t.cached_tokens},
              {"generated_tokens", t.generated_tokens},
              {"llm_first_token_ms", t.llm_first_token_ms},
              {"llm_audio_ms", t.llm_audio_ms},
              {"audio_tokens", t.audio_tokens},
              {"llm_generate_ms", t.llm_generate_ms},
              {"asr_ms", r2(t.asr_ms)},
              {"tts_ms", t.tts_ms},
              {"tts_first_ms", t.tts_first_ms},
              {"tts_calls", t.tts_calls},
              {"audio_ms", t.audio_ms}};
    if (t.speech_end_before_ms >= 0) j["speech_end_ms"] = -std::round(t.speech_end_before_ms);
    if (t.speech_end_to_audio_ms >= 0) j["speech_end_to_audio_ms"] = r2(t.speech_end_to_audio_ms);
    if (t.load_asr_ms >= 0) {
        auto r1 = [](double x) { return std::round(x * 10) / 10; };
        j["load_ms"] = {
            {"asr", r1(t.load_asr_ms)}, {"llm", r1(t.load_llm_ms)}, {"tts", r1(t.load_tts_ms)}};
    }
    if (t.speculative) j["speculative"] = true;
    return j.dump();
}

} // namespace parley
