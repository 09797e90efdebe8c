// A conversation session: the voice pipeline for one connected client, in typed inputs and
// events (session-events.h); a protocol codec in src/net/ turns its wire messages into these.
//
// Threads. The session is an actor: its state belongs to one queue of tasks (actor.h) on the
// sessions' pool (actor_pool::sessions(), one thread per core), and no other thread touches it.
//   - The inputs (open, start, audio, stop, text, interrupt, playback, reject) are called by
//     the codec, one at a time (its network thread). They check what the input side knows (a
//     start came, a recording is open, its rate) and post the rest; interrupts and playback
//     reports go ahead of the audio queued before them. They never wait on a model.
//   - The LLM calls back on its worker: the turn's phrase chunker and the "pause after the
//     first phrase" flag live there (turn::llm_side); whole phrases and the end are posted.
//   - Speech is made on the shared TTS worker from values copied into its task; the result
//     is posted back. The recogniser's end-of-utterance passes run on an actor of the
//     end-pass pool and post their transcript back.
// So there is no lock on the conversation's state: the session's own mutexes guard only the
// door (the actors, closed or not) and its id (for logs on any thread). Events go to the
// session_sink in protocol order: for each phrase one reply_chunk_event with its text and
// (has_audio) its audio. close() shuts the door, waits for a running task, then cancels the
// turn and frees the KV slot; call it exactly once, when the connection ends.
#pragma once

#include "asr/asr.h"
#include "audio/vad.h"
#include "core/clock.h"
#include "llm/conversation.h"
#include "llm/llm.h"
#include "pipeline/playout.h"
#include "pipeline/session-events.h"
#include "text/phrase-chunker.h"
#include "tts/tts.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace parley {

class worker;
class actor;
class actor_pool;
class option_table;
class store;
class session_directory;
class slot_queue;
class resampler;
class echo_canceller;
struct metrics;

struct session_engines {
    asr_engine *asr = nullptr; // null: no speech input
    llm_engine *llm = nullptr; // null: no model (transcription still works)
    tts_engine *tts = nullptr; // null: text-only replies
    worker *tts_worker = nullptr;
    store *db = nullptr;                   // null: history in memory only
    session_directory *sessions = nullptr; // null: no check that one connection holds a session
    metrics *stats = nullptr;              // null: not counted
    std::shared_ptr<const vad_model> vad;  // hands-free turn-taking; null: the energy detector
    // Where the sessions' queues run (null: actor_pool::sessions() and end_passes()).
    actor_pool *session_pool = nullptr;
    actor_pool *end_pass_pool = nullptr;
    // The LLM's slots handed out in order (null: a session without one shares a slot-less
    // sequence).
    slot_queue *slots = nullptr;
};

// Server-side echo cancellation of hands-free input.
enum echo_mode {
    ECHO_MODE_AUTO, // for clients that say they have none ("echo_cancellation": false)
    ECHO_MODE_ON,
    ECHO_MODE_OFF,
};

struct session_config {
    std::string system_prompt =
        "You are Parley, a friendly voice assistant. Answer in one or two short sentences.";
    sampling_params sampling;
    int max_tokens = 128;
    tts_params tts;
    int audio_out_rate = 22050; // sample rate of the audio sent to clients
    int partial_interval_ms = 300;
    // Wait for the ASR engine's end-of-utterance pass before the transcript is final (slower;
    // the reply still starts speculatively at stop). Off: the first pass's hypothesis over all
    // the audio is final.
    bool asr_final_pass = false;
    // While the user speaks, evaluate history + partial transcript into the KV cache so that
    // at stop only the last words are left to evaluate.
    bool prefill_while_speaking = true;
    phrase_chunker_params chunker;

    // Hands-free (start with "mode": "hands_free"): the VAD's defaults (a client's start may
    // override threshold and timings), and what counts as barging in.
    vad_params vad;
    // Speech during a reply (including audio still playing at the client) that lasts this long
    // interrupts it; shorter sounds (a click, a cough) do not.
    int barge_in_ms = 96;
    // A user's turn longer than this is ended there (turn_too_long), with the transcript so far.
    int max_turn_seconds = 120;
    // Start the reply when the user has been silent this long and the partial transcript is
    // stable; it is sent only when the turn really ends with the same words (0: off).
    int speculative_silence_ms = 200;
    // Server-side echo cancellation of hands-free input: "auto" (when the client says it has
    // none: start with "echo_cancellation": false), "on", "off".
    echo_mode echo = ECHO_MODE_AUTO;
    // With an audio-LLM (an LLM that supports_audio() and no separate ASR engine): "direct"
    // sends the utterance's audio to the model, which writes the transcript and then the reply
    // in one pass.
    bool direct_audio = false;
    // A finished user turn starts a reply by itself (off: it waits for respond()).
    bool auto_respond = true;
    // Speech over a reply cuts it.
    bool interrupt_on_speech = true;
    // Function calling (session_settings::tools).
    std::vector<tool_spec> tools;
    std::string tool_grammar;
    // A reply cut by a sound that turned out not to be words (a cough) goes on from where it
    // was cut (off: it stays cut).
    bool resume_after_false_start = true;
};

// Registers the conversation's settings (replies, sampling, hands-free turn-taking) in the
// option table.
void register_session_options(option_table &t, session_config &c);

// Audio ahead of real time that a session takes (seconds), and then how much faster than real
// time it may come.
constexpr double AUDIO_BURST_S = 60;
constexpr double AUDIO_SPEED_MAX = 10;

class session : public std::enable_shared_from_this<session> {
  public:
    session(const session_engines &engines, const session_config &config,
            std::shared_ptr<session_sink> out);
    ~session();

    // Sends `ready` with a new session id (or resumes `resume_id` when it exists).
    void open(const std::string &resume_id = {});
    void start(const session_start &p);
    void audio(std::vector<int16_t> pcm); // at the start's sample rate
    void stop(mono_time t_stop);
    void text(std::string text, mono_time t0);
    void interrupt(mono_time now);
    void playback(const playback_report &r);
    void configure(const session_settings &s);
    // Adds a message to the conversation without replying.
    void add_message(message_role role, std::string text);
    // Starts a reply to the conversation so far (after the transcript of an utterance that
    // has ended, when one is still being recognised).
    void respond(response_request r, mono_time t0);
    // The reply `turn_id` was heard up to `heard` (the client cut it there): it stops if it is
    // still going, and the history keeps those words.
    void truncate(int64_t turn_id, std::string heard);
    // Takes words out of the conversation: the reply of turn `turn_id` (assistant; turn -1: the
    // assistant's words `text` that add_message gave), or the user message `text` from that
    // turn, or from the messages still waiting for a reply (turn 0).
    void forget(int64_t turn_id, std::string text, bool assistant);
    // An input the codec refused: reported as an error event (and counted).
    void reject(const std::string &code, const std::string &message);
    void close();

    std::string id() const;
    // Any thread: the store was made anew (its file was removed), or may take what it refused:
    // the session writes what it has not saved (all of its history for a new database).
    void store_changed();
    // Any thread: the server is going down. Once no reply is being written (the one in
    // progress finished and stored), the client gets a server_draining error (reconnect: the
    // conversation resumes wherever the session's store is) and `ready` runs, on the actor;
    // from then on the session acts on nothing more (the connection is closing).
    void drain(std::function<void()> ready);

  private:
    void check_drained();
    // Another connection resumed this session (session-directory.h): told, closed, ended.
    void taken_over();
    void leave_id();
    // The LLM's slot: taken at open, or a place in line (queued_event) until it is given.
    void take_slot();
    bool slot_granted(int slot); // any thread
    void give_slot_back();
    struct turn;
    enum tts_state { TTS_STATE_OFF, TTS_STATE_PENDING, TTS_STATE_OK, TTS_STATE_FAILED };

    void error(const std::string &code, const std::string &message);
    // To the session's actor (dropped once closed); post_control() ahead of queued audio.
    void post(std::function<void()> task);
    void post_control(std::function<void()> task);
    void post_at(mono_time when, std::function<void()> task);
    bool take_audio_credit(double seconds); // input side

    // The session's actor, from here on.
    void open_now(const std::string &resume_id);
    void start_now(const session_start &p);
    void stop_now(mono_time t_stop);
    void start_speech_output(const session_start &p);
    void start_echo_canceller(bool wanted);
    void begin_listening(int rate, bool hands_free, const vad_params &vp);
    void apply_playback(const playback_report &r, mono_time now);

    // Turn-taking.
    void feed_audio(std::vector<int16_t> pcm, int rate);
    void feed_hands_free(std::vector<int16_t> s16k, mono_time now);
    struct echo_gate {
        double level = -1, gate = 0; // after the canceller, and its gate (-1: no reply playing)
        bool quiet = false;          // below the gate: the canceller's residual, not the user
    };
    echo_gate cancel_echo(std::vector<int16_t> &s16k, mono_time now);
    void accept_speech(std::span<const int16_t> pcm);
    void end_turn_at(const vad_event &e, mono_time now);
    void check_barge_in(mono_time now, const echo_gate &g);
    void send_partial();
    void begin_utterance();
    void maybe_speculate(mono_time now);
    void end_hands_free_utterance(mono_time t_decided, double speech_end_ms);
    void utterance_transcript(const std::string &text, std::shared_ptr<turn> spec,
                              mono_time t_decided, double speech_end_ms);
    void start_early_end_pass();
    struct early_end_pass;
    void run_end_pass(std::function<std::string()> end_pass, std::shared_ptr<turn> spec,
                      mono_time t_decided, double speech_end_ms,
                      std::shared_ptr<early_end_pass> early);
    void post_end_pass(std::function<void()> task);
    void finish_utterance(mono_time t_stop);
    void finish_direct_audio(mono_time t_stop);

    // Replies. A turn is passed by value: the function may drop the session's own reference
    // to it (current_, speaking_) on the way.
    void prefill(const std::string &partial);
    std::shared_ptr<turn> start_turn(const std::string &user_text, mono_time t0,
                                     mono_time t_transcript, bool held = false,
                                     std::vector<int16_t> audio = {},
                                     const response_request *asked = nullptr);
    void respond_now(const response_request &r, mono_time t0);
    void truncate_now(int64_t turn_id, const std::string &heard);
    // The user's words of a turn that waits for respond() (auto_respond off).
    void hold_user_text(const std::string &text);
    void run_waiting_response();
    void submit_reply(std::shared_ptr<turn> t, std::vector<int16_t> audio);
    bool direct_audio() const;
    // On the LLM's worker: the turn's tokens through its chunker; whole phrases are posted.
    void on_piece(std::shared_ptr<turn> t, std::string_view piece);
    void on_llm_done(std::shared_ptr<turn> t, const llm_result &r);
    // On the actor again.
    void add_phrases(std::shared_ptr<turn> t, std::vector<std::string> phrases,
                     mono_time t_first_token);
    void pump(std::shared_ptr<turn> t);
    void synthesize(std::shared_ptr<turn> t, std::string text);
    struct speech;
    void speech_made(std::shared_ptr<turn> t, speech s);
    void finish_turn(std::shared_ptr<turn> t);
    void emit(std::shared_ptr<turn> t, reply_chunk_event c, int chunk);
    void emit_chunk(std::shared_ptr<turn> t, std::string text, std::vector<int16_t> pcm,
                    const tts_result *speech);
    bool reply_active(mono_time now);
    // Returns the reply it cut (null: none).
    std::shared_ptr<turn> barge_in(mono_time now);
    void cut_playing(std::shared_ptr<turn> t, mono_time now);
    void amend_turn(std::shared_ptr<turn> t, const std::string &heard, bool interrupted = true);
    void resume_turn(std::shared_ptr<turn> t);
    void release_turn(std::shared_ptr<turn> t, const std::string &final_text);
    void discard_turn(std::shared_ptr<turn> t);
    void cancel_turn(std::shared_ptr<turn> t, bool notify);
    void record_turn(std::shared_ptr<turn> t, bool interrupted);
    void request_tts_check(const tts_params &params);
    void tts_checked(bool ok);

    // The store (session-store.cpp).
    void save_turn(const turn_record &rec);
    void save_started(const turn &t);
    void flush_unsaved();
    void flush_or_drop(const char *when);
    void drop_unsaved(); // forgets the turns the store did not take

    session_engines eng_;
    session_config cfg_;
    std::shared_ptr<session_sink> out_;

    // close() runs once, whole: a second caller waits for the first to finish.
    std::mutex close_m_;
    bool close_done_ = false;
    // The door: the actors, until close().
    std::mutex door_;
    bool closed_ = false;
    // Told server_draining: the connection is closing, and nothing more it sends is acted on
    // (a turn started now would be cut by the close, its work wasted).
    bool drained_ = false;
    std::unique_ptr<actor> worker_; // the session's own queue, on the sessions' pool
    // The recogniser's end-of-utterance passes run here, so that the session's actor goes on
    // taking the microphone's frames (the echo canceller and barge-in need them in time).
    // Made on first use; closed by close() before worker_.
    std::unique_ptr<actor> end_pass_worker_;

    mutable std::mutex id_m_;
    std::string id_;

    // The input side (the codec's calls, one at a time).
    bool started_ = false;   // a start was received
    bool recording_ = false; // between start and stop
    int in_rate_ = 16000;
    // Audio faster than real time: a burst is taken, then at most AUDIO_SPEED_MAX times real
    // time (a token bucket in seconds of audio); beyond it frames are refused (audio_too_fast).
    double audio_credit_s_ = -1; // -1: full
    mono_time audio_credit_at_{}, too_fast_said_{};
    // Microphone samples (16 kHz) received from the network and processed by the actor: the
    // difference is captured audio not yet through the echo canceller.
    std::atomic<int64_t> near_received_{0}, near_processed_{0};

    // The actor's (and close()'s, once the actor is gone).
    std::vector<turn_record> history_;
    // Messages added without a reply (add_message, or turns with auto_respond off): the next
    // reply's user message.
    std::vector<std::string> pending_user_;
    std::string pending_user_text() const; // the waiting messages, joined by newlines
    void forget_now(int64_t turn_id, const std::string &text, bool assistant);
    // respond() came while an utterance was still being recognised: it runs after.
    std::optional<std::pair<response_request, mono_time>> waiting_response_;
    int64_t next_turn_id_ = 1;
    std::shared_ptr<turn> current_;
    // The store: a new session's row is written with its first turn (a session where nothing
    // was said leaves nothing); what the store refused waits in unsaved_ and is written again.
    std::string token_hash_; // the resume token's SHA-256
    // This connection's name as the session's holder in the store (store.h): a turn is written
    // only while no other connection, here or on another node, has resumed the session since.
    std::string holder_;
    bool moved_ = false; // another connection resumed the session: nothing more is written
    bool row_saved_ = false;
    uint64_t db_generation_ = 0;
    std::vector<turn_record> unsaved_;
    bool retry_pending_ = false;
    int retry_ms_ = 0;
    bool tts_wanted_ = true;
    tts_params tts_params_;
    tts_state tts_state_ = TTS_STATE_OFF;
    uint64_t tts_checks_ = 0; // request_tts_check calls: only the last one's answer counts
    int slot_ = -1;
    bool queued_ = false; // in line for a slot
    size_t queue_position_ = 0;
    std::atomic<int> granted_slot_{-1}; // given by the line, not yet taken by the actor
    // What the client is playing: the last reply that sent audio, and when its audio ends if
    // played without gaps from when it was sent (corrected by the client's playback reports).
    std::shared_ptr<turn> speaking_;
    playout_clock clock_;
    std::shared_ptr<turn> cut_;      // the last interrupted reply (its playback report may follow)
    std::function<void()> draining_; // drain(): waiting for the reply in progress
    std::unique_ptr<echo_canceller> aec_;
    std::shared_ptr<std::atomic<bool>> prefill_busy_ = std::make_shared<std::atomic<bool>>(false);
    std::unique_ptr<asr_stream> asr_;
    std::unique_ptr<resampler> in_resampler_;
    size_t since_partial_ = 0;
    std::string last_partial_;
    bool asr_end_pending_ = false;
    // Hands-free.
    std::unique_ptr<vad_stream> vad_;
    bool utterance_open_ = false;
    bool barging_ = false;       // this speech already interrupted a reply
    std::shared_ptr<turn> spec_; // a reply started speculatively in a pause
    // The pause's audio after spec_ started, not yet decoded: the recogniser hears it only if
    // the user goes on (see feed_hands_free).
    std::vector<int16_t> pause_audio_;
    // The end of a turn's messages go out in one burst (output hold/flush), and the language
    // model is woken after it.
    struct end_of_turn_burst {
        explicit end_of_turn_burst(session &s);
        ~end_of_turn_burst();
        session &s_;
    };
    bool in_burst_ = false;
    bool wake_llm_after_burst_ = false;
    std::shared_ptr<turn> cut_by_speech_; // the reply this speech cut, until it proves words
    mono_time t_onset_{};
    double utt_asr_ms_ = 0;          // recognition work for the current utterance
    std::vector<int16_t> utt_audio_; // direct audio mode: the utterance at 16 kHz
    int64_t utt_samples_ = 0;        // the utterance's length so far (16 kHz)
    bool utterance_cut_ = false;     // push-to-talk: ended at --max-turn-seconds, before stop
    bool turn_too_long(size_t more);
    int end_passes_pending_ = 0; // utterances whose end pass is at work
    // The recogniser's end pass started in a pause, on the audio up to the pause: if the turn
    // ends there, its result is the transcript (and a reply may start from it before the end).
    struct early_end_pass {
        std::atomic<bool> done{false};
        bool stale = false;      // the user went on (the actor's)
        std::string text, error; // written before done
        double ms = 0;
    };
    std::shared_ptr<early_end_pass> early_end_;
};

} // namespace parley
