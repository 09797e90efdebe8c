#include "pipeline/turn-record.h"

#include "core/metrics.h"
#include "store/turn-timings-json.h"

#include <algorithm>
#include <chrono>

namespace parley {

turn_timings turn_timings_of(const turn_account &t, mono_time done, const metrics *stats) {
    auto since = [&](mono_time x) -> std::optional<double> {
        if (x == mono_time{}) return std::nullopt;
        return ms_between(t.t0, x);
    };
    turn_timings tt;
    tt.transcript_ms = since(t.t_transcript);
    tt.first_token_ms = since(t.t_first_token);
    tt.first_text_ms = since(t.t_first_chunk);
    tt.first_audio_ms = since(t.t_first_audio);
    tt.total_ms = since(done);
    tt.llm_queue_ms = t.llm.queue_ms;
    tt.llm_prompt_ms = t.llm.prompt_ms;
    tt.prompt_tokens = t.llm.prompt_tokens;
    tt.cached_tokens = t.llm.cached_tokens;
    tt.generated_tokens = t.llm.generated_tokens;
    tt.llm_first_token_ms = t.llm.first_token_ms;
    tt.llm_audio_ms = t.llm.audio_ms;
    tt.audio_tokens = t.llm.audio_tokens;
    tt.llm_generate_ms = t.llm.generate_ms;
    tt.asr_ms = t.asr_ms;
    tt.tts_ms = t.tts_ms;
    tt.tts_first_ms = t.tts_first_ms;
    tt.tts_calls = t.tts_calls;
    tt.audio_ms = t.audio_ms;
    tt.speech_end_before_ms = t.speech_end_ms;
    // What the user waits: from the end of their speech (hands-free: the VAD's end of speech,
    // before the decision; push-to-talk: the release; typed: the message) to the first sound.
    if (t.t_first_audio != mono_time{})
        tt.speech_end_to_audio_ms =
            std::max(0.0, t.speech_end_ms) + ms_between(t.t0, t.t_first_audio);
    if (stats) {
        tt.load_asr_ms = stats->asr_load_ms.load();
        tt.load_llm_ms = stats->llm_load_ms.load();
        tt.load_tts_ms = stats->tts_load_ms.load();
    }
    tt.speculative = t.speculative;
    return tt;
}

turn_record turn_record_of(const turn_account &t, const turn_timings &timings, bool interrupted,
                           const std::string &heard) {
    turn_record rec;
    rec.turn_id = t.id;
    rec.user = t.user;
    rec.assistant = interrupted ? heard : t.llm.text;
    // Keep spacing as generated when the whole reply went out.
    if (!interrupted) {
        size_t b = rec.assistant.find_first_not_of(" \n\t");
        size_t e = rec.assistant.find_last_not_of(" \n\t");
        rec.assistant = b == std::string::npos ? "" : rec.assistant.substr(b, e - b + 1);
    }
    rec.interrupted = interrupted;
    rec.timings_json = turn_timings_json(timings);
    rec.created_ms = unix_ms();
    return rec;
}

void observe_turn(metrics &stats, const turn_account &t, const turn_timings &tt) {
    auto observe = [&](latency_histogram &h, mono_time x) {
        if (x != mono_time{}) h.observe(ms_between(t.t0, x));
    };
    observe(stats.transcript, t.t_transcript);
    observe(stats.first_token, t.t_first_token);
    observe(stats.first_text, t.t_first_chunk);
    observe(stats.first_audio, t.t_first_audio);
    if (tt.total_ms) stats.total.observe(*tt.total_ms);
    if (tt.speech_end_to_audio_ms >= 0) stats.speech_end_to_audio.observe(tt.speech_end_to_audio_ms);
}

} // namespace parley
