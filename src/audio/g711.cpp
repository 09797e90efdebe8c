#include "audio/g711.h"

#include <algorithm>

namespace parley {

namespace {

constexpr int MU_BIAS = 0x84; // 132: moves every segment's start off zero
constexpr int MU_CLIP = 32635;

// The segment (exponent) of a magnitude: the position of its highest bit above `shift`.
int segment_of(int magnitude, int shift) {
    int seg = 0;
    for (int v = magnitude >> shift; v > 1 && seg < 7; v >>= 1)
        seg++;
    return seg;
}

uint8_t mu_encode(int16_t s) {
    int v = s;
    int sign = v < 0 ? 0x80 : 0;
    int mag = std::min(v < 0 ? -v : v, MU_CLIP) + MU_BIAS;
    int seg = segment_of(mag, 7);
    int mantissa = (mag >> (seg + 3)) & 0x0F;
    return uint8_t(~(sign | (seg << 4) | mantissa));
}

int16_t mu_decode(uint8_t code) {
    int u = uint8_t(~code);
    int mag = (((u & 0x0F) << 3) + MU_BIAS) << ((u & 0x70) >> 4);
    return int16_t((u & 0x80) ? MU_BIAS - mag : mag - MU_BIAS);
}

uint8_t a_encode(int16_t s) {
    int v = s;
    int sign = v >= 0 ? 0x80 : 0;        // A-law: the sign bit is set for positive samples
    int mag = (v < 0 ? -v - 1 : v) >> 3; // 13 bits
    int code;
    if (mag < 32) {
        code = mag >> 1;
    } else {
        int seg = std::clamp(segment_of(mag, 4), 1, 7); // [16 << seg, 32 << seg)
        code = (seg << 4) | ((mag >> seg) & 0x0F);
    }
    return uint8_t((sign | code) ^ 0x55);
}

int16_t a_decode(uint8_t code) {
    int a = code ^ 0x55;
    int seg = (a & 0x70) >> 4;
    int mag = (a & 0x0F) << 4;
    if (seg == 0)
        mag += 8;
    else
        mag = (mag + 0x108) << (seg - 1);
    return int16_t((a & 0x80) ? mag : -mag);
}

} // namespace

int16_t g711_decode_sample(uint8_t code, g711_law law) {
    return law == G711_MU_LAW ? mu_decode(code) : a_decode(code);
}

uint8_t g711_encode_sample(int16_t sample, g711_law law) {
    return law == G711_MU_LAW ? mu_encode(sample) : a_encode(sample);
}

std::vector<int16_t> g711_decode(std::string_view bytes, g711_law law) {
    std::vector<int16_t> pcm(bytes.size());
    for (size_t i = 0; i < bytes.size(); i++)
        pcm[i] = g711_decode_sample(uint8_t(bytes[i]), law);
    return pcm;
}

std::string g711_encode(const std::vector<int16_t> &pcm, g711_law law) {
    std::string out(pcm.size(), '\0');
    for (size_t i = 0; i < pcm.size(); i++)
        out[i] = char(g711_encode_sample(pcm[i], law));
    return out;
}

} // namespace parley
