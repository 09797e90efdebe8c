#include "audio/wav.h"

#include <cstring>
#include <fstream>
#include <iterator>

namespace parley {

namespace {

uint32_t le32(const char *p) {
    auto u = reinterpret_cast<const unsigned char *>(p);
    return u[0] | (u[1] << 8) | (u[2] << 16) | (uint32_t(u[3]) << 24);
}
uint16_t le16(const char *p) {
    auto u = reinterpret_cast<const unsigned char *>(p);
    return uint16_t(u[0] | (u[1] << 8));
}
void put32(std::string &s, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        s.push_back(char((v >> (8 * i)) & 0xFF));
}
void put16(std::string &s, uint16_t v) {
    s.push_back(char(v & 0xFF));
    s.push_back(char(v >> 8));
}

} // namespace

pcm_audio parse_wav(std::string_view b) {
    if (b.size() < 12 || b.substr(0, 4) != "RIFF" || b.substr(8, 4) != "WAVE")
        throw wav_error("not a RIFF/WAVE file");
    size_t pos = 12;
    int format = 0, channels = 0, rate = 0, bits = 0;
    bool have_fmt = false;
    while (pos + 8 <= b.size()) {
        std::string_view id = b.substr(pos, 4);
        uint32_t size = le32(b.data() + pos + 4);
        size_t body = pos + 8;
        if (id == "fmt ") {
            if (size < 16 || body + 16 > b.size()) throw wav_error("truncated fmt chunk");
            format = le16(b.data() + body);
            channels = le16(b.data() + body + 2);
            rate = int(le32(b.data() + body + 4));
            bits = le16(b.data() + body + 14);
            if (format == 0xFFFE && size >= 26) format = le16(b.data() + body + 24);
            have_fmt = true;
        } else if (id == "data") {
            if (!have_fmt) throw wav_error("data chunk before fmt chunk");
            if (channels < 1 || channels > 16) throw wav_error("unsupported channel count");
            if (rate < 1000 || rate > 384000) throw wav_error("unsupported sample rate");
            bool is_int = format == 1 && (bits == 8 || bits == 16 || bits == 24 || bits == 32);
            bool is_float = format == 3 && bits == 32;
            if (!is_int && !is_float)
                throw wav_error("unsupported WAV encoding (need PCM 8/16/24/32-bit or float32)");
            size_t avail = std::min<size_t>(size, b.size() - body);
            size_t frame = size_t(bits / 8) * channels;
            size_t frames = avail / frame;
            pcm_audio out;
            out.sample_rate = rate;
            out.samples.resize(frames);
            const char *p = b.data() + body;
            for (size_t f = 0; f < frames; ++f) {
                double acc = 0;
                for (int c = 0; c < channels; ++c, p += bits / 8) {
                    double v;
                    if (is_float) {
                        float x;
                        std::memcpy(&x, p, 4);
                        v = x;
                    } else if (bits == 8) {
                        v = (static_cast<unsigned char>(*p) - 128) / 128.0;
                    } else if (bits == 16) {
                        v = int16_t(le16(p)) / 32768.0;
                    } else if (bits == 24) {
                        auto u = reinterpret_cast<const unsigned char *>(p);
                        int32_t x = int32_t((uint32_t(u[0]) << 8) | (uint32_t(u[1]) << 16) |
                                            (uint32_t(u[2]) << 24)) >>
                                    8;
                        v = x / 8388608.0;
                    } else {
                        v = int32_t(le32(p)) / 2147483648.0;
                    }
                    acc += v;
                }
                double m = acc / channels * 32768.0;
                out.samples[f] = int16_t(std::max(-32768.0, std::min(32767.0, m)));
            }
            return out;
        }
        pos = body + size + (size & 1);
    }
    throw wav_error(have_fmt ? "no data chunk" : "no fmt chunk");
}

pcm_audio read_wav(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw wav_error("cannot open " + path);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    try {
        return parse_wav(bytes);
    } catch (const wav_error &e) {
        throw wav_error(path + ": " + e.what());
    }
}

std::string encode_wav(const std::vector<int16_t> &samples, int sample_rate) {
    std::string s;
    uint32_t data = uint32_t(samples.size() * 2);
    s.reserve(44 + data);
    s += "RIFF";
    put32(s, 36 + data);
    s += "WAVEfmt ";
    put32(s, 16);
    put16(s, 1);
    put16(s, 1);
    put32(s, uint32_t(sample_rate));
    put32(s, uint32_t(sample_rate * 2));
    put16(s, 2);
    put16(s, 16);
    s += "data";
    put32(s, data);
    for (int16_t v : samples)
        put16(s, uint16_t(v));
    return s;
}

void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate) {
    std::ofstream f(path, std::ios::binary);
    if (!f) throw wav_error("cannot write " + path);
    std::string s = encode_wav(samples, sample_rate);
    f.write(s.data(), std::streamsize(s.size()));
    if (!f) throw wav_error("cannot write " + path);
}

} // namespace parley
