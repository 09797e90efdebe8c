#include "tts/espeak-lock.h"

#include <espeak-ng/speak_lib.h>

#include <cstring>
#include <map>

namespace parley {

namespace {
bool initialised = false;
int init_result = 0;
std::string selected_voice;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

std::string_view file_name(std::string_view identifier) {
    size_t slash = identifier.rfind('/');
    return slash == std::string_view::npos ? identifier : identifier.substr(slash + 1);
}

// Lower-cased name, identifier, file name (and a voice's languages) of every voice (or variant)
// -> what to hand to espeak-ng: a voice's identifier, a variant's file name.
struct voice_index {
    std::map<std::string, std::string> voices, variants;
};

const voice_index &index() {
    static const voice_index idx = [] {
        voice_index x;
        for (const espeak_VOICE **v = espeak_ListVoices(nullptr); v && *v; ++v) {
            if (!(*v)->identifier) continue;
            std::string id = (*v)->identifier;
            x.voices.emplace(lower(id), id);
            x.voices.emplace(lower(file_name(id)), id);
            if ((*v)->name) x.voices.emplace(lower((*v)->name), id);
        }
        // Then the languages ("en-gb"; a priority byte, then the name, each; a zero byte ends
        // them), where no voice's own name is the same: the first voice listed for one has it.
        for (const espeak_VOICE **v = espeak_ListVoices(nullptr); v && *v; ++v)
            if ((*v)->identifier)
                for (const char *l = (*v)->languages; l && *l; l += std::strlen(l + 1) + 2)
                    x.voices.emplace(lower(l + 1), (*v)->identifier);
        espeak_VOICE spec;
        std::memset(&spec, 0, sizeof spec);
        spec.languages = "variant";
        for (const espeak_VOICE **v = espeak_ListVoices(&spec); v && *v; ++v) {
            if (!(*v)->identifier) continue;
            std::string file(file_name((*v)->identifier));
            x.variants.emplace(lower(file), file);
            if ((*v)->name) x.variants.emplace(lower((*v)->name), file);
        }
        return x;
    }();
    return idx;
}

} // namespace

std::string espeak_voice_name(std::string_view requested) {
    // Longer than any name espeak-ng lists: refused before any lookup.
    if (requested.empty() || requested.size() > 80) return {};
    const voice_index &idx = index();
    size_t plus = requested.find('+');
    auto voice = idx.voices.find(lower(requested.substr(0, plus)));
    if (voice == idx.voices.end()) return {};
    if (plus == std::string_view::npos) return voice->second;
    auto variant = idx.variants.find(lower(requested.substr(plus + 1)));
    if (variant == idx.variants.end()) return {};
    return voice->second + "+" + variant->second;
}

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
    std::string known = espeak_voice_name(name);
    if (known.empty()) return false;
    if (known == selected_voice) return true;
    if (espeak_SetVoiceByName(known.c_str()) != EE_OK) {
        if (!selected_voice.empty()) espeak_SetVoiceByName(selected_voice.c_str());
        return false;
    }
    selected_voice = known;
    if (changed) *changed = true;
    return true;
}

} // namespace parley
