#include "audio/audio-file.h"
#include "audio/resampler.h"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
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
    const char *from = f->out ? f->out->data() : f->in.data(); // writers read back too
    if (n > 0) std::memcpy(ptr, from + f->pos, size_t(n));
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
    if (info.frames > sf_count_t(info.samplerate) * AUDIO_FILE_MAX_SECONDS)
        throw audio_file_error("audio longer than " + std::to_string(AUDIO_FILE_MAX_SECONDS) +
                               " s");
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

} // namespace

pcm_audio parse_audio_file(std::string_view bytes) {
    memory_file mem{bytes, nullptr, 0};
    SF_INFO info{};
    sndfile_ptr f(sf_open_virtual(&memory_io, SFM_READ, &info, &mem));
    if (!f) { // a container libsndfile does not read
        std::string sndfile_error = sf_strerror(nullptr);
        if (!sndfile_error.empty() && sndfile_error.back() == '.') sndfile_error.pop_back();
        try {
            return ffmpeg_decode(bytes);
        } catch (const audio_file_error &e) {
            throw audio_file_error("unsupported or unreadable audio (libsndfile: " + sndfile_error +
                                   "; FFmpeg: " + e.what() + ")");
        }
    }
    return read_all(f.get(), info);
}

pcm_audio read_audio_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw audio_file_error(path + ": cannot be read");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw audio_file_error(path + ": cannot be read");
    try {
        return parse_audio_file(bytes);
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

std::string encode_audio(const std::vector<int16_t> &samples, int sample_rate,
                         const std::string &format) {
    if (format == "wav") return encode_wav(samples, sample_rate);
    if (format == "pcm")
        return std::string(reinterpret_cast<const char *>(samples.data()), samples.size() * 2);
    SF_INFO info{};
    info.channels = 1;
    info.samplerate = sample_rate;
    const std::vector<int16_t> *pcm = &samples;
    std::vector<int16_t> resampled;
    if (format == "flac") {
        info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    } else if (format == "mp3") {
        info.format = SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
    } else if (format == "opus") {
        info.format = SF_FORMAT_OGG | SF_FORMAT_OPUS; // Opus takes 8, 12, 16, 24 or 48 kHz
        if (sample_rate != 48000) {
            resampled = resample(samples, sample_rate, 48000);
            pcm = &resampled;
            info.samplerate = 48000;
        }
    } else {
        throw audio_file_error("unknown audio format '" + format + "' (wav, flac, mp3, opus, pcm)");
    }
    std::string bytes;
    memory_file mem{{}, &bytes, 0};
    sndfile_ptr f(sf_open_virtual(&memory_io, SFM_WRITE, &info, &mem));
    if (!f) throw audio_file_error("cannot encode " + format + ": " + sf_strerror(nullptr));
    if (sf_writef_short(f.get(), pcm->data(), sf_count_t(pcm->size())) != sf_count_t(pcm->size()))
        throw audio_file_error("cannot encode " + format + ": " + sf_strerror(f.get()));
    f.reset(); // finishes the stream
    return bytes;
}

std::string audio_mime_type(const std::string &format) {
    if (format == "wav") return "audio/wav";
    if (format == "flac") return "audio/flac";
    if (format == "mp3") return "audio/mpeg";
    if (format == "opus") return "audio/ogg; codecs=opus";
    return "audio/pcm";
}

void write_wav(const std::string &path, const std::vector<int16_t> &samples, int sample_rate) {
    std::string s = encode_wav(samples, sample_rate);
    std::ofstream f(path, std::ios::binary);
    if (!f) throw audio_file_error("cannot write " + path);
    f.write(s.data(), std::streamsize(s.size()));
    if (!f) throw audio_file_error("cannot write " + path);
}

} // namespace parley
