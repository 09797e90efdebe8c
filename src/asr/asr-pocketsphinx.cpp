// PocketSphinx 5 engine: the US-English acoustic model, the generic trigram language model and
// the CMU dictionary. Decoders are pooled: making one loads the language model (hundreds of ms),
// so streams borrow one and give it back.
#include "asr/asr-pool.h"
#include "asr/asr.h"

#include "core/log.h"

#include <pocketsphinx.h>

#include <mutex>
#include <sys/stat.h>
#include <vector>

namespace parley {

std::unique_ptr<asr_engine> make_asr_pocketsphinx(const asr_config &config);

namespace {

bool file_exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

class asr_pocketsphinx;

// Two decoders per stream. The live one decodes as the audio arrives, with a narrow first-pass
// search, for partial transcripts. The whole one decodes the finished utterance in one call, the
// way `pocketsphinx single` decodes a file: the engine's full search and end-of-utterance passes,
// and the cepstral mean of the whole utterance, which the live decoder can only estimate as it
// goes (its first words suffer). That is the transcript, never less accurate than the engine's
// own. With asr_config::fast the live decoder's hypothesis is the transcript instead.
class stream_pocketsphinx : public asr_stream {
  public:
    stream_pocketsphinx(asr_pocketsphinx *engine, ps_decoder_t *live, bool fast)
        : engine_(engine), live_(live), fast_(fast) {}
    ~stream_pocketsphinx() override;

    void accept(std::span<const int16_t> pcm) override {
        if (!started_) {
            if (ps_start_utt(live_) < 0) throw asr_error("pocketsphinx: cannot start utterance");
            started_ = true;
        }
        if (pcm.empty()) return;
        if (!fast_) audio_.insert(audio_.end(), pcm.begin(), pcm.end());
        if (ps_process_raw(live_, pcm.data(), pcm.size(), FALSE, FALSE) < 0)
            throw asr_error("pocketsphinx: decoding failed");
    }

    std::string partial() override {
        if (!started_) return {};
        const char *hyp = ps_get_hyp(live_, nullptr);
        return hyp ? hyp : "";
    }

    // Fast: the live hypothesis is the transcript, and it has seen every frame.
    bool partial_is_final() const override { return fast_; }

    std::string finish() override { return finish_deferred()(); }

    std::string finish_timed(std::vector<asr_word> *words) override {
        words->clear();
        if (!started_) return {};
        started_ = false;
        if (ps_end_utt(live_) < 0) throw asr_error("pocketsphinx: cannot end utterance");
        if (fast_) {
            const char *hyp = ps_get_hyp(live_, nullptr);
            *words = words_of(live_);
            return hyp ? hyp : "";
        }
        std::vector<int16_t> audio = std::move(audio_);
        audio_.clear();
        return decode_whole(engine_, audio, words);
    }

    std::function<std::string()> finish_deferred() override {
        if (!started_) return [] { return std::string(); };
        started_ = false;
        if (ps_end_utt(live_) < 0) throw asr_error("pocketsphinx: cannot end utterance");
        if (fast_) {
            const char *hyp = ps_get_hyp(live_, nullptr);
            return [text = std::string(hyp ? hyp : "")] { return text; };
        }
        auto audio = std::make_shared<std::vector<int16_t>>(std::move(audio_));
        audio_.clear();
        return [engine = engine_, audio] { return decode_whole(engine, *audio, nullptr); };
    }

    std::function<std::string()> end_pass_so_far() override {
        if (fast_ || !started_) return {};
        auto audio = std::make_shared<std::vector<int16_t>>(audio_);
        return [engine = engine_, audio] { return decode_whole(engine, *audio, nullptr); };
    }

    void drop() override {
        if (started_) ps_end_utt(live_);
        started_ = false;
        audio_.clear();
    }

  private:
    static std::string decode_whole(asr_pocketsphinx *engine, const std::vector<int16_t> &audio,
                                    std::vector<asr_word> *words);
    static std::vector<asr_word> words_of(ps_decoder_t *ps);

    asr_pocketsphinx *engine_;
    ps_decoder_t *live_;
    bool fast_;
    bool started_ = false;
    std::vector<int16_t> audio_; // the utterance so far (not fast)
};

class asr_pocketsphinx : public asr_engine {
  public:
    explicit asr_pocketsphinx(const asr_config &config) : fast_(config.fast) {
        std::string dir = config.model_dir.empty()
                              ? std::string("/usr/share/pocketsphinx/model/en-us")
                              : config.model_dir;
        hmm_ = dir + "/en-us";
        lm_ = dir + "/en-us.lm.bin";
        dict_ = dir + "/cmudict-en-us.dict";
        for (const std::string *p : {&hmm_, &lm_, &dict_})
            if (!file_exists(*p)) throw asr_error("pocketsphinx: model file missing: " + *p);
        err_set_loglevel(ERR_WARN);
        live_.fill(config.pool);
        if (!fast_) whole_.fill(config.pool);
    }

    std::string name() const override { return "pocketsphinx"; }
    bool times_words() const override { return true; }

    std::unique_ptr<asr_stream> open() override {
        return std::make_unique<stream_pocketsphinx>(this, borrow(true), fast_);
    }

    // A decoder from the pool (made when the pool is empty); give it back when done.
    ps_decoder_t *borrow(bool live) { return live ? live_.take() : whole_.take(); }
    void give_back(ps_decoder_t *ps, bool live) { (live ? live_ : whole_).give_back(ps); }

  private:
    // live: the narrowed first pass alone (about 2.3x less CPU per second of audio than the
    // engine's own search; its hypothesis is ready as the utterance ends). Otherwise the
    // engine's defaults, as its own command line runs them.
    ps_decoder_t *make_decoder(bool live) {
        ps_config_t *cfg = ps_config_init(nullptr);
        ps_config_set_str(cfg, "hmm", hmm_.c_str());
        ps_config_set_str(cfg, "lm", lm_.c_str());
        ps_config_set_str(cfg, "dict", dict_.c_str());
        ps_config_set_str(cfg, "loglevel", "ERROR");
        ps_config_set_int(cfg, "samprate", ASR_SAMPLE_RATE);
        if (live) {
            ps_config_set_bool(cfg, "fwdflat", FALSE);
            ps_config_set_bool(cfg, "bestpath", FALSE);
            ps_config_set_int(cfg, "topn", 2);
            ps_config_set_int(cfg, "maxhmmpf", 3000);
            ps_config_set_int(cfg, "maxwpf", 10);
        }
        ps_decoder_t *ps = ps_init(cfg);
        ps_config_free(cfg);
        if (!ps) throw asr_error("pocketsphinx: cannot load the model in " + hmm_);
        return ps;
    }

    bool fast_;
    std::string hmm_, lm_, dict_;
    decoder_pool<ps_decoder_t> live_{[this] { return make_decoder(true); },
                                     [](ps_decoder_t *ps) { ps_free(ps); }};
    decoder_pool<ps_decoder_t> whole_{[this] { return make_decoder(false); },
                                      [](ps_decoder_t *ps) { ps_free(ps); }};
};

// The words of the decoder's last hypothesis, as ps_get_hyp() writes them: the sentence marks,
// silences and noises (the filler dictionary's words, written <...>, [...] or +...+) left out,
// and a word's alternative pronunciation ("read(2)") under its base spelling.
std::vector<asr_word> stream_pocketsphinx::words_of(ps_decoder_t *ps) {
    std::vector<asr_word> out;
    double frate = double(ps_config_int(ps_get_config(ps), "frate"));
    if (frate <= 0) frate = 100;
    for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
        std::string word = ps_seg_word(seg);
        if (word.empty() || word[0] == '<' || word[0] == '[' || word[0] == '+') continue;
        if (size_t open = word.find('(');
            open != std::string::npos && open > 0 && word.back() == ')')
            word.resize(open);
        int sf = 0, ef = 0;
        ps_seg_frames(seg, &sf, &ef);
        out.push_back({std::move(word), sf / frate, (ef + 1) / frate});
    }
    return out;
}

std::string stream_pocketsphinx::decode_whole(asr_pocketsphinx *engine,
                                              const std::vector<int16_t> &audio,
                                              std::vector<asr_word> *words) {
    if (audio.empty()) return {};
    ps_decoder_t *ps = engine->borrow(false);
    std::string text;
    bool ok = ps_start_utt(ps) >= 0;
    ok = ok && ps_process_raw(ps, audio.data(), audio.size(), FALSE, TRUE) >= 0;
    ok = ps_end_utt(ps) >= 0 && ok;
    if (ok) {
        const char *hyp = ps_get_hyp(ps, nullptr);
        text = hyp ? hyp : "";
        if (words) *words = words_of(ps);
    }
    engine->give_back(ps, false);
    if (!ok) throw asr_error("pocketsphinx: decoding failed");
    return text;
}

stream_pocketsphinx::~stream_pocketsphinx() {
    if (started_) ps_end_utt(live_);
    engine_->give_back(live_, true);
}

} // namespace

std::unique_ptr<asr_engine> make_asr_pocketsphinx(const asr_config &config) {
    return std::make_unique<asr_pocketsphinx>(config);
}

} // namespace parley
