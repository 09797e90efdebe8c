// Speech by another server, over OpenAI's REST shape: each phrase is posted to
// URL/v1/audio/speech and comes back as WAV (another Parley, any compatible server). Word
// times are estimated from the text (each word's share of the letters).
#include "tts/tts.h"

#include "audio/audio-file.h"
#include "core/http-client.h"
#include "core/log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace parley {

std::unique_ptr<tts_engine> make_tts_remote(const tts_config &config);

namespace {

constexpr long TIMEOUT_MS = 60000;

// Words by spaces, times spread over the audio by their letters.
std::vector<tts_word> spread_words(std::string_view text, size_t samples, int rate) {
    std::vector<std::string> words;
    std::string w;
    for (char c : text) {
        if (c == ' ' || c == '\n' || c == '\t') {
            if (!w.empty()) words.push_back(std::move(w));
            w.clear();
        } else {
            w += c;
        }
    }
    if (!w.empty()) words.push_back(std::move(w));
    size_t letters = 0;
    for (const std::string &x : words)
        letters += x.size();
    std::vector<tts_word> out;
    if (letters == 0 || rate <= 0) return out;
    double total_ms = double(samples) * 1000 / rate, at = 0;
    for (const std::string &x : words) {
        double len = total_ms * double(x.size()) / double(letters);
        out.push_back({x, int(at), int(at + len)});
        at += len;
    }
    return out;
}

class tts_remote : public tts_engine {
  public:
    explicit tts_remote(const tts_config &c)
        : key_(c.api_key), model_(c.remote_model.empty() ? "tts-1" : c.remote_model) {
        std::string base = api_base(c.url);
        if (base.empty())
            throw tts_error("tts: --tts-url " + c.url + " is not an http:// or https:// URL");
        url_ = base + "/v1/audio/speech";
    }

    std::string name() const override { return "remote " + url_; }

    // A voice name the server may know: letters, digits, '-', '_', '.', at most 64.
    bool knows_voice(const std::string &voice) override {
        if (voice.empty() || voice.size() > 64) return false;
        return std::all_of(voice.begin(), voice.end(), [](unsigned char c) {
            return std::isalnum(c) || c == '-' || c == '_' || c == '.';
        });
    }

    // Asks the server once for a short phrase: its rate, or why it cannot speak.
    std::string check(const tts_params &params) override {
        if (!knows_voice(params.voice))
            return "voice '" + params.voice.substr(0, 64) + "' is not a voice name";
        std::lock_guard lock(m_);
        if (checked_ && error_.empty()) return {};
        try {
            tts_result r = request("Hello.", params);
            rate_ = r.sample_rate;
            error_.clear();
        } catch (const tts_error &e) {
            error_ = e.what();
        }
        checked_ = true;
        return error_;
    }

    int sample_rate() override {
        std::lock_guard lock(m_);
        return rate_;
    }

    tts_result synthesize(std::string_view text, const tts_params &params) override {
        if (!knows_voice(params.voice)) throw tts_error("not a voice name");
        tts_result r = request(text, params);
        std::lock_guard lock(m_);
        rate_ = r.sample_rate;
        return r;
    }

  private:
    tts_result request(std::string_view text, const tts_params &params) {
        double speed = std::clamp(params.rate_wpm / 175.0, 0.25, 4.0);
        nlohmann::json body = {{"model", model_},
                               {"input", std::string(text)},
                               {"voice", params.voice},
                               {"response_format", "wav"},
                               {"speed", speed}};
        http_reply r = http_call(
            url_, "application/json",
            body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), key_, TIMEOUT_MS);
        if (r.status != 200) throw tts_error("tts " + url_ + ": " + http_error_message(r));
        tts_result out;
        try {
            pcm_audio pcm = parse_audio_file(r.body);
            out.pcm = std::move(pcm.samples);
            out.sample_rate = pcm.sample_rate;
        } catch (const audio_file_error &e) {
            throw tts_error("tts " + url_ + ": the answer is not audio: " + e.what());
        }
        out.words = spread_words(text, out.pcm.size(), out.sample_rate);
        out.words_estimated = true;
        return out;
    }

    std::string url_, key_, model_;
    std::mutex m_;
    bool checked_ = false;
    std::string error_;
    int rate_ = 24000;
};

} // namespace

std::unique_ptr<tts_engine> make_tts_remote(const tts_config &config) {
    return std::make_unique<tts_remote>(config);
}

} // namespace parley
