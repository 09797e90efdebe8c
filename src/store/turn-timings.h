// A turn's timings: what the session measures, the store keeps and a protocol reports.
#pragma once

#include <optional>

namespace parley {

// Where a turn's time went, in ms from the end of the user's turn (t0: hands-free, the
// detector's decision; push-to-talk, the stop; typed, the message). A reply started in a pause
// may have its first token before t0 (a negative time).
struct turn_timings {
    std::optional<double> transcript_ms, first_token_ms, first_text_ms, first_audio_ms, total_ms;
    // The language model's account (llm_result).
    double llm_queue_ms = 0, llm_prompt_ms = 0, llm_first_token_ms = 0, llm_audio_ms = 0,
           llm_generate_ms = 0;
    int prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, audio_tokens = 0;
    double asr_ms = 0; // recognition work for the utterance
    double tts_ms = 0, tts_first_ms = 0;
    int tts_calls = 0;
    int audio_ms = 0; // of reply audio sent
    // Hands-free: the end of speech, this long before t0 (negative: not known).
    double speech_end_before_ms = -1;
    // What the user waited: from the end of their speech to the first sound (negative: none).
    double speech_end_to_audio_ms = -1;
    // The engines' load times (negative: not counted).
    double load_asr_ms = -1, load_llm_ms = -1, load_tts_ms = -1;
    bool speculative = false; // the reply started in a pause, before the end of the turn
};

} // namespace parley
