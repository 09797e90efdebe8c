// espeak-ng's one process-wide state, shared by every engine that calls libespeak-ng (the espeak
// engine speaks with it, the Piper engine phonemizes with it).
//
// Any thread may call espeak-ng, but only while it holds espeak_mutex(), and it initialises and
// picks voices only through these functions, so that two engines neither initialise the library
// twice nor lose track of which voice is selected:
//
//     std::lock_guard lock(espeak_mutex());
//     if (espeak_initialize_once() <= 0) ... // cannot initialise
//     if (!espeak_select_voice("en-us")) ... // unknown voice
//     ... espeak_TextToPhonemes / espeak_Synth ...
#pragma once

#include <mutex>
#include <string>
#include <string_view>

namespace parley {

std::mutex &espeak_mutex();

// Initialises espeak-ng on the first call (synchronous output, 100 ms buffer, the default data
// path); every call returns that first result: the sample rate (> 0), or <= 0 when espeak-ng
// cannot initialise. Hold espeak_mutex().
int espeak_initialize_once();

// The name to hand to espeak-ng for a voice a user asked for: "VOICE" or "VOICE+VARIANT", where
// VOICE is a voice's name, identifier or file name ("English (America)", "gmw/en-US", "en-us")
// and VARIANT a variant's name or file name ("m3", "Andy"), matched without regard to case
// against what espeak_ListVoices() reports. Empty when espeak-ng has no such voice or variant.
// Only names from espeak-ng's own lists come back: nothing of `requested` reaches the library
// (espeak-ng copies a variant name into a fixed buffer, and reads any file it is named).
// Hold espeak_mutex(), after a successful espeak_initialize_once().
std::string espeak_voice_name(std::string_view requested);

// Selects the voice unless it is already the selected one; false (and the previous voice kept)
// when espeak-ng does not know it (espeak_voice_name() is empty). Selecting a voice resets espeak-ng's speech parameters (rate
// and so on): `changed`, when given, tells the caller to set them again. Hold espeak_mutex().
bool espeak_select_voice(const std::string &name, bool *changed = nullptr);

} // namespace parley
