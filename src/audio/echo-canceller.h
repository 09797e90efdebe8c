// Server-side acoustic echo cancellation (WebRTC AEC3 from Debian's webrtc-audio-processing),
// for clients that play Parley's reply on a speaker and send their microphone without echo
// cancellation of their own.
//
//     echo_canceller aec;                        // per session, 16 kHz mono
//     aec.far_end(reply_pcm_16k);                // the reply audio, as it is sent to the client
//     auto clean = aec.process(mic_pcm_16k);     // every microphone frame, before the VAD/ASR
//     aec.clear_far_end();                       // on barge-in: the client dropped its queue
//
// Pacing: far_end() may be given a whole phrase at once (TTS runs faster than real time). The
// canceller queues it and plays it out 10 ms per 10 ms of microphone audio, as the client's
// speaker does; the delay between that and the echo in the microphone (network, the client's
// buffers, the room) is found by AEC3's delay estimator: up to 480 ms (tested; its range is about
// 500 ms less the delay line below), more with delay_hint_ms. When the queue is empty, silence is the far end.
//
// Frames of any size; internally 10 ms. process() returns the cleaned samples of every whole
// 10 ms frame received so far, so a call may return up to 159 samples fewer or more than it was
// given; over a stream, output sample i belongs to input sample i. The audio itself comes out
// ECHO_LATENCY_MS later (20 ms at 16 kHz): a VAD on the cleaned stream sees speech that much
// later than on the raw microphone. 8 ms of it is AEC3's block framing; 12 ms (three AEC3
// blocks) is a delay line on the microphone, so that the echo reaches AEC3 at least that long
// after the sound that made it. AEC3 handles an echo closer than about 10 ms badly: with none at
// all (a client that mixes what it plays straight into what it sends) its delay estimator could
// lock onto a wrong delay of ~300 ms and stop cancelling; after the user has spoken, an echo
// 0-5 ms after its sound passed uncancelled for 100-300 ms at the start of a reply (measured: a
// 4 ms line, half of such replies; 8 ms, a third; 10 and 12 ms, none; test-echo.cpp keeps both
// cases). A real speaker and microphone add their own delay on top.
//
// Thread-safety: far_end() and clear_far_end() may be called from any thread (they lock);
// process(), flush(), reset() and stats() from the session's one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace webrtc {
class AudioProcessing;
}

namespace parley {

constexpr int ECHO_CAPTURE_DELAY_MS = 12; // the microphone's delay line (see above)
constexpr int ECHO_LATENCY_MS = 8 + ECHO_CAPTURE_DELAY_MS; // with AEC3's block framing, at 16 kHz

struct echo_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct echo_params {
    int sample_rate = 16000;         // of both streams: 8000, 16000, 32000 or 48000
    bool noise_suppression = false;  // WebRTC's NS after the AEC (off: the VAD/ASR see the voice)
    int noise_suppression_level = 1; // 0 low .. 3 very high
    bool high_pass = true;           // 80 Hz high-pass, as AEC3 recommends (off: the near talker
                                     // passes untouched when there is no echo)
    int delay_hint_ms = 0;           // known delay from sending to playing (client buffer): a reply
                           // after a pause is played out this much later; AEC3 finds the rest
    int max_far_queue_ms = 60000; // far-end audio queued beyond this is dropped (oldest first)

    std::string validate() const;
};

struct echo_stats {
    int64_t far_samples = 0;  // far-end samples played out so far
    int64_t near_samples = 0; // near-end samples processed
    int far_queued_ms = 0;    // far-end audio waiting to be played out
    double erle_db = 0;       // AEC3's linear-filter ERLE estimate (its suppressor removes more)
    int delay_ms = -1;        // AEC3's echo delay estimate while there is echo (0/-1: none yet)
};

class echo_canceller {
  public:
    // Throws echo_error for invalid params or when the APM cannot be made.
    explicit echo_canceller(const echo_params &params = {});
    ~echo_canceller();
    echo_canceller(const echo_canceller &) = delete;
    echo_canceller &operator=(const echo_canceller &) = delete;

    // The audio sent to the client for playback (at sample_rate). Any thread.
    // lead_samples: microphone audio the client captured before this sound started playing
    // that process() has not seen yet (it was in flight or queued); when nothing is queued, the
    // sound starts that much later in the far-end stream, so its echo lines up (at most 1 s).
    void far_end(std::span<const int16_t> pcm, int64_t lead_samples = 0);
    // The client dropped its queued audio (barge-in, interrupt): forget the unplayed far end.
    void clear_far_end();

    // Microphone audio (at sample_rate) in, echo-cancelled audio out (see above). Empty in,
    // whatever whole frames are ready out (usually nothing).
    std::vector<int16_t> process(std::span<const int16_t> mic);
    // The last partial frame, cancelled (padded internally), so the output length equals the
    // input length. For the end of a stream.
    std::vector<int16_t> flush();
    // A fresh canceller (new call, new client): filters, queues and counters.
    void reset();

    echo_stats stats() const;
    // The loudest far-end 10 ms frame (RMS) played out in the last 500 ms: how loud the echo
    // can be now.
    float far_level() const; // session thread (AEC3's statistics are read with the capture)
    const echo_params &params() const { return params_; }

  private:
    void process_frame(int16_t *frame);
    void make_apm();

    echo_params params_;
    size_t frame_ = 0; // samples per 10 ms
    std::unique_ptr<webrtc::AudioProcessing, void (*)(webrtc::AudioProcessing *)> apm_;

    mutable std::mutex far_mutex_;
    std::deque<int16_t> far_queue_;
    std::deque<float> far_levels_;

    std::vector<int16_t> capture_delay_; // the microphone's last ECHO_CAPTURE_DELAY_MS
    std::vector<int16_t> near_pending_;  // less than a frame
    std::vector<int16_t> far_frame_;
    int64_t far_samples_ = 0, near_samples_ = 0;
};

} // namespace parley
