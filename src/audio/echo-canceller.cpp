// echo_canceller on webrtc-audio-processing 1.x (AEC3). Only this file sees its headers.
//
// Each 10 ms microphone frame is preceded by one 10 ms far-end frame (ProcessReverseStream),
// taken from the queue of audio sent to the client, or silence; render and capture then advance
// together, as on a device, and AEC3's delay estimator aligns the echo within its range.
#include "audio/echo-canceller.h"

#include <modules/audio_processing/include/audio_processing.h>

#include <algorithm>
#include <cmath>

namespace parley {

namespace {

void release_apm(webrtc::AudioProcessing *apm) {
    if (apm) apm->Release();
}

} // namespace

std::string echo_params::validate() const {
    if (sample_rate != 8000 && sample_rate != 16000 && sample_rate != 32000 && sample_rate != 48000)
        return "echo: sample rate " + std::to_string(sample_rate) +
               " Hz is not supported (8000, 16000, 32000, 48000)";
    if (noise_suppression_level < 0 || noise_suppression_level > 3)
        return "echo: noise_suppression_level must be 0..3";
    if (delay_hint_ms < 0 || delay_hint_ms > 1000) return "echo: delay_hint_ms must be 0..1000";
    if (max_far_queue_ms < 100) return "echo: max_far_queue_ms must be at least 100";
    return "";
}

echo_canceller::echo_canceller(const echo_params &params)
    : params_(params), apm_(nullptr, release_apm) {
    if (std::string err = params_.validate(); !err.empty()) throw echo_error(err);
    frame_ = size_t(params_.sample_rate / 100);
    far_frame_.resize(frame_);
    capture_delay_.assign(size_t(params_.sample_rate * ECHO_CAPTURE_DELAY_MS / 1000), 0);
    make_apm();
}

echo_canceller::~echo_canceller() = default;

void echo_canceller::make_apm() {
    webrtc::AudioProcessing *apm = webrtc::AudioProcessingBuilder().Create();
    if (!apm) throw echo_error("echo: cannot create WebRTC audio processing");
    apm->AddRef();
    apm_.reset(apm);

    webrtc::AudioProcessing::Config config;
    config.echo_canceller.enabled = true;
    config.echo_canceller.mobile_mode = false;
    config.echo_canceller.enforce_high_pass_filtering = params_.high_pass;
    config.high_pass_filter.enabled = params_.high_pass;
    config.noise_suppression.enabled = params_.noise_suppression;
    config.noise_suppression.level =
        webrtc::AudioProcessing::Config::NoiseSuppression::Level(params_.noise_suppression_level);
    config.gain_controller1.enabled = false;
    config.gain_controller2.enabled = false;
    config.transient_suppression.enabled = false;
    config.voice_detection.enabled = false;
    apm_->ApplyConfig(config);

    webrtc::StreamConfig stream(params_.sample_rate, 1);
    webrtc::ProcessingConfig processing = {{stream, stream, stream, stream}};
    if (int err = apm_->Initialize(processing); err != webrtc::AudioProcessing::kNoError)
        throw echo_error("echo: cannot initialise WebRTC audio processing (error " +
                         std::to_string(err) + ")");
}

void echo_canceller::far_end(std::span<const int16_t> pcm, int64_t lead_samples) {
    if (pcm.empty()) return;
    std::lock_guard lock(far_mutex_);
    // Microphone audio already captured but not yet processed precedes this sound's echo.
    if (far_queue_.empty() && lead_samples > 0)
        far_queue_.resize(size_t(std::min<int64_t>(lead_samples, params_.sample_rate)), 0);
    // A reply that starts after a pause reaches the speaker delay_hint_ms later (network, the
    // client's buffer): play it out that much later, leaving AEC3 only the rest to find.
    if (far_queue_.empty() && params_.delay_hint_ms > 0)
        far_queue_.resize(size_t(int64_t(params_.delay_hint_ms) * params_.sample_rate / 1000), 0);
    far_queue_.insert(far_queue_.end(), pcm.begin(), pcm.end());
    size_t max = size_t(int64_t(params_.max_far_queue_ms) * params_.sample_rate / 1000);
    if (far_queue_.size() > max)
        far_queue_.erase(far_queue_.begin(),
                         far_queue_.begin() + ptrdiff_t(far_queue_.size() - max));
}

void echo_canceller::clear_far_end() {
    std::lock_guard lock(far_mutex_);
    far_queue_.clear();
}

void echo_canceller::process_frame(int16_t *frame) {
    {
        std::lock_guard lock(far_mutex_);
        size_t n = std::min(frame_, far_queue_.size());
        std::copy(far_queue_.begin(), far_queue_.begin() + ptrdiff_t(n), far_frame_.begin());
        std::fill(far_frame_.begin() + ptrdiff_t(n), far_frame_.end(), int16_t(0));
        far_queue_.erase(far_queue_.begin(), far_queue_.begin() + ptrdiff_t(n));
        double sum = 0;
        for (int16_t x : far_frame_)
            sum += double(x) * x;
        far_levels_.push_back(float(std::sqrt(sum / double(frame_))));
        if (far_levels_.size() > 50) far_levels_.pop_front(); // the last 500 ms
    }
    webrtc::StreamConfig stream(params_.sample_rate, 1);
    // Errors here mean a misconfigured APM (the formats are fixed at construction): the audio
    // passes through unchanged rather than being lost.
    apm_->ProcessReverseStream(far_frame_.data(), stream, stream, far_frame_.data());
    apm_->set_stream_delay_ms(0); // the hint is applied to the far-end queue (far_end())
    apm_->ProcessStream(frame, stream, stream, frame);
    far_samples_ += int64_t(frame_);
    near_samples_ += int64_t(frame_);
}

std::vector<int16_t> echo_canceller::process(std::span<const int16_t> mic) {
    std::vector<int16_t> out;
    if (mic.empty()) return out;
    // The delay line: the last ECHO_CAPTURE_DELAY_MS of the microphone, then this call's audio
    // less as much at its end (kept for the next call).
    std::vector<int16_t> delayed(capture_delay_.size() + mic.size());
    std::copy(capture_delay_.begin(), capture_delay_.end(), delayed.begin());
    std::copy(mic.begin(), mic.end(), delayed.begin() + ptrdiff_t(capture_delay_.size()));
    std::copy(delayed.end() - ptrdiff_t(capture_delay_.size()), delayed.end(),
              capture_delay_.begin());
    std::span<const int16_t> near(delayed.data(), mic.size());
    out.reserve(near_pending_.size() + near.size());
    size_t i = 0;
    if (!near_pending_.empty()) {
        size_t take = std::min(frame_ - near_pending_.size(), near.size());
        near_pending_.insert(near_pending_.end(), near.begin(), near.begin() + ptrdiff_t(take));
        i = take;
        if (near_pending_.size() < frame_) return out;
        process_frame(near_pending_.data());
        out.insert(out.end(), near_pending_.begin(), near_pending_.end());
        near_pending_.clear();
    }
    for (; i + frame_ <= near.size(); i += frame_) {
        size_t at = out.size();
        out.insert(out.end(), near.begin() + ptrdiff_t(i), near.begin() + ptrdiff_t(i + frame_));
        process_frame(out.data() + at);
    }
    near_pending_.assign(near.begin() + ptrdiff_t(i), near.end());
    return out;
}

std::vector<int16_t> echo_canceller::flush() {
    if (near_pending_.empty()) return {};
    size_t n = near_pending_.size();
    near_pending_.resize(frame_, 0);
    process_frame(near_pending_.data());
    std::vector<int16_t> out(near_pending_.begin(), near_pending_.begin() + ptrdiff_t(n));
    near_pending_.clear();
    near_samples_ -= int64_t(frame_ - n); // count only what was given
    return out;
}

void echo_canceller::reset() {
    clear_far_end();
    near_pending_.clear();
    std::fill(capture_delay_.begin(), capture_delay_.end(), int16_t(0));
    far_samples_ = near_samples_ = 0;
    make_apm();
}

float echo_canceller::far_level() const {
    std::lock_guard lock(far_mutex_);
    float m = 0;
    for (float x : far_levels_)
        m = std::max(m, x);
    return m;
}

echo_stats echo_canceller::stats() const {
    echo_stats s;
    s.far_samples = far_samples_;
    s.near_samples = near_samples_;
    {
        std::lock_guard lock(far_mutex_);
        s.far_queued_ms = int(int64_t(far_queue_.size()) * 1000 / params_.sample_rate);
    }
    webrtc::AudioProcessingStats st = apm_->GetStatistics(/*has_remote_tracks=*/true);
    if (st.echo_return_loss_enhancement) s.erle_db = *st.echo_return_loss_enhancement;
    if (st.delay_ms) s.delay_ms = *st.delay_ms;
    return s;
}

} // namespace parley
