// Silero VAD v5 (ONNX Runtime) and an energy detector behind one streaming state machine.
//
// Silero v5: input [1, 64 + 512] float (the last 64 samples of the previous window, then the new
// window), state [2, 1, 128] float, sr int64 scalar; outputs "output" [1, 1] (speech probability)
// and "stateN" (the next state). This is how silero-vad's own OnnxWrapper and vad-web run it.
#include "audio/vad.h"

#include "core/log.h"
#include "core/onnx.h"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace parley {

namespace fs = std::filesystem;

namespace {

constexpr int SILERO_CONTEXT = 64;
constexpr int SILERO_STATE = 2 * 1 * 128;
constexpr const char *VAD_WEB_MODEL = "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx";

// --- Silero ---

class silero_model final : public vad_model {
  public:
    explicit silero_model(const std::string &path) : path_(path) {
        std::error_code ec;
        if (!fs::is_regular_file(path, ec))
            throw vad_error("vad: Silero model " + path + " not found");
        {
            std::ifstream f(path, std::ios::binary);
            char c = 0;
            // An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
            if (!f.get(c) || c != 0x08) throw vad_error("vad: " + path + " is not an ONNX model");
        }
        try {
            session_.emplace(onnx_open(path)); // one 32 ms window per call
        } catch (const std::exception &e) {
            throw vad_error("vad: cannot load Silero model " + path + ": " + e.what());
        }
        std::vector<std::string> in = onnx_input_names(*session_);
        std::vector<std::string> out = onnx_output_names(*session_);
        auto has = [](const std::vector<std::string> &v, const char *n) {
            return std::find(v.begin(), v.end(), n) != v.end();
        };
        if (!has(in, "input") || !has(in, "state") || !has(in, "sr") || !has(out, "output") ||
            !has(out, "stateN")) {
            std::string names;
            for (const auto &n : in)
                names += (names.empty() ? "" : ", ") + n;
            throw vad_error("vad: " + path +
                            " is not a Silero v5 model (expected inputs input, state, sr and "
                            "outputs output, stateN; it has inputs " +
                            (names.empty() ? "none" : names) + ")");
        }
    }

    std::string name() const override { return "silero"; }
    std::unique_ptr<vad_scorer> make_scorer() const override;

    // Thread-safe (ONNX Runtime's Run is); non-const in the C++ API.
    Ort::Session &session() const { return *session_; }
    const std::string &path() const { return path_; }

  private:
    std::string path_;
    mutable std::optional<Ort::Session> session_;
};

class silero_scorer final : public vad_scorer {
  public:
    explicit silero_scorer(const silero_model &model)
        : model_(model), mem_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)) {
        reset();
    }

    float score(std::span<const float> window) override {
        std::copy(window.begin(), window.end(), input_.begin() + SILERO_CONTEXT);
        const int64_t input_shape[2] = {1, int64_t(input_.size())};
        const int64_t state_shape[3] = {2, 1, 128};
        Ort::Value inputs[3] = {
            Ort::Value::CreateTensor<float>(mem_, input_.data(), input_.size(), input_shape, 2),
            Ort::Value::CreateTensor<float>(mem_, state_.data(), state_.size(), state_shape, 3),
            Ort::Value::CreateTensor<int64_t>(mem_, &sr_, 1, nullptr, 0),
        };
        static const char *in_names[3] = {"input", "state", "sr"};
        static const char *out_names[2] = {"output", "stateN"};
        float p = 0.0f;
        try {
            auto outputs =
                model_.session().Run(Ort::RunOptions{nullptr}, in_names, inputs, 3, out_names, 2);
            p = outputs[0].GetTensorData<float>()[0];
            const float *s = outputs[1].GetTensorData<float>();
            if (outputs[1].GetTensorTypeAndShapeInfo().GetElementCount() != state_.size())
                throw vad_error("vad: Silero model returned a state of the wrong size");
            std::copy(s, s + state_.size(), state_.begin());
        } catch (const Ort::Exception &e) {
            throw vad_error("vad: Silero inference failed: " + one_line(e.what()));
        }
        // The next window's context: the last 64 samples of this one.
        std::copy(input_.end() - SILERO_CONTEXT, input_.end(), input_.begin());
        return std::clamp(p, 0.0f, 1.0f);
    }

    void reset() override {
        input_.assign(SILERO_CONTEXT + VAD_WINDOW, 0.0f);
        state_.assign(SILERO_STATE, 0.0f);
    }

  private:
    const silero_model &model_;
    Ort::MemoryInfo mem_;
    std::vector<float> input_;
    std::vector<float> state_;
    int64_t sr_ = VAD_SAMPLE_RATE;
};

std::unique_ptr<vad_scorer> silero_model::make_scorer() const {
    return std::make_unique<silero_scorer>(*this);
}

// --- energy ---

constexpr float ENERGY_GATE_DB = -55.0f;     // quieter than this is silence
constexpr float ENERGY_INITIAL_MAX = -40.0f; // a stream that opens with speech starts here
constexpr float ENERGY_RISE_DB = 0.1f;       // floor rise per window (~3 dB/s)
constexpr float ENERGY_MID_SNR = 9.0f;       // probability 0.5
constexpr float ENERGY_SLOPE = 2.0f;         // dB per logistic unit

class energy_scorer final : public vad_scorer {
  public:
    float score(std::span<const float> window) override {
        double sum = 0;
        for (float x : window)
            sum += double(x) * x;
        float db = float(10.0 * std::log10(sum / double(window.size()) + 1e-12));
        if (!has_floor_) {
            floor_ = std::min(db, ENERGY_INITIAL_MAX);
            has_floor_ = true;
        } else if (db < floor_) {
            floor_ = db; // down at once: a pause shows the background
        } else {
            floor_ += std::min(db - floor_, ENERGY_RISE_DB); // up slowly: noise that got louder
        }
        if (db < ENERGY_GATE_DB) return 0.0f;
        float snr = db - std::max(floor_, ENERGY_GATE_DB - 10.0f);
        return float(1.0 / (1.0 + std::exp(-(snr - ENERGY_MID_SNR) / ENERGY_SLOPE)));
    }
    void reset() override { has_floor_ = false; }

  private:
    bool has_floor_ = false;
    float floor_ = 0.0f;
};

class energy_model final : public vad_model {
  public:
    std::string name() const override { return "energy"; }
    std::unique_ptr<vad_scorer> make_scorer() const override {
        return std::make_unique<energy_scorer>();
    }
};

std::string exe_dir() {
    std::error_code ec;
    fs::path p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : p.parent_path().string();
}

} // namespace

std::shared_ptr<vad_model> load_silero_vad(const std::string &path) {
    return std::make_shared<silero_model>(path);
}

std::shared_ptr<vad_model> make_energy_vad() {
    return std::make_shared<energy_model>();
}

std::string find_silero_model() {
    std::error_code ec;
    if (const char *env = std::getenv("PARLEY_VAD_MODEL"); env && *env) {
        if (fs::is_regular_file(env, ec)) return env;
        log_warn("vad: PARLEY_VAD_MODEL=%s does not exist; looking elsewhere", env);
    }
    fs::path here = fs::current_path(ec) / VAD_WEB_MODEL;
    if (!ec && fs::is_regular_file(here, ec)) return here.string();
    std::string dir = exe_dir();
    for (fs::path d = dir; !dir.empty(); d = d.parent_path()) {
        fs::path p = d / VAD_WEB_MODEL;
        if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
        if (d == d.parent_path()) break;
    }
    return "";
}

std::shared_ptr<vad_model> make_vad_model(const vad_params &params) {
    if (std::string err = params.validate(); !err.empty()) throw vad_error(err);
    if (params.engine == "energy") return make_energy_vad();
    if (!params.model_path.empty()) return load_silero_vad(params.model_path);
    std::string path = find_silero_model();
    if (path.empty()) {
        log_warn("vad: no Silero model (set PARLEY_VAD_MODEL, or run the setup to install %s); "
                 "using the energy detector",
                 VAD_WEB_MODEL);
        return make_energy_vad();
    }
    try {
        auto model = load_silero_vad(path);
        log_info("vad: Silero v5 from %s", path.c_str());
        return model;
    } catch (const vad_error &e) {
        log_warn("%s; using the energy detector", e.what());
        return make_energy_vad();
    }
}

// --- vad_stream ---

vad_stream::vad_stream(std::shared_ptr<const vad_model> model, const vad_params &params)
    : model_(std::move(model)), params_(params) {
    if (!model_) throw vad_error("vad: no model");
    if (std::string err = params_.validate(); !err.empty()) throw vad_error(err);
    scorer_ = model_->make_scorer();
    window_.reserve(VAD_WINDOW);
}

void vad_stream::set_params(const vad_params &params) {
    vad_params p = params;
    p.engine = params_.engine;
    p.model_path = params_.model_path;
    if (std::string err = p.validate(); !err.empty()) throw vad_error(err);
    params_ = p;
}

void vad_stream::reset() {
    scorer_->reset();
    window_.clear();
    position_ = scored_ = 0;
    probability_ = 0.0f;
    in_speech_ = false;
    candidate_start_ = silence_start_ = resume_start_ = -1;
    std::fill(std::begin(recent_), std::end(recent_), 0.0f);
    kept_.clear();
    kept_start_ = 0;
}

int vad_stream::trailing_silence_ms() const {
    if (!in_speech_ || silence_start_ < 0) return 0;
    return int((scored_ - silence_start_) * 1000 / VAD_SAMPLE_RATE);
}

int vad_stream::pending_speech_ms() const {
    if (in_speech_ || candidate_start_ < 0) return 0;
    return int((scored_ - candidate_start_) * 1000 / VAD_SAMPLE_RATE);
}

void vad_stream::keep_audio(std::span<const int16_t> pcm) {
    kept_.insert(kept_.end(), pcm.begin(), pcm.end());
    // Whatever this call brings plus the padding and the confirmation delay before it.
    size_t keep =
        size_t(ms_to_samples(params_.prefix_pad_ms + params_.min_speech_ms + 1000)) + pcm.size();
    // Trim in chunks so that a stream of small frames does not move the buffer every time.
    if (kept_.size() > keep + VAD_SAMPLE_RATE) {
        size_t drop = kept_.size() - keep;
        kept_.erase(kept_.begin(), kept_.begin() + ptrdiff_t(drop));
        kept_start_ += int64_t(drop);
    }
}

std::vector<int16_t> vad_stream::audio_since(int64_t from) const {
    from = std::clamp(from, kept_start_, position_);
    return {kept_.begin() + ptrdiff_t(from - kept_start_), kept_.end()};
}

std::vector<vad_event> vad_stream::process(std::span<const int16_t> pcm) {
    std::vector<vad_event> events;
    keep_audio(pcm);
    position_ += int64_t(pcm.size());
    for (int16_t s : pcm) {
        window_.push_back(float(s) / 32768.0f);
        if (window_.size() == size_t(VAD_WINDOW)) {
            score_window(events);
            window_.clear();
        }
    }
    // A started event's audio runs to the end of this call's input, so the session passes only
    // later frames to the ASR.
    for (vad_event &e : events) {
        if (e.type != VAD_EVENT_SPEECH_STARTED) continue;
        e.audio_start = std::max(kept_start_, e.sample - ms_to_samples(params_.prefix_pad_ms));
        e.audio = audio_since(e.audio_start);
    }
    return events;
}

void vad_stream::score_window(std::vector<vad_event> &events) {
    const int64_t start = scored_;
    const float previous = probability_;
    probability_ = scorer_->score(window_);
    scored_ += VAD_WINDOW;
    const float on = params_.threshold, off = params_.effective_neg_threshold();
    const float p = probability_;

    if (!in_speech_) {
        if (p >= on) {
            if (candidate_start_ < 0) {
                // Back over the rising edge: the model scores an onset a window or two late.
                candidate_start_ = start;
                const float back[3] = {previous, recent_[0], recent_[1]};
                for (int i = 0; i < 3 && candidate_start_ >= VAD_WINDOW && back[i] >= on / 3; ++i)
                    candidate_start_ -= VAD_WINDOW;
            }
        } else if (p < off) {
            candidate_start_ = -1; // a burst too short to be speech
        }
        if (candidate_start_ >= 0 &&
            scored_ - candidate_start_ >= ms_to_samples(params_.min_speech_ms)) {
            in_speech_ = true;
            silence_start_ = resume_start_ = -1;
            vad_event e;
            e.type = VAD_EVENT_SPEECH_STARTED;
            e.sample = candidate_start_;
            e.decided_sample = scored_;
            events.push_back(std::move(e));
            candidate_start_ = -1;
        }
    } else if (silence_start_ < 0) {
        if (p < off) silence_start_ = start; // a pause begins
    } else {
        // In a pause: only min_resume_ms of windows at or above the threshold cancel it (no
        // hysteresis here: noise that hovers around the threshold must not prolong a turn).
        if (p >= on) {
            if (resume_start_ < 0) resume_start_ = start;
        } else {
            resume_start_ = -1;
        }
        if (resume_start_ >= 0 && scored_ - resume_start_ >= ms_to_samples(params_.min_resume_ms)) {
            silence_start_ = resume_start_ = -1;
        } else if (scored_ - silence_start_ >= ms_to_samples(params_.min_silence_ms)) {
            vad_event e;
            e.type = VAD_EVENT_SPEECH_STOPPED;
            e.sample = silence_start_;
            e.decided_sample = scored_;
            events.push_back(std::move(e));
            in_speech_ = false;
            // A run under way may be the next utterance's start.
            candidate_start_ = resume_start_;
            silence_start_ = resume_start_ = -1;
        }
    }
    recent_[1] = recent_[0];
    recent_[0] = previous;
}

std::vector<vad_event> vad_stream::finish() {
    std::vector<vad_event> events;
    if (in_speech_) {
        vad_event e;
        e.type = VAD_EVENT_SPEECH_STOPPED;
        e.sample = silence_start_ >= 0 ? silence_start_ : position_;
        e.decided_sample = position_;
        events.push_back(std::move(e));
    }
    in_speech_ = false;
    candidate_start_ = silence_start_ = resume_start_ = -1;
    return events;
}

} // namespace parley
