#include "tts/tts.h"

#include <cctype>

namespace parley {

bool tts_speakable(std::string_view text) {
    for (unsigned char c : text)
        if (std::isalnum(c) || c >= 0x80) return true;
    return false;
}

} // namespace parley
