#include "asr/asr-audio-llm.h"

#include "core/log.h"

#include <future>
#include <vector>

namespace parley {

namespace {

class asr_audio_llm_stream : public asr_stream {
  public:
    asr_audio_llm_stream(llm_engine &llm, int slot) : llm_(llm), slot_(slot) {}

    void accept(std::span<const int16_t> pcm16k) override {
        std::vector<float> f = pcm16_to_float(pcm16k);
        audio_.insert(audio_.end(), f.begin(), f.end());
    }

    std::string partial() override { return {}; }

    std::string finish() override {
        if (audio_.empty()) return {};
        llm_request req;
        req.slot = slot_;
        req.audio = std::move(audio_);
        audio_.clear();
        req.audio_mode = LLM_AUDIO_TRANSCRIBE;
        req.sampling.temperature = 0; // a transcript has one right answer
        req.sampling.repeat_penalty = 1.0f;
        // About 4 tokens a second of speech is plenty; bounded for runaway models.
        req.max_tokens = std::min(448, 32 + int(req.audio.size() / ASR_SAMPLE_RATE) * 8);
        auto done = std::make_shared<std::promise<llm_result>>();
        req.on_done = [done](const llm_result &r) { done->set_value(r); };
        llm_.submit(std::move(req));
        last_ = done->get_future().get();
        if (last_.stop_reason == LLM_STOP_ERROR) throw asr_error("audio-llm: " + last_.error);
        return last_.text;
    }

    const llm_result &last() const { return last_; }

  private:
    llm_engine &llm_;
    int slot_;
    std::vector<float> audio_;
    llm_result last_;
};

class asr_audio_llm : public asr_engine {
  public:
    explicit asr_audio_llm(llm_engine &llm) : llm_(llm) {
        if (!llm.supports_audio())
            throw asr_error("the audio-llm ASR needs a language model with an audio projector "
                            "(--mmproj FILE); " +
                            llm.name() + " has none");
        slot_ = llm.acquire_slot(); // -1 (all taken): transcriptions run without cache reuse
        log_info("asr: audio-llm on %s (slot %d)", llm.name().c_str(), slot_);
    }

    ~asr_audio_llm() override { llm_.release_slot(slot_); }

    std::string name() const override { return "audio-llm"; }

    std::unique_ptr<asr_stream> open() override {
        return std::make_unique<asr_audio_llm_stream>(llm_, slot_);
    }

  private:
    llm_engine &llm_;
    int slot_ = -1;
};

} // namespace

std::unique_ptr<asr_engine> make_audio_llm_asr(llm_engine &llm) {
    return std::make_unique<asr_audio_llm>(llm);
}

const llm_result &asr_audio_llm_last_result(const asr_stream &stream) {
    return static_cast<const asr_audio_llm_stream &>(stream).last();
}

} // namespace parley
