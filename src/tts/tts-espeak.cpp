// espeak-ng through libespeak-ng in synchronous mode. The library has one global state, shared
// with the Piper engine's phonemizer: every call holds espeak_mutex() (tts/espeak-lock.h).
#include "tts/tts.h"

#include "core/log.h"
#include "tts/espeak-lock.h"

#include <espeak-ng/speak_lib.h>

#include <mutex>

namespace parley {

namespace {

struct synth_sink {
    std::vector<int16_t> *pcm;
    std::vector<tts_word> *words;
    std::string_view text;
    int sample_rate;
};

int on_synth(short *wav, int n, espeak_EVENT *events) {
    if (!events) return 0;
    auto *sink = static_cast<synth_sink *>(events->user_data);
    if (!sink) return 0;
    if (wav && n > 0) sink->pcm->insert(sink->pcm->end(), wav, wav + n);
    for (espeak_EVENT *e = events; e->type != espeakEVENT_LIST_TERMINATED; ++e) {
        if (e->type != espeakEVENT_WORD) continue;
        tts_word w;
        // text_position is 1-based, in characters; with UTF-8 input espeak counts bytes of
        // multi-byte characters as one character, so map by walking the text.
        size_t want = size_t(e->text_position > 0 ? e->text_position - 1 : 0);
        size_t byte = 0, chars = 0;
        while (byte < sink->text.size() && chars < want) {
            unsigned char c = static_cast<unsigned char>(sink->text[byte]);
            byte += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            ++chars;
        }
        size_t end = byte;
        size_t left = size_t(e->length > 0 ? e->length : 0);
        while (end < sink->text.size() && left > 0) {
            unsigned char c = static_cast<unsigned char>(sink->text[end]);
            end += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            --left;
        }
        if (byte < sink->text.size()) w.text = std::string(sink->text.substr(byte, end - byte));
        w.start_ms = e->audio_position;
        if (!sink->words->empty() && sink->words->back().end_ms == 0)
            sink->words->back().end_ms = w.start_ms;
        sink->words->push_back(std::move(w));
    }
    return 0;
}

class tts_espeak : public tts_engine {
  public:
    std::string name() const override { return "espeak-ng"; }

    std::string check(const tts_params &params) override {
        std::lock_guard lock(espeak_mutex());
        if (!init_locked()) return init_error_;
        return select_locked(params);
    }

    bool knows_voice(const std::string &voice) override {
        std::lock_guard lock(espeak_mutex());
        if (!init_locked()) return true;
        return !espeak_voice_name(voice).empty();
    }

    int sample_rate() override {
        std::lock_guard lock(espeak_mutex());
        init_locked();
        return rate_;
    }

    tts_result synthesize(std::string_view text, const tts_params &params) override {
        std::lock_guard lock(espeak_mutex());
        if (!init_locked()) throw tts_error(init_error_);
        if (std::string err = select_locked(params); !err.empty()) throw tts_error(err);
        tts_result out;
        out.sample_rate = rate_;
        std::string buf(text);
        synth_sink sink{&out.pcm, &out.words, text, rate_};
        espeak_ERROR rc = espeak_Synth(buf.c_str(), buf.size() + 1, 0, POS_CHARACTER, 0,
                                       espeakCHARS_UTF8, nullptr, &sink);
        if (rc != EE_OK)
            throw tts_error("espeak-ng: synthesis failed (" + std::to_string(rc) + ")");
        int total_ms = int(out.pcm.size() * 1000 / size_t(rate_));
        for (tts_word &w : out.words)
            if (w.end_ms == 0 || w.end_ms < w.start_ms) w.end_ms = total_ms;
        return out;
    }

  private:
    bool init_locked() {
        if (initialised_) return init_error_.empty();
        initialised_ = true;
        int rate = espeak_initialize_once();
        if (rate <= 0) {
            init_error_ = "espeak-ng: cannot initialise (is espeak-ng-data installed?)";
            log_error("%s", init_error_.c_str());
            return false;
        }
        rate_ = rate;
        espeak_SetSynthCallback(on_synth);
        return true;
    }

    // The voice and rate are set on every call: espeak-ng's state is shared with other engines
    // (Piper phonemizes with it), so what this engine set last time may have changed.
    std::string select_locked(const tts_params &params) {
        if (!espeak_select_voice(params.voice))
            return "espeak-ng: unknown voice '" + params.voice.substr(0, 64) + "'";
        if (params.rate_wpm < 80 || params.rate_wpm > 450)
            return "espeak-ng: rate must be 80..450 words per minute";
        espeak_SetParameter(espeakRATE, params.rate_wpm, 0);
        return {};
    }

    bool initialised_ = false;
    std::string init_error_;
    int rate_ = 22050;
};

} // namespace

std::unique_ptr<tts_engine> make_tts_espeak() {
    return std::make_unique<tts_espeak>();
}

} // namespace parley
