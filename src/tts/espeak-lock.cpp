#include "tts/espeak-lock.h"

#include <espeak-ng/speak_lib.h>

namespace parley {

namespace {
bool initialised = false;
int init_result = 0;
std::string selected_voice;
} // namespace

std::mutex &espeak_mutex() {
    static std::mutex m;
    return m;
}

int espeak_initialize_once() {
    if (!initialised) {
        initialised = true;
        init_result = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 100, nullptr, 0);
    }
    return init_result;
}

bool espeak_select_voice(const std::string &name, bool *changed) {
    if (changed) *changed = false;
    if (name == selected_voice) return true;
    if (espeak_SetVoiceByName(name.c_str()) != EE_OK) {
        if (!selected_voice.empty()) espeak_SetVoiceByName(selected_voice.c_str());
        return false;
    }
    selected_voice = name;
    if (changed) *changed = true;
    return true;
}

} // namespace parley
