// Turn record: what a finished turn leaves behind. From a turn's account (its times and the
// engines' numbers) it makes the turn's timings, its record in the history (and the store), and
// the latency metrics. Pure functions; any thread.
#pragma once

#include "core/clock.h"
#include "llm/conversation.h"
#include "llm/llm.h"
#include "pipeline/session-events.h"

#include <cstdint>
#include <string>

namespace parley {

struct metrics;

// A turn's account, kept as it goes (times on the monotonic clock; mono_time{}: not reached).
struct turn_account {
    int64_t id = 0;
    std::string user;
    // t0: the end of the user's turn (hands-free: the detector's decision; push-to-talk: the
    // stop; typed: the message).
    mono_time t0, t_transcript, t_first_token, t_first_chunk, t_first_audio;
    llm_result llm;
    double tts_ms = 0;
    double tts_first_ms = 0;
    int tts_calls = 0;
    int audio_ms = 0;
    double asr_ms = 0;         // recognition work for this utterance
    double speech_end_ms = -1; // hands-free: the true end of speech, ms before t0
    bool speculative = false;  // started in a pause before the end of the turn
};

// The turn's timings at `done`; `stats` (may be null) gives the engines' load times.
turn_timings turn_timings_of(const turn_account &t, mono_time done, const metrics *stats);

// Its record for the history: the reply as generated (without surrounding space) or, when
// interrupted, the words heard.
turn_record turn_record_of(const turn_account &t, const turn_timings &timings, bool interrupted,
                           const std::string &heard);

// Counts a whole turn's latencies (an interrupted one is not counted).
void observe_turn(metrics &stats, const turn_account &t, const turn_timings &timings);

} // namespace parley
