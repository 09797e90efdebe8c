// Language model engines.
//
// One engine serves every session. submit() (any thread) queues a request; the engine's own
// worker thread runs it and calls on_piece with whole UTF-8 characters as tokens are generated,
// then on_done once. Both callbacks run on the worker thread and must be quick (they hand work
// on; they never wait for the network). Requests of different slots are decoded together in
// one batch; requests of one slot run one after another. A slot is a session's place in the KV
// cache: the tokens of its previous turn stay there, so the next turn only evaluates what is
// new.
//
// Audio (an engine loaded with an audio projector, llm_config::mmproj_path): a request may carry
// the user's utterance as 16 kHz PCM. The audio goes into the slot's KV cache as embeddings, after
// the text of the conversation so far. In LLM_AUDIO_TRANSCRIBE mode the model writes the
// transcript only; in LLM_AUDIO_DIRECT mode it writes the transcript and then the reply in one
// generation: on_transcript gets the transcript once, on_piece only the reply. History stays text
// (the caller stores the transcript as the user's message), so later turns are cheap; the slot's
// cache keeps the text before the audio for reuse.
#pragma once

#include "llm/tools.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace parley {

class option_table;

struct llm_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct chat_message {
    std::string role; // "system", "user", "assistant" or "tool"
    std::string content;
    // Defaulted, so that {role, content} is a whole message (no missing-initializer warning).
    std::vector<tool_call> tool_calls = {}; // an assistant's calls
    std::string tool_call_id = {};          // a tool's message: the call it answers
};

struct sampling_params {
    float temperature = 0.7f; // 0: greedy
    int top_k = 40;
    float top_p = 0.9f;
    float min_p = 0.05f;
    float repeat_penalty = 1.1f;
    int repeat_last_n = 64;
    uint32_t seed = 0; // 0: a new random seed per request
};

// Why a request ended.
enum llm_stop {
    LLM_STOP_NONE,       // not ended
    LLM_STOP_EOG,        // the model ended its reply
    LLM_STOP_LENGTH,     // max_tokens
    LLM_STOP_STOP,       // a stop string
    LLM_STOP_CONTEXT,    // the context is full
    LLM_STOP_CANCELLED,  // llm_request::cancel
    LLM_STOP_ERROR,      // llm_result::error says why
    LLM_STOP_PREFILL,    // max_tokens 0: the prompt is in the cache, nothing generated
    LLM_STOP_SUPERSEDED, // a prefill dropped for a newer request of the same slot
};

// "eog", "length", "stop", "context", "cancelled", "error", "prefill", "superseded" ("" for none).
const char *llm_stop_name(llm_stop s);

struct llm_result {
    std::string text; // everything generated (stop strings removed); direct mode: the reply
    llm_stop stop_reason = LLM_STOP_NONE;
    std::string error;     // set when stop_reason is LLM_STOP_ERROR
    int prompt_tokens = 0; // tokens in the formatted prompt
    int cached_tokens = 0; // of those, reused from the slot's KV cache
    int generated_tokens = 0;
    double queue_ms = 0;       // submit to start
    double prompt_ms = 0;      // prompt evaluation
    double first_token_ms = 0; // start to first token
    double generate_ms = 0;    // first token to end
    // Audio requests only.
    std::string transcript; // what the model heard (the whole text in transcribe mode)
    int audio_tokens = 0;   // KV positions the audio took
    double audio_ms = 0;    // audio to KV cache: features, encoder, projector, decode
    double audio_seconds = 0;
};

enum llm_audio_mode {
    LLM_AUDIO_TRANSCRIBE, // the model writes what was said; the result's text is the transcript
    LLM_AUDIO_DIRECT,     // the model writes the transcript, then its reply to it
};

struct llm_request {
    int slot = -1;
    // Called on the worker thread when the request starts, so it sees the latest history.
    // Gets the prompt budget in tokens and a counter for formatted prompts.
    std::function<std::vector<chat_message>(
        int budget, const std::function<int(const std::vector<chat_message> &)> &count)>
        messages;
    sampling_params sampling;
    // 0: prefill only. The prompt is evaluated into the slot's KV cache and nothing is
    // generated (LLM_STOP_PREFILL); a later request with the same prefix starts faster.
    // Prefills yield to replies, and one still queued when a later request of its slot arrives
    // is dropped (LLM_STOP_SUPERSEDED).
    int max_tokens = 256;
    std::shared_ptr<std::atomic<bool>> cancel;
    // While set, the request keeps its place and its KV entries but generates nothing; clearing
    // it goes on where it stopped. A speculative reply waits here once its first phrase is
    // made, instead of writing a whole reply that the user's next words may throw away.
    std::shared_ptr<std::atomic<bool>> pause;
    // While set, somebody is waiting for this request's first words (a voice reply before its
    // first phrase): a generation step then decodes only such requests, so a reply that is
    // already being heard (seconds of audio ahead of its listener) does not slow the start of
    // another session's. A skipped request still gets every URGENT_SKIP_MAX + 1-th step.
    std::shared_ptr<std::atomic<bool>> urgent;
    std::function<void(std::string_view piece)> on_piece;
    std::function<void(const llm_result &result)> on_done;

    // The user's utterance, 16 kHz mono in [-1, 1]; empty for a text request. With audio,
    // messages() returns the conversation before this turn (it may be empty, or unset in
    // transcribe mode) and the engine adds the user's turn with the audio and the mode's
    // instruction.
    std::vector<float> audio;
    llm_audio_mode audio_mode = LLM_AUDIO_TRANSCRIBE;
    // Direct mode: the transcript part may take at most this many tokens; max_tokens counts the
    // reply only. A model that does not close its transcript is cut here and goes on to reply.
    int max_transcript_tokens = 96;
    // Called once on the worker thread when the transcript is complete (direct mode: at its
    // closing mark or cut; transcribe mode: at the end), or with what was written when the
    // generation ends inside it. Not called for a request cancelled or failed before that.
    std::function<void(const std::string &transcript)> on_transcript;

    // Function calling: the tools offered (rendered by the chat template), and a GBNF grammar
    // (root rule "root") every generated token must follow (empty: none).
    std::vector<tool_spec> tools;
    std::string grammar;
};

struct chat_message;

// Tools for a model without a Jinja template: their instructions joined to the system prompt
// (or a system message of their own), each assistant's calls written into its content as the
// model would write them, and each tool's result a user message in <tool_response> tags.
std::vector<chat_message> fold_tools(const std::vector<chat_message> &messages,
                                     const std::vector<tool_spec> &tools);

class llm_engine {
  public:
    virtual ~llm_engine() = default;
    virtual std::string name() const = 0;
    virtual int slot_context() const = 0;
    virtual double load_ms() const = 0;
    // A free KV slot, or -1 when all are taken (requests then run without cache reuse).
    virtual int acquire_slot() = 0;
    virtual void release_slot(int slot) = 0;
    virtual void submit(llm_request request) = 0;
    // The prompt text the engine would evaluate (for tests and debugging).
    virtual std::string format(const std::vector<chat_message> &messages) = 0;
    // With tools offered: the engine's Jinja template renders them when it has one; otherwise
    // they are folded into the messages (fold_tools) and formatted as above.
    virtual std::string format(const std::vector<chat_message> &messages,
                               const std::vector<tool_spec> &tools) {
        return format(fold_tools(messages, tools));
    }
    // True when requests may carry audio (an audio projector is loaded).
    virtual bool supports_audio() const { return false; }
    // A request's pause flag was cleared: an engine that sleeps while every request it holds
    // is paused looks again now (it also looks again by itself, later).
    virtual void wake() {}
};

enum llm_flash_attn {
    LLM_FLASH_ATTN_AUTO, // llama.cpp decides; off for attention heads too narrow to gain
    LLM_FLASH_ATTN_ON,
    LLM_FLASH_ATTN_OFF,
};

struct llm_config {
    std::string model_path;
    int context = 2048;    // tokens per slot (capped at the model's training context)
    int slots = 8;         // sessions with their own KV cache
    int threads = 0;       // generation; 0: all cores (a model under 100M parameters: half)
    int threads_batch = 0; // prompt evaluation; 0: all cores
    int batch = 512;
    llm_flash_attn flash_attn = LLM_FLASH_ATTN_AUTO;
    // Audio projector GGUF (libmtmd: Voxtral, Ultravox, Qwen2-Audio ...) made for model_path.
    // Empty: text only.
    std::string mmproj_path;
    std::string chat_template; // empty: the model's own, else the plain fallback
    bool warmup = true;
    bool verbose = false;
    // llama.cpp's RPC workers that hold the model's layers ("HOST:PORT,..."; empty: this
    // machine's CPU).
    std::string rpc;
    // Remote: OpenAI-compatible servers (several: a pool) instead of a model file.
    std::vector<std::string> urls;
    std::string api_key;       // their bearer token
    std::string remote_model;  // the "model" sent (empty: the server's own)
    int remote_timeout_s = 60; // a request that gets no byte for this long fails
    // Other Parley nodes use the same servers: no slot of theirs is this node's (no id_slot);
    // each server picks the slot whose cached prompt matches the conversation best.
    bool remote_shared = false;
    // Sampling takes the top-k (greedy: the few best) candidates from the logits in one pass
    // before llama.cpp's sampler chain; false gives the chain the whole vocabulary (same tokens,
    // slower with large vocabularies; kept to check that).
    bool preselect = true;
};

// "HOST:PORT" (a name, an IPv4 address or an IPv6 one in brackets; port 1-65535) apart.
bool split_host_port(const std::string &endpoint, std::string *host, std::string *port);
// "HOST:PORT,HOST:PORT" (--rpc) into endpoints; empty with *error set when one is malformed.
std::vector<std::string> parse_rpc_endpoints(const std::string &list, std::string *error);

// Registers the language model's settings (--model, --ctx, ...) in the option table.
void register_llm_options(option_table &t, llm_config &c);

// Throws llm_error with a one-line reason naming the file when it cannot load.
std::unique_ptr<llm_engine> make_llm_engine(const llm_config &config);

// 16-bit PCM to the float samples of llm_request::audio.
std::vector<float> pcm16_to_float(std::span<const int16_t> pcm);

// Splits direct-mode output: feed() the generated text; it holds the transcript back until the
// closing mark and returns the reply's text after it. close() ends the transcript where it is.
class transcript_splitter {
  public:
    static constexpr std::string_view OPEN = "<transcript>";
    static constexpr std::string_view CLOSE = "</transcript>";
    std::string feed(std::string_view text);
    void close();
    bool done() const { return done_; }
    const std::string &transcript() const { return transcript_; }

  private:
    std::string transcript_;
    bool done_ = false;
    bool trim_ = true; // reply's leading white space still to drop
};

// Plain fallback prompt format for models without a chat template.
std::string format_plain_chat(const std::vector<chat_message> &messages);

// Streaming filter that cuts text at the first stop string and holds back any tail that may
// be the start of one. push() returns text safe to emit; stopped() tells when a stop was seen.
class stop_filter {
  public:
    explicit stop_filter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
    std::string push(std::string_view text);
    std::string flush();
    bool stopped() const { return stopped_; }

  private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
};

} // namespace parley
