// Audio in containers libsndfile does not read (WebM and Ogg from browsers' MediaRecorder,
// MP4/M4A from phones, AAC, ...), decoded with FFmpeg's libraries from memory.
#include "audio/audio-file.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

namespace parley {

namespace {

struct reader {
    std::string_view data;
    size_t pos = 0;
};

int read_packet(void *opaque, uint8_t *buf, int size) {
    auto *r = static_cast<reader *>(opaque);
    size_t n = std::min(size_t(size), r->data.size() - r->pos);
    if (n == 0) return AVERROR_EOF;
    std::memcpy(buf, r->data.data() + r->pos, n);
    r->pos += n;
    return int(n);
}

int64_t seek(void *opaque, int64_t offset, int whence) {
    auto *r = static_cast<reader *>(opaque);
    int64_t size = int64_t(r->data.size());
    if (whence & AVSEEK_SIZE) return size;
    int64_t base = 0;
    switch (whence & ~AVSEEK_FORCE) {
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = int64_t(r->pos);
        break;
    case SEEK_END:
        base = size;
        break;
    default:
        return AVERROR(EINVAL);
    }
    if (offset > size || offset < -size) return AVERROR(EINVAL);
    int64_t to = base + offset;
    if (to < 0 || to > size) return AVERROR(EINVAL);
    r->pos = size_t(to);
    return to;
}

std::string av_error(int err) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(err, buf, sizeof(buf));
    return buf;
}

struct io_ctx_free {
    void operator()(AVIOContext *c) const {
        av_freep(&c->buffer);
        avio_context_free(&c);
    }
};
struct format_free {
    void operator()(AVFormatContext *c) const { avformat_close_input(&c); }
};
struct codec_free {
    void operator()(AVCodecContext *c) const { avcodec_free_context(&c); }
};
struct swr_free_ {
    void operator()(SwrContext *c) const { swr_free(&c); }
};
struct frame_free {
    void operator()(AVFrame *f) const { av_frame_free(&f); }
};
struct packet_free {
    void operator()(AVPacket *p) const { av_packet_free(&p); }
};

} // namespace

pcm_audio ffmpeg_decode(std::string_view bytes) {
    static std::once_flag quiet;
    std::call_once(quiet, [] { av_log_set_level(AV_LOG_QUIET); });
    reader r{bytes, 0};
    constexpr int IO_BUFFER = 1 << 16;
    auto *buffer = static_cast<unsigned char *>(av_malloc(IO_BUFFER));
    if (!buffer) throw audio_file_error("out of memory");
    std::unique_ptr<AVIOContext, io_ctx_free> io(
        avio_alloc_context(buffer, IO_BUFFER, 0, &r, read_packet, nullptr, seek));
    if (!io) {
        av_free(buffer);
        throw audio_file_error("out of memory");
    }
    AVFormatContext *raw = avformat_alloc_context();
    if (!raw) throw audio_file_error("out of memory");
    raw->pb = io.get();
    raw->flags |= AVFMT_FLAG_CUSTOM_IO;
    if (int err = avformat_open_input(&raw, nullptr, nullptr, nullptr); err < 0)
        throw audio_file_error(av_error(err));
    std::unique_ptr<AVFormatContext, format_free> fmt(raw);
    if (int err = avformat_find_stream_info(fmt.get(), nullptr); err < 0)
        throw audio_file_error("unreadable audio (" + av_error(err) + ")");
    const AVCodec *codec = nullptr;
    int si = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (si < 0 || !codec) throw audio_file_error("no audio stream in the file");
    std::unique_ptr<AVCodecContext, codec_free> cc(avcodec_alloc_context3(codec));
    if (!cc || avcodec_parameters_to_context(cc.get(), fmt->streams[si]->codecpar) < 0)
        throw audio_file_error("unreadable audio stream");
    if (int err = avcodec_open2(cc.get(), codec, nullptr); err < 0)
        throw audio_file_error("cannot decode " + std::string(codec->name) + " (" + av_error(err) +
                               ")");
    int rate = cc->sample_rate;
    if (rate < 1000 || rate > 384000)
        throw audio_file_error("unsupported sample rate " + std::to_string(rate));
    if (cc->ch_layout.nb_channels < 1 || cc->ch_layout.nb_channels > 16)
        throw audio_file_error("unsupported channel count " +
                               std::to_string(cc->ch_layout.nb_channels));
    SwrContext *swr_raw = nullptr;
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    if (swr_alloc_set_opts2(&swr_raw, &mono, AV_SAMPLE_FMT_S16, rate, &cc->ch_layout,
                            cc->sample_fmt, rate, 0, nullptr) < 0 ||
        swr_init(swr_raw) < 0) {
        swr_free(&swr_raw);
        throw audio_file_error("cannot convert this audio's samples");
    }
    std::unique_ptr<SwrContext, swr_free_> swr(swr_raw);
    std::unique_ptr<AVFrame, frame_free> frame(av_frame_alloc());
    std::unique_ptr<AVPacket, packet_free> pkt(av_packet_alloc());
    if (!frame || !pkt) throw audio_file_error("out of memory");
    pcm_audio out;
    out.sample_rate = rate;
    const size_t max_samples = size_t(rate) * AUDIO_FILE_MAX_SECONDS;
    auto convert = [&](const uint8_t **in, int n) {
        int room = swr_get_out_samples(swr.get(), n);
        if (room <= 0) return;
        size_t at = out.samples.size();
        out.samples.resize(at + size_t(room));
        uint8_t *dst = reinterpret_cast<uint8_t *>(out.samples.data() + at);
        int got = swr_convert(swr.get(), &dst, room, in, n);
        out.samples.resize(at + size_t(std::max(got, 0)));
        if (out.samples.size() > max_samples)
            throw audio_file_error("audio longer than " + std::to_string(AUDIO_FILE_MAX_SECONDS) +
                                   " s");
    };
    auto drain = [&] {
        while (avcodec_receive_frame(cc.get(), frame.get()) == 0) {
            convert(const_cast<const uint8_t **>(frame->extended_data), frame->nb_samples);
            av_frame_unref(frame.get());
        }
    };
    while (av_read_frame(fmt.get(), pkt.get()) >= 0) {
        if (pkt->stream_index == si && avcodec_send_packet(cc.get(), pkt.get()) >= 0) drain();
        av_packet_unref(pkt.get());
    }
    avcodec_send_packet(cc.get(), nullptr);
    drain();
    convert(nullptr, 0); // what the converter still holds
    if (out.samples.empty()) throw audio_file_error("no audio could be decoded from the file");
    return out;
}

} // namespace parley
