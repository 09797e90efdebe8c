// PocketSphinx 5 engine: continuous decoding with the US-English acoustic model, the generic
// trigram language model and the CMU dictionary. Decoders are pooled: making one loads the
// language model (hundreds of ms), so streams borrow one and give it back.
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

class stream_pocketsphinx : public asr_stream {
  public:
    stream_pocketsphinx(asr_pocketsphinx *engine, ps_decoder_t *ps) : engine_(engine), ps_(ps) {}
    ~stream_pocketsphinx() override;

    void accept(std::span<const int16_t> pcm) override {
        if (!started_) {
            if (ps_start_utt(ps_) < 0) throw asr_error("pocketsphinx: cannot start utterance");
            started_ = true;
        }
        if (pcm.empty()) return;
        if (ps_process_raw(ps_, pcm.data(), pcm.size(), FALSE, FALSE) < 0)
            throw asr_error("pocketsphinx: decoding failed");
    }

    std::string partial() override {
        if (!started_) return {};
        const char *hyp = ps_get_hyp(ps_, nullptr);
        return hyp ? hyp : "";
    }

    bool partial_is_final() const override { return true; }

    std::string finish() override {
        if (!started_) return {};
        started_ = false;
        if (ps_end_utt(ps_) < 0) throw asr_error("pocketsphinx: cannot end utterance");
        const char *hyp = ps_get_hyp(ps_, nullptr);
        return hyp ? hyp : "";
    }

  private:
    asr_pocketsphinx *engine_;
    ps_decoder_t *ps_;
    bool started_ = false;
};

class asr_pocketsphinx : public asr_engine {
  public:
    explicit asr_pocketsphinx(const asr_config &config) {
        std::string dir = config.model_dir.empty()
                              ? std::string("/usr/share/pocketsphinx/model/en-us")
                              : config.model_dir;
        hmm_ = dir + "/en-us";
        lm_ = dir + "/en-us.lm.bin";
        dict_ = dir + "/cmudict-en-us.dict";
        for (const std::string *p : {&hmm_, &lm_, &dict_})
            if (!file_exists(*p)) throw asr_error("pocketsphinx: model file missing: " + *p);
        err_set_loglevel(ERR_WARN);
        for (int i = 0; i < config.pool; ++i)
            free_.push_back(make_decoder());
    }

    ~asr_pocketsphinx() override {
        for (ps_decoder_t *ps : free_)
            ps_free(ps);
    }

    std::string name() const override { return "pocketsphinx"; }

    std::unique_ptr<asr_stream> open() override {
        ps_decoder_t *ps = nullptr;
        {
            std::lock_guard lock(m_);
            if (!free_.empty()) {
                ps = free_.back();
                free_.pop_back();
            }
        }
        if (!ps) ps = make_decoder();
        return std::make_unique<stream_pocketsphinx>(this, ps);
    }

    void give_back(ps_decoder_t *ps) {
        std::lock_guard lock(m_);
        if (free_.size() < 8) {
            free_.push_back(ps);
        } else {
            ps_free(ps);
        }
    }

  private:
    ps_decoder_t *make_decoder() {
        ps_config_t *cfg = ps_config_init(nullptr);
        ps_config_set_str(cfg, "hmm", hmm_.c_str());
        ps_config_set_str(cfg, "lm", lm_.c_str());
        ps_config_set_str(cfg, "dict", dict_.c_str());
        ps_config_set_str(cfg, "loglevel", "ERROR");
        ps_config_set_int(cfg, "samprate", ASR_SAMPLE_RATE);
        // The first pass alone: the final hypothesis is ready as soon as the utterance ends
        // (the second passes cost hundreds of ms at the end and, on the LibriVox clips, gave
        // no better word error rate).
        ps_config_set_bool(cfg, "fwdflat", FALSE);
        ps_config_set_bool(cfg, "bestpath", FALSE);
        // Narrower search: 2.3x less CPU per second of audio (0.34 -> 0.15 of one core here),
        // so four live streams fit on two cores, at the same word error rate on the clips.
        ps_config_set_int(cfg, "topn", 2);
        ps_config_set_int(cfg, "maxhmmpf", 3000);
        ps_config_set_int(cfg, "maxwpf", 10);
        ps_decoder_t *ps = ps_init(cfg);
        ps_config_free(cfg);
        if (!ps) throw asr_error("pocketsphinx: cannot load the model in " + hmm_);
        return ps;
    }

    std::string hmm_, lm_, dict_;
    std::mutex m_;
    std::vector<ps_decoder_t *> free_;
};

stream_pocketsphinx::~stream_pocketsphinx() {
    if (started_) ps_end_utt(ps_);
    engine_->give_back(ps_);
}

} // namespace

std::unique_ptr<asr_engine> make_asr_pocketsphinx(const asr_config &config) {
    return std::make_unique<asr_pocketsphinx>(config);
}

} // namespace parley
