// G.711 (ITU-T): 8-bit mu-law and A-law telephone audio, 8 kHz, one byte a sample, to and
// from 16-bit linear PCM. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parley {

enum g711_law {
    G711_MU_LAW, // audio/pcmu (North America, Japan)
    G711_A_LAW,  // audio/pcma (elsewhere)
};

int16_t g711_decode_sample(uint8_t code, g711_law law);
uint8_t g711_encode_sample(int16_t sample, g711_law law);

std::vector<int16_t> g711_decode(std::string_view bytes, g711_law law);
std::string g711_encode(const std::vector<int16_t> &pcm, g711_law law);

} // namespace parley
