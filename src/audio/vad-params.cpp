// The voice activity detector's settings (audio/vad.h), apart from the engines.
#include "audio/vad.h"

#include <algorithm>

namespace parley {

std::string vad_params::validate() const {
    if (engine != "silero" && engine != "energy")
        return "vad: unknown engine '" + engine + "' (silero, energy)";
    if (!(threshold > 0.0f && threshold < 1.0f))
        return "vad: threshold must be between 0 and 1 (exclusive)";
    if (neg_threshold >= 0.0f && neg_threshold > threshold)
        return "vad: neg_threshold must not exceed threshold";
    if (min_speech_ms < 0 || min_speech_ms > 10000) return "vad: min_speech_ms must be 0..10000";
    if (min_silence_ms < 0 || min_silence_ms > 10000) return "vad: min_silence_ms must be 0..10000";
    if (min_resume_ms < 0 || min_resume_ms > 10000) return "vad: min_resume_ms must be 0..10000";
    if (prefix_pad_ms < 0 || prefix_pad_ms > 5000) return "vad: prefix_pad_ms must be 0..5000";
    return "";
}

float vad_params::effective_neg_threshold() const {
    return neg_threshold >= 0.0f ? neg_threshold : std::max(0.01f, threshold - 0.15f);
}

} // namespace parley
