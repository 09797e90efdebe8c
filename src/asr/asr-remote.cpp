// Speech recognition by another server, over OpenAI's REST shape: each finished utterance is
// posted as a 16 kHz WAV to URL/v1/audio/transcriptions (another Parley, whisper-server with
// --inference-path /v1/audio/transcriptions, any compatible server). No partial transcripts:
// the words arrive when the utterance ends.
#include "asr/asr.h"

#include "audio/audio-file.h"
#include "core/http-client.h"
#include "core/log.h"
#include "text/utf8.h"

#include <nlohmann/json.hpp>

#include <memory>

namespace parley {

std::unique_ptr<asr_engine> make_asr_remote(const asr_config &config);

namespace {

constexpr size_t MIN_SAMPLES = ASR_SAMPLE_RATE / 10; // under 100 ms: nothing to send
constexpr long TIMEOUT_MS = 120000;

class asr_remote;

std::string transcribe(const std::string &url, const std::string &key, const std::string &model,
                       const std::vector<int16_t> &pcm) {
    if (pcm.size() < MIN_SAMPLES) return {};
    std::string type;
    std::string body =
        multipart_body({{"model", model}, {"response_format", "json"}}, "utterance.wav",
                       "audio/wav", encode_wav(pcm, ASR_SAMPLE_RATE), &type);
    http_reply r = http_call(url, type, body, key, TIMEOUT_MS, 1u << 20);
    if (r.status != 200) throw asr_error("asr " + url + ": " + http_error_message(r));
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        throw asr_error("asr " + url + ": the answer has no text");
    std::string text = utf8_sanitize(j["text"].get<std::string>());
    size_t b = text.find_first_not_of(" \t\r\n"), e = text.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
}

class stream_remote : public asr_stream {
  public:
    stream_remote(std::string url, std::string key, std::string model)
        : url_(std::move(url)), key_(std::move(key)), model_(std::move(model)) {}

    void accept(std::span<const int16_t> pcm) override {
        pcm_.insert(pcm_.end(), pcm.begin(), pcm.end());
    }
    std::string partial() override { return {}; }
    std::string finish() override { return finish_deferred()(); }
    // The request runs in the job: the stream takes the next utterance at once.
    std::function<std::string()> finish_deferred() override {
        auto pcm = std::make_shared<std::vector<int16_t>>(std::move(pcm_));
        pcm_.clear();
        return [url = url_, key = key_, model = model_, pcm] {
            return transcribe(url, key, model, *pcm);
        };
    }
    void drop() override { pcm_.clear(); }

  private:
    std::string url_, key_, model_;
    std::vector<int16_t> pcm_;
};

class asr_remote : public asr_engine {
  public:
    explicit asr_remote(const asr_config &c)
        : key_(c.api_key), model_(c.remote_model.empty() ? "whisper-1" : c.remote_model) {
        std::string base = api_base(c.url);
        if (base.empty())
            throw asr_error("asr: --asr-url " + c.url + " is not an http:// or https:// URL");
        url_ = base + "/v1/audio/transcriptions";
        log_info("asr: utterances go to %s", url_.c_str());
    }
    std::string name() const override { return "remote " + url_; }
    std::unique_ptr<asr_stream> open() override {
        return std::make_unique<stream_remote>(url_, key_, model_);
    }

  private:
    std::string url_, key_, model_;
};

} // namespace

std::unique_ptr<asr_engine> make_asr_remote(const asr_config &config) {
    return std::make_unique<asr_remote>(config);
}

} // namespace parley
