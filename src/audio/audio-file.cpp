#include "audio/audio-file.h"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>

namespace parley {

namespace {

// libsndfile's virtual I/O over bytes in memory (read) or a growing string (write).
struct memory_file {
    std::string_view in;
    std::string *out = nullptr;
    sf_count_t pos = 0;
    sf_count_t size() const { return out ? sf_count_t(out->size()) : sf_count_t(in.size()); }
};

sf_count_t mem_length(void *user) {
    return static_cast<memory_file *>(user)->size();
}

sf_count_t mem_seek(sf_count_t offset, int whence, void *user) {
    auto *f = static_cast<memory_file *>(user);
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f->pos : f->size();
    f->pos = std::max<sf_count_t>(0, base + offset);
    return f->pos;
}

sf_count_t mem_read(void *ptr, sf_count_t count, void *user) {
    auto *f = static_cast<memory_file *>(user);
    sf_count_t n = std::clamp<sf_count_t>(f->size() - f->pos, 0, count);
    if (n > 0) std::memcpy(ptr, f->in.data() + f->pos, size_t(n));
    f->pos += n;
    return n;
}

sf_count_t mem_write(const void *ptr, sf_count_t count, void *user) {
    auto *f = static_cast<memory_file *>(user);
    if (!f->out) return 0;
    if (size_t(f->pos + count) > f->out->size()) f->out->resize(size_t(f->pos + count));
    std::memcpy(f->out->data() + f->pos, ptr, size_t(count));
    f->pos += count;
    return count;
}

sf_count_t mem_tell(void *user) {
    return static_cast<memory_file *>(user)->pos;
}

SF_VIRTUAL_IO memory_io = {mem_length, mem_seek, mem_read, mem_write, mem_tell};

struct close_sndfile {
    void operator()(SNDFILE *f) const { sf_close(f); }
};
using sndfile_ptr = std::unique_ptr<SNDFILE, close_sndfile>;

pcm_audio read_all(SNDFILE *f, const SF_INFO &info) {
    if (info.channels < 1 || info.channels > 16)
        throw audio_file_error("unsupported channel count " + std::to_string(info.channels));
    if (info.samplerate < 1000 || info.samplerate > 384000)
        throw audio_file_error("unsupported sample rate " + std::to_string(info.samplerate));
    pcm_audio out;
    out.sample_rate = info.samplerate;
    std::vector<float> block(4096 * size_t(info.channels));
    while (true) {
        sf_count_t n = sf_readf_float(f, block.data(), 4096);
        if (n <= 0) break;
        for (sf_count_t i = 0; i < n; i++) {
            double acc = 0;
            for (int c = 0; c < info.channels; c++)
                acc += block[size_t(i) * size_t(info.channels) + size_t(c)];
            double v = std::lround(acc / info.channels * 32768.0);
            out.samples.push_back(int16_t(std::clamp(v, -32768.0, 32767.0)));
        }
    }
    return out;
}

std::string unreadable(SNDFILE *f) {
    return std::string("unsupported or unreadable audio (") + sf_strerror(f) + ")";
}

} // namespace

pcm_audio parse_audio_file(std::string_view bytes) {
    memory_file mem{bytes, nullptr, 0};
    SF_INFO info{};
    sndfile_ptr f(sf_open_virtual(&memory_io, SFM_READ, &info, &mem));
    if (!f) throw audio_file_error(unreadable(nullptr));
    return read_all(f.get(), info);
}

pcm_audio read_audio_file(const std::string &path) {
    SF_INFO info{};
    sndfile_ptr f(sf_open(path.c_str(), SFM_READ, &info));
    if (!f) throw audio_file_error(path + ": " + unreadable(nullptr));
    try {
        return read_all(f.get(), info);
    } catch (const audio_file_error &e) {
        throw audio_file_error(path + ": " + e.what());
    }
}

std::string encode_wav(const std::vector<int16_t> &samples, int sample_rate) {
    std::string bytes;
    memory_file mem{{}, &bytes, 0};
    SF_INFO info{};
    info.samplerate = sample_rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    sndfile_ptr f(sf_open_virtual(&memory_io, SFM_WRITE, &info, &mem));
    if (!f) throw audio_file_error("cannot encode WAV: " + std::string(sf_strerror(nullptr)));
    if (sf_writef_short(f.get(), samples.data(), sf_count_t(samples.size())) !=
        sf_count_t(samples.size()))
        throw audio_file_error("cannot encode WAV: " + std::string(sf_strerror(f.get())));
    f.reset(); // finishes the header
    return bytes;
}

void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate) {
    std::string s = encode_wav(samples, sample_rate);
    std::ofstream f(path, std::ios::binary);
    if (!f) throw audio_file_error("cannot write " + path);
    f.write(s.data(), std::streamsize(s.size()));
    if (!f) throw audio_file_error("cannot write " + path);
}

} // namespace parley
