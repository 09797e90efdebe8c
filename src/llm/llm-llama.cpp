// llama.cpp engine: one model, one context with a sequence per slot, one worker thread.
//
// The worker admits queued requests (evaluating each prompt after its slot's cached prefix),
// then decodes one token for every active request in a single batch per step, so several
// sessions generate at once. Only this file sees llama.h (and libmtmd's mtmd.h, for audio).
//
// Audio requests: libmtmd turns the PCM into log-mel features and then into KV entries (encoder,
// projector, llama_decode of the embeddings) with mtmd_helper_eval_chunk_single, all on the
// worker thread, between the text before the user's turn and the instruction after it. The
// slot's token record then stops at the audio: the next (text) turn reuses the cached prefix up
// to there and re-evaluates the rest as text.
#include "llm/llm-rpc.h"
#include "llm/llm.h"
#include "llm/tool-calls.h"

#include "core/log.h"
#include "core/worker.h"
#include "text/utf8.h"

#include <gguf.h>
#include <llama.h>
#include <minja/chat-template.hpp>
#include <mtmd-helper.h>
#include <mtmd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

namespace parley {

namespace {

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t) {
    return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

bool g_verbose = false;
std::mutex g_log_m;
std::string g_last_error; // the last error line of llama.cpp or libmtmd, for our own messages
// Set while a decode is being stopped on purpose (a cancelled request): llama.cpp then logs its
// "failed to decode" errors, which are no errors here.
std::atomic<bool> g_cancelling{false};

void on_llama_log(ggml_log_level level, const char *text, void *) {
    if (g_verbose || (level >= GGML_LOG_LEVEL_ERROR && !g_cancelling.load())) fputs(text, stderr);
    if (level >= GGML_LOG_LEVEL_ERROR) {
        std::string line(text);
        line = line.substr(0, line.find('\n'));
        if (size_t at = line.find("error: "); at != std::string::npos) line.erase(0, at + 7);
        std::lock_guard lock(g_log_m);
        if (!line.empty()) g_last_error = line;
    }
}

std::string take_last_error() {
    std::lock_guard lock(g_log_m);
    return std::exchange(g_last_error, {});
}

// Where the audio goes in the formatted prompt; the engine splits the text here.
constexpr std::string_view AUDIO_MARK = "<__parley_audio__>";

const char *TRANSCRIBE_INSTRUCTION =
    "Transcribe this audio exactly. Write only the words that were spoken, nothing else.";
const char *DIRECT_INSTRUCTION =
    "Answer this spoken message. First write exactly what was said between <transcript> and "
    "</transcript>, then your reply.";

// Checks an audio projector file before libmtmd reads it, so that a cut or wrong file gets a
// reason naming it (libmtmd only logs its own lines and returns null, or aborts).
void check_projector_file(const std::string &path) {
    std::error_code ec;
    uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw llm_error("cannot open audio projector file " + path);
    {
        std::ifstream f(path, std::ios::binary);
        char magic[4] = {};
        f.read(magic, 4);
        if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0)
            throw llm_error("not a GGUF audio projector file: " + path);
    }
    ggml_context *meta = nullptr;
    gguf_init_params gp{/*no_alloc=*/true, &meta};
    gguf_context *g = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw llm_error("cannot read audio projector file " + path + " (corrupt GGUF header)");
    size_t need = gguf_get_data_offset(g);
    int64_t n_tensors = gguf_get_n_tensors(g);
    for (int64_t i = 0; i < n_tensors; ++i)
        need = std::max(need, gguf_get_data_offset(g) + gguf_get_tensor_offset(g, i) +
                                  gguf_get_tensor_size(g, i));
    std::string arch;
    if (int64_t k = gguf_find_key(g, "general.architecture"); k >= 0) arch = gguf_get_val_str(g, k);
    gguf_free(g);
    if (meta) ggml_free(meta);
    if (size < need)
        throw llm_error("audio projector file " + path + " is truncated (" + std::to_string(size) +
                        " of " + std::to_string(need) + " bytes)");
    if (arch != "clip")
        throw llm_error("not an audio projector: " + path + " (architecture '" + arch +
                        "', expected 'clip')");
    if (n_tensors == 0) throw llm_error("audio projector file " + path + " has no tensors");
    if (!mtmd_get_cap_from_file(path.c_str()).inp_audio)
        throw llm_error("audio projector file " + path + " has no audio encoder");
}

struct chunks_deleter {
    void operator()(mtmd_input_chunks *c) const { mtmd_input_chunks_free(c); }
};
using chunks_ptr = std::unique_ptr<mtmd_input_chunks, chunks_deleter>;

struct active_request {
    llm_request req;
    int seq = 0;
    llama_sampler *sampler = nullptr;
    llama_sampler *grammar = nullptr; // llm_request::grammar; apart from the chain (see sample())
    // Candidates taken straight from the logits before the sampler chain runs (0: the chain
    // gets the whole vocabulary).
    int preselect = 0;
    std::vector<llama_token> pending; // to decode at the next step: the sampled token, or more
    int n_past = 0;
    int i_batch = -1;
    llm_result result;
    utf8_stream utf8;
    stop_filter stops{{}};
    steady::time_point t_submit, t_start, t_first;
    bool done = false;
    // The slot's token record follows this request's KV entries (false after audio).
    bool track = true;
    bool audio = false;
    bool in_transcript = false;   // direct mode, before the transcript's closing mark
    bool transcript_sent = false; // on_transcript was called
    transcript_splitter split;
    int transcript_tokens = 0;
    int reply_tokens = 0;
    int skipped = 0; // steps in a row left out for urgent requests
};

class llm_llama : public llm_engine {
  public:
    explicit llm_llama(const llm_config &config) : config_(config) {
        auto t0 = steady::now();
        g_verbose = config.verbose;
        llama_log_set(on_llama_log, nullptr);
        llama_backend_init();
        const std::string &path = config.model_path;
        {
            std::ifstream f(path, std::ios::binary);
            if (!f) throw llm_error("cannot open model file " + path);
            char magic[4] = {};
            f.read(magic, 4);
            if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0)
                throw llm_error("not a GGUF model file: " + path);
        }
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers = 0;
        // With RPC workers, every layer goes to them (split by their free memory).
        std::vector<ggml_backend_dev_t> devices;
        if (!config.rpc.empty()) {
            std::string err;
            devices = rpc_devices(parse_rpc_endpoints(config.rpc, &err));
            if (!err.empty()) throw llm_error(err);
            devices.push_back(nullptr);
            mp.devices = devices.data();
            mp.n_gpu_layers = 999;
        }
        if (!config.verbose) mp.progress_callback = [](float, void *) { return true; };
        model_ = llama_model_load_from_file(path.c_str(), mp);
        if (!model_)
            throw llm_error("cannot load model file " + path + " (corrupt or unsupported)");
        vocab_ = llama_model_get_vocab(model_);

        int train = llama_model_n_ctx_train(model_);
        slot_ctx_ = std::min(config.context, train > 0 ? train : config.context);
        n_slots_ = std::max(1, config.slots);
        llama_context_params cp = llama_context_default_params();
        cp.n_seq_max = uint32_t(n_slots_ + 1); // the last sequence serves slot-less requests
        cp.n_ctx = uint32_t(slot_ctx_ * (n_slots_ + 1));
        cp.kv_unified = false;
        cp.n_batch = uint32_t(std::max(32, config.batch));
        cp.n_ubatch = cp.n_batch;
        // Generation (one token per sequence per step) of a small model gets half the cores by
        // default: its step is short, ASR and TTS run beside it, and an OpenMP team that is
        // short of cores waits at every barrier. A larger model's step is long enough to share
        // (1.5B shape, 2 cores: 53-83 ms per token on 2 threads beside the recogniser, about
        // twice that on 1). Prompt batches get all the cores.
        small_model_ = llama_model_n_params(model_) < SMALL_MODEL_PARAMS;
        int cores = int(std::max(1u, std::thread::hardware_concurrency()));
        int threads = config.threads > 0 ? config.threads
                      : small_model_     ? std::max(1, cores / 2)
                                         : cores;
        int threads_batch = config.threads_batch > 0 ? config.threads_batch : cores;
        cp.n_threads = threads;
        cp.n_threads_batch = threads_batch;
        threads_ = threads;
        threads_batch_ = threads_batch;
        // Flash attention (auto): llama.cpp's choice (on, on the CPU), except for heads under
        // TINY_HEAD wide, where its CPU kernel is slower. Measured on this machine: stories260K
        // (8-wide heads) at a depth of 1,700 generates in 1.7 ms a token off, 3.8 ms on, and
        // its 4-client LLM CPU drops by a third. Wider heads gain or lose little in llama-bench
        // (0.5B/1.5B shapes at a depth of 1,000: 16-token prompts 20-30% faster off, 128-token
        // prompts 1.7x slower off, generation within 10%), but a 1.5B-shape voice bench with it
        // off ran about three times slower a turn, so those keep llama.cpp's choice.
        int heads = std::max(1, llama_model_n_head(model_));
        bool on = config.flash_attn == LLM_FLASH_ATTN_ON;
        flash_ = on || (config.flash_attn == LLM_FLASH_ATTN_AUTO &&
                        llama_model_n_embd(model_) / heads >= TINY_HEAD);
        // Off, on, or (auto and not ruled out) llama.cpp's own choice.
        const char *flash_name = !flash_ ? "off" : on ? "on" : "auto";
        cp.flash_attn_type = !flash_ ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                             : on    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                     : LLAMA_FLASH_ATTN_TYPE_AUTO;
        cp.no_perf = true;
        cp.abort_callback = [](void *data) {
            auto *self = static_cast<llm_llama *>(data);
            bool stop = self->abort_flag_ && self->abort_flag_->load();
            if (stop) g_cancelling.store(true);
            return stop;
        };
        cp.abort_callback_data = this;
        ctx_ = llama_init_from_model(model_, cp);
        if (!ctx_) {
            llama_model_free(model_);
            throw llm_error("cannot create a context for " + path);
        }
        slot_ctx_ = int(llama_n_ctx_seq(ctx_));
        n_batch_ = int(llama_n_batch(ctx_));

        const bool jinja_file = config.chat_template.ends_with(".jinja");
        if (config.chat_template != "plain" && !jinja_file) {
            const char *tmpl = config.chat_template.empty()
                                   ? llama_model_chat_template(model_, nullptr)
                                   : config.chat_template.c_str();
            if (tmpl) {
                // Accept it only when llama.cpp knows how to apply it.
                llama_chat_message probe{"user", "hi"};
                char buf[256];
                if (llama_chat_apply_template(tmpl, &probe, 1, true, buf, sizeof buf) >= 0)
                    template_ = tmpl;
                else
                    log_warn("chat template of %s is not supported; using the plain format",
                             path.c_str());
            }
        }
        load_jinja(config, jinja_file);
        slot_used_.assign(size_t(n_slots_), false);
        slot_tokens_.assign(size_t(n_slots_ + 1), {});
        if (!config.mmproj_path.empty()) {
            try {
                check_projector_file(config.mmproj_path);
            } catch (...) {
                llama_free(ctx_);
                llama_model_free(model_);
                throw;
            }
        }
        // Every llama_decode runs on the worker thread, the warm-up included: ggml's CPU backend
        // uses OpenMP, and libgomp keeps a thread team per calling thread. A decode on this
        // thread would leave an idle second team behind, libgomp would then count more threads
        // than cores and stop spin-waiting at barriers, and every token would wait on wake-ups
        // (measured: 1.5-2x slower generation at a depth of 300-800 tokens).
        // The projector's encoder runs on this thread too (its ggml graphs use OpenMP alike).
        std::promise<void> ready;
        thread_ = std::jthread([this, &ready, threads_batch](std::stop_token st) {
            set_thread_name("llm"); // and its OpenMP team
            try {
                if (!config_.mmproj_path.empty()) load_projector(threads_batch);
            } catch (...) {
                ready.set_exception(std::current_exception());
                return;
            }
            if (config_.warmup) warmup();
            ready.set_value();
            run(st);
        });
        try {
            ready.get_future().get();
        } catch (...) {
            thread_.join();
            llama_free(ctx_);
            llama_model_free(model_);
            throw;
        }
        load_ms_ = ms_since(t0);
        name_ = path.substr(path.find_last_of('/') + 1);
        log_info("llm: %s loaded in %.0f ms (context %d per slot, %d slots, %d/%d threads, flash "
                 "attention %s, template %s%s)",
                 name_.c_str(), load_ms_, slot_ctx_, n_slots_, threads, threads_batch, flash_name,
                 jinja_file_         ? "from the Jinja file"
                 : template_.empty() ? "plain"
                                     : "model's own",
                 mctx_ ? ", audio projector" : "");
    }

    ~llm_llama() override {
        thread_.request_stop();
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
        if (mctx_) mtmd_free(mctx_);
        llama_free(ctx_);
        llama_model_free(model_);
    }

    bool supports_audio() const override { return mctx_ != nullptr; }

    std::string name() const override { return name_; }
    int slot_context() const override { return slot_ctx_; }
    double load_ms() const override { return load_ms_; }

    int acquire_slot() override {
        std::lock_guard lock(m_);
        for (int i = 0; i < n_slots_; ++i) {
            if (!slot_used_[size_t(i)]) {
                slot_used_[size_t(i)] = true;
                return i;
            }
        }
        return -1;
    }

    void release_slot(int slot) override {
        if (slot < 0 || slot >= n_slots_) return;
        std::lock_guard lock(m_);
        slot_used_[size_t(slot)] = false;
        released_.push_back(slot); // the worker clears its cache
        cv_.notify_one();
    }

    void wake() override {
        {
            std::lock_guard lock(m_);
            woken_ = true;
        }
        cv_.notify_one();
    }

    void submit(llm_request request) override {
        {
            std::lock_guard lock(m_);
            queue_.push_back({std::move(request), steady::now()});
        }
        cv_.notify_one();
    }

    std::string format(const std::vector<chat_message> &messages) override {
        if (jinja_file_) return render(messages, {});
        if (template_.empty()) return format_plain_chat(messages);
        std::vector<llama_chat_message> msgs;
        for (const chat_message &m : messages)
            msgs.push_back({m.role.c_str(), m.content.c_str()});
        size_t total = 0;
        for (const chat_message &m : messages)
            total += m.content.size();
        std::vector<char> buf(total * 2 + 512);
        int n = llama_chat_apply_template(template_.c_str(), msgs.data(), msgs.size(), true,
                                          buf.data(), int(buf.size()));
        if (n > int(buf.size())) {
            buf.resize(size_t(n));
            n = llama_chat_apply_template(template_.c_str(), msgs.data(), msgs.size(), true,
                                          buf.data(), int(buf.size()));
        }
        if (n < 0) return format_plain_chat(messages);
        return std::string(buf.data(), size_t(n));
    }

    // Tools need a Jinja template (llama.cpp's built-in formats have none): the model's own or
    // the --chat-template file, rendered by minja; without one they are folded into the
    // messages.
    std::string format(const std::vector<chat_message> &messages,
                       const std::vector<tool_spec> &tools) override {
        bool tool_messages = std::any_of(messages.begin(), messages.end(), [](const auto &m) {
            return m.role == "tool" || !m.tool_calls.empty();
        });
        if (tools.empty() && !tool_messages) return format(messages);
        if (jinja_) {
            try {
                return render(messages, tools);
            } catch (const std::exception &e) {
                log_warn("llm: the chat template failed with tools (%s); using the plain form",
                         e.what());
            }
        }
        return format(fold_tools(messages, tools));
    }

  private:
    void load_jinja(const llm_config &config, bool from_file) {
        std::string source;
        if (from_file) {
            std::ifstream f(config.chat_template, std::ios::binary);
            std::stringstream ss;
            ss << f.rdbuf();
            if (!f) throw llm_error("cannot read the chat template " + config.chat_template);
            source = ss.str();
        } else if (config.chat_template != "plain") {
            if (const char *t = llama_model_chat_template(model_, nullptr)) source = t;
        }
        if (source.empty()) return;
        llama_token eos = llama_vocab_eos(vocab_);
        std::string eos_text = eos >= 0 ? llama_vocab_get_text(vocab_, eos) : "";
        try {
            // No BOS text: tokenize() adds the model's start token itself.
            jinja_ = std::make_unique<minja::chat_template>(source, "", eos_text);
            jinja_file_ = from_file;
        } catch (const std::exception &e) {
            if (from_file)
                throw llm_error("the chat template " + config.chat_template +
                                " does not parse: " + e.what());
            log_warn("llm: the model's chat template does not parse as Jinja (%s); tools are "
                     "offered in the plain form",
                     e.what());
        }
    }

    std::string render(const std::vector<chat_message> &messages,
                       const std::vector<tool_spec> &tools) const {
        using ojson = nlohmann::ordered_json;
        minja::chat_template_inputs in;
        in.messages = ojson::array();
        for (const chat_message &m : messages) {
            ojson j = {{"role", m.role}, {"content", m.content}};
            if (!m.tool_calls.empty()) {
                ojson calls = ojson::array();
                for (const tool_call &c : m.tool_calls) {
                    ojson args = ojson::parse(c.arguments, nullptr, false);
                    calls.push_back(
                        {{"id", c.id},
                         {"type", "function"},
                         {"function",
                          {{"name", c.name},
                           {"arguments", args.is_discarded() ? ojson::object() : args}}}});
                }
                j["tool_calls"] = calls;
            }
            if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
            in.messages.push_back(std::move(j));
        }
        if (!tools.empty()) {
            in.tools = ojson::array();
            for (const tool_spec &t : tools)
                in.tools.push_back({{"type", "function"},
                                    {"function",
                                     {{"name", t.name},
                                      {"description", t.description},
                                      {"parameters", ojson::parse(t.parameters.dump())}}}});
        }
        in.add_generation_prompt = true;
        return jinja_->apply(in);
    }

    struct queued {
        llm_request req;
        steady::time_point t_submit;
    };

    // add_special: the model's start-of-text token, for text that begins a sequence.
    std::vector<llama_token> tokenize(const std::string &text, bool add_special = true) {
        int n =
            -llama_tokenize(vocab_, text.c_str(), int(text.size()), nullptr, 0, add_special, true);
        std::vector<llama_token> out(size_t(std::max(n, 0)));
        if (n > 0)
            llama_tokenize(vocab_, text.c_str(), int(text.size()), out.data(), n, add_special,
                           true);
        return out;
    }

    // On the worker thread, before any request. Throws llm_error naming the file.
    void load_projector(int threads) {
        const std::string &path = config_.mmproj_path;
        mtmd_helper_log_set(on_llama_log, nullptr);
        take_last_error();
        mtmd_context_params p = mtmd_context_params_default();
        p.use_gpu = false;
        p.n_threads = threads;
        p.print_timings = false;
        p.warmup = config_.warmup;
        mctx_ = mtmd_init_from_file(path.c_str(), model_, p);
        if (!mctx_) {
            std::string why = take_last_error();
            throw llm_error("cannot load audio projector " + path + " for " + config_.model_path +
                            (why.empty() ? "" : ": " + why));
        }
        if (!mtmd_support_audio(mctx_)) {
            mtmd_free(mctx_);
            mctx_ = nullptr;
            throw llm_error("audio projector file " + path + " has no audio encoder");
        }
        audio_rate_ = mtmd_get_audio_sample_rate(mctx_);
        if (audio_rate_ != 16000) {
            mtmd_free(mctx_);
            mctx_ = nullptr;
            throw llm_error("audio projector " + path + " wants " + std::to_string(audio_rate_) +
                            " Hz audio; Parley gives it 16 kHz");
        }
        close_tokens_ = int(tokenize(std::string(transcript_splitter::CLOSE) + "\n", false).size());
    }

    // Decodes tokens[from..] into seq at positions pos0.., logits for the last one only when
    // asked. False when llama_decode fails or is aborted.
    bool decode_tokens(const std::vector<llama_token> &tokens, size_t from, llama_pos pos0, int seq,
                       bool logits_last) {
        // With a small model a few tokens (the words since the last prefill) are not worth a
        // team of threads: on a machine whose other cores run the sessions' recognisers, a team
        // waits at each of the graph's barriers for a thread that is not running (measured:
        // stories260K, 16 tokens deep in a conversation took 60-500 ms with 2 threads on 2 busy
        // cores). A large model's few tokens are seconds of work on one thread.
        use_batch_threads(!small_model_ || tokens.size() - from >= SMALL_PROMPT);
        llama_batch batch = llama_batch_init(n_batch_, 0, 1);
        bool ok = true;
        for (size_t i = from; i < tokens.size() && ok;) {
            batch.n_tokens = 0;
            for (; i < tokens.size() && batch.n_tokens < n_batch_; ++i) {
                int k = batch.n_tokens++;
                batch.token[k] = tokens[i];
                batch.pos[k] = pos0 + llama_pos(i - from);
                batch.n_seq_id[k] = 1;
                batch.seq_id[k][0] = seq;
                batch.logits[k] = logits_last && i + 1 == tokens.size();
            }
            ok = llama_decode(ctx_, batch) == 0;
        }
        llama_batch_free(batch);
        return ok;
    }

    // The audio as libmtmd chunks (features computed, not yet encoded).
    chunks_ptr audio_chunks(const std::vector<float> &pcm, std::string &error) {
        mtmd_bitmap *bitmap = mtmd_bitmap_init_from_audio(pcm.size(), pcm.data());
        chunks_ptr chunks(mtmd_input_chunks_init());
        const char *marker = mtmd_default_marker();
        mtmd_input_text text{marker, strlen(marker), /*add_special=*/false,
                             /*parse_special=*/true};
        const mtmd_bitmap *bitmaps[] = {bitmap};
        int rc = bitmap ? mtmd_tokenize(mctx_, chunks.get(), &text, bitmaps, 1) : -1;
        if (bitmap) mtmd_bitmap_free(bitmap);
        if (rc != 0) {
            error = "audio preprocessing failed (" + std::to_string(rc) + ")";
            return nullptr;
        }
        return chunks;
    }

    std::string piece(llama_token t) {
        char buf[256];
        int n = llama_token_to_piece(vocab_, t, buf, sizeof buf, 0, false);
        if (n < 0) return {};
        return std::string(buf, size_t(n));
    }

    void warmup() {
        llama_token bos = llama_vocab_bos(vocab_);
        if (bos < 0) bos = 0;
        llama_batch b = llama_batch_get_one(&bos, 1);
        llama_decode(ctx_, b);
        llama_memory_clear(llama_get_memory(ctx_), true);
    }

    // The chain for a request. Its first step is a top-k cut (or greedy): `preselect` is how many
    // of the highest logits are enough for the chain to pick the same token (see sample()).
    llama_sampler *make_sampler(const sampling_params &s, int &preselect) {
        llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
        bool penalised = s.repeat_penalty != 1.0f;
        auto penalties = [&] {
            if (penalised)
                llama_sampler_chain_add(chain, llama_sampler_init_penalties(
                                                   llama_vocab_n_tokens(vocab_), s.repeat_last_n,
                                                   s.repeat_penalty, 0.0f, 0.0f));
        };
        if (s.temperature <= 0.0f) {
            // Penalties only lower logits, so the winner is the best unpenalised token or one
            // of the (at most repeat_last_n) penalised ones ranked above it.
            preselect = !penalised ? 1 : s.repeat_last_n > 0 ? 1 + s.repeat_last_n : 0;
            penalties();
            llama_sampler_chain_add(chain, llama_sampler_init_greedy());
            return chain;
        }
        uint32_t seed = s.seed ? s.seed : std::random_device{}();
        // sample() hands the chain only the top k; the chain's own cut then orders them as it
        // would have from the whole vocabulary, so the same seed draws the same token.
        preselect = std::max(0, s.top_k);
        if (s.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(s.top_k));
        penalties(); // after top-k: cheap on a short candidate list
        llama_sampler_chain_add(chain, llama_sampler_init_top_p(s.top_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_min_p(s.min_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(s.temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
        return chain;
    }

    // Samples the next token from batch row idx. llama_sampler_sample would copy and sort the
    // whole vocabulary for every token (152k entries for Qwen: 0.8 ms, 3% of a 0.5B model's
    // step on 2 cores); one pass that keeps the `preselect` highest logits gives the chain the
    // same winners to choose from.
    llama_token sample(active_request &a, int idx) {
        if (a.grammar) return sample_constrained(a, idx);
        if (a.preselect <= 0) return llama_sampler_sample(a.sampler, ctx_, idx);
        const float *logits = llama_get_logits_ith(ctx_, idx);
        int n = llama_vocab_n_tokens(vocab_);
        size_t k = size_t(std::min(a.preselect, n));
        auto higher = [](const llama_token_data &x, const llama_token_data &y) {
            return x.logit > y.logit; // a min-heap: the lowest kept logit in front
        };
        std::vector<llama_token_data> &c = candidates_;
        c.clear();
        for (llama_token i = 0; i < n; ++i) {
            if (c.size() < k) {
                c.push_back({i, logits[i], 0.0f});
                std::push_heap(c.begin(), c.end(), higher);
            } else if (logits[i] > c.front().logit) {
                std::pop_heap(c.begin(), c.end(), higher);
                c.back() = {i, logits[i], 0.0f};
                std::push_heap(c.begin(), c.end(), higher);
            }
        }
        // In vocabulary order, as the chain would have met them in the whole list.
        std::sort(c.begin(), c.end(), [](const auto &x, const auto &y) { return x.id < y.id; });
        llama_token_data_array cur{c.data(), c.size(), -1, false};
        llama_sampler_apply(a.sampler, &cur);
        llama_token tok = cur.selected >= 0 ? cur.data[cur.selected].id : cur.data[0].id;
        llama_sampler_accept(a.sampler, tok);
        return tok;
    }

    // With a grammar: it removes the tokens it does not allow from the whole vocabulary, then
    // the chain picks among the rest (a top-k cut first could leave it nothing allowed).
    llama_token sample_constrained(active_request &a, int idx) {
        const float *logits = llama_get_logits_ith(ctx_, idx);
        int n = llama_vocab_n_tokens(vocab_);
        std::vector<llama_token_data> &c = candidates_;
        c.resize(size_t(n));
        for (llama_token i = 0; i < n; ++i)
            c[size_t(i)] = {i, logits[i], 0.0f};
        llama_token_data_array cur{c.data(), c.size(), -1, false};
        llama_sampler_apply(a.grammar, &cur);
        llama_sampler_apply(a.sampler, &cur);
        llama_token tok = cur.selected >= 0 ? cur.data[cur.selected].id : cur.data[0].id;
        llama_sampler_accept(a.grammar, tok);
        llama_sampler_accept(a.sampler, tok);
        return tok;
    }

    // Counts the tokens of a formatted prompt (used by history budgeting).
    int count(const std::vector<chat_message> &messages) {
        return int(tokenize(format(messages)).size());
    }

    // The transcript is complete (or the generation ended inside it): hand it on once.
    void send_transcript(active_request &a) {
        if (a.transcript_sent) return;
        a.transcript_sent = true;
        a.in_transcript = false;
        if (a.req.audio_mode == LLM_AUDIO_DIRECT) {
            a.split.close();
            a.result.transcript = a.split.transcript();
        } else {
            a.result.transcript = a.result.text;
        }
        if (a.req.on_transcript) a.req.on_transcript(a.result.transcript);
    }

    void finish(active_request &a, llm_stop reason) {
        if (a.done) return;
        a.done = true;
        std::string rest = a.utf8.flush();
        if (a.in_transcript) rest = a.split.feed(rest);
        rest = a.stops.push(rest);
        rest += a.stops.flush();
        if (!rest.empty() && reason != LLM_STOP_CANCELLED) {
            a.result.text += rest;
            if (a.req.on_piece) a.req.on_piece(rest);
        }
        if (a.audio && reason != LLM_STOP_CANCELLED && reason != LLM_STOP_ERROR &&
            reason != LLM_STOP_PREFILL) {
            if (a.req.audio_mode == LLM_AUDIO_TRANSCRIBE) {
                // The transcript is the whole text, without the white space around it.
                size_t b = a.result.text.find_first_not_of(" \n\r\t");
                size_t e = a.result.text.find_last_not_of(" \n\r\t");
                a.result.text = b == std::string::npos ? "" : a.result.text.substr(b, e - b + 1);
            }
            send_transcript(a);
        }
        a.result.stop_reason = reason;
        if (a.t_first != steady::time_point{})
            a.result.generate_ms =
                std::chrono::duration<double, std::milli>(steady::now() - a.t_first).count();
        if (a.sampler) llama_sampler_free(a.sampler);
        a.sampler = nullptr;
        if (a.grammar) llama_sampler_free(a.grammar);
        a.grammar = nullptr;
        if (a.req.on_done) a.req.on_done(a.result);
    }

    bool cancelled(const active_request &a) const { return a.req.cancel && a.req.cancel->load(); }

    // Evaluates the prompt of a new request after its slot's cached prefix; samples the first
    // token. Returns false when the request already ended.
    bool start(active_request &a) {
        a.t_start = steady::now();
        a.result.queue_ms =
            std::chrono::duration<double, std::milli>(a.t_start - a.t_submit).count();
        a.seq = a.req.slot >= 0 ? a.req.slot : n_slots_;
        if (cancelled(a)) {
            finish(a, LLM_STOP_CANCELLED);
            return false;
        }
        a.audio = !a.req.audio.empty();
        chunks_ptr chunks;
        int n_audio = 0;
        double features_ms = 0;
        auto t_audio = steady::now();
        if (a.audio) {
            if (!mctx_) {
                a.result.error = "this model takes no audio (no audio projector loaded)";
                finish(a, LLM_STOP_ERROR);
                return false;
            }
            // Features first: their token count is known before the history is cut to fit.
            chunks = audio_chunks(a.req.audio, a.result.error);
            if (!chunks) {
                finish(a, LLM_STOP_ERROR);
                return false;
            }
            features_ms = ms_since(t_audio);
            n_audio = int(mtmd_helper_get_n_pos(chunks.get()));
            a.result.audio_tokens = n_audio;
            a.result.audio_seconds = double(a.req.audio.size()) / std::max(1, audio_rate_);
        }
        int reply = std::max(16, a.req.max_tokens > 0 ? a.req.max_tokens : reserve_);
        if (a.audio && a.req.audio_mode == LLM_AUDIO_DIRECT)
            reply += std::max(0, a.req.max_transcript_tokens) + close_tokens_;
        const char *instruction =
            a.req.audio_mode == LLM_AUDIO_DIRECT ? DIRECT_INSTRUCTION : TRANSCRIBE_INSTRUCTION;
        // Room for the user's turn the engine adds: the instruction and the turn's markup.
        int turn = a.audio ? int(tokenize(instruction, false).size()) + 16 : 0;
        int budget = std::max(16, slot_ctx_ - reply - n_audio - turn);
        std::vector<chat_message> msgs;
        if (a.req.messages)
            msgs = a.req.messages(budget, [this, &a](const std::vector<chat_message> &m) {
                return int(tokenize(format(m, a.req.tools)).size());
            });
        // prompt: the text up to the audio (or all of it); suffix: the text after the audio.
        std::vector<llama_token> prompt, suffix;
        if (a.audio) {
            bool direct = a.req.audio_mode == LLM_AUDIO_DIRECT;
            msgs.push_back({"user", std::string(AUDIO_MARK) + "\n" + instruction});
            std::string text = format(msgs);
            // The reply opens the transcript, so the model starts inside it.
            if (direct) text += transcript_splitter::OPEN;
            size_t at = text.find(AUDIO_MARK);
            if (at == std::string::npos) {
                a.result.error = "the chat template dropped the audio's place in the prompt";
                finish(a, LLM_STOP_ERROR);
                return false;
            }
            prompt = tokenize(text.substr(0, at));
            suffix = tokenize(text.substr(at + AUDIO_MARK.size()), false);
            a.in_transcript = direct;
        } else {
            prompt = tokenize(format(msgs, a.req.tools));
        }
        int total = int(prompt.size()) + n_audio + int(suffix.size());
        a.result.prompt_tokens = total;
        if ((!a.audio && prompt.empty()) || total >= slot_ctx_) {
            a.result.error = "prompt of " + std::to_string(total) +
                             " tokens does not fit the context of " + std::to_string(slot_ctx_);
            finish(a, LLM_STOP_ERROR);
            return false;
        }
        std::vector<llama_token> &cached = slot_tokens_[size_t(a.seq)];
        size_t common = 0;
        if (a.seq < n_slots_)
            while (common < cached.size() && common < prompt.size() &&
                   cached[common] == prompt[common])
                ++common;
        llama_memory_t mem = llama_get_memory(ctx_);
        if (a.seq < n_slots_) common = shift_to_fit(mem, a.seq, cached, prompt, common);
        // Evaluate at least one token for fresh logits (with audio, the suffix gives them).
        if (!a.audio && common == prompt.size()) --common;
        if (!llama_memory_seq_rm(mem, a.seq, llama_pos(common), -1)) {
            llama_memory_seq_rm(mem, a.seq, -1, -1);
            common = 0;
        }
        cached.resize(common);
        a.result.cached_tokens = int(common);

        auto t_prompt = steady::now();
        abort_flag_ = a.req.cancel.get();
        bool ok = decode_tokens(prompt, common, llama_pos(common), a.seq, !a.audio);
        llama_pos n_past = llama_pos(prompt.size());
        if (a.audio && ok) {
            t_audio = steady::now();
            use_batch_threads(true); // the audio's embeddings: hundreds of positions
            for (size_t i = 0; i < mtmd_input_chunks_size(chunks.get()) && ok; ++i) {
                // The encoder cannot be stopped midway; a cancel stops before the next chunk
                // and inside llama_decode.
                if (cancelled(a)) {
                    ok = false;
                    break;
                }
                llama_pos next = n_past;
                ok = mtmd_helper_eval_chunk_single(mctx_, ctx_,
                                                   mtmd_input_chunks_get(chunks.get(), i), n_past,
                                                   a.seq, n_batch_, false, &next) == 0;
                n_past = next;
            }
            a.result.audio_ms = features_ms + ms_since(t_audio);
            if (ok) ok = decode_tokens(suffix, 0, n_past, a.seq, true);
            n_past += llama_pos(suffix.size());
        }
        abort_flag_ = nullptr;
        g_cancelling.store(false);
        if (!ok) {
            // Only what this request added goes: the slot's conversation before it stays cached
            // (wiping the slot would make the next turn evaluate the whole conversation again:
            // seconds with a 1.5B model).
            if (!llama_memory_seq_rm(mem, a.seq, llama_pos(common), -1)) {
                llama_memory_seq_rm(mem, a.seq, -1, -1);
                common = 0;
            }
            cached.resize(common);
            if (cancelled(a)) {
                take_last_error(); // llama.cpp's note of the abort
                finish(a, LLM_STOP_CANCELLED);
            } else {
                std::string why = take_last_error();
                a.result.error = std::string(a.audio ? "audio" : "prompt") + " evaluation failed" +
                                 (why.empty() ? "" : ": " + why);
                finish(a, LLM_STOP_ERROR);
            }
            return false;
        }
        // After audio the record keeps only the text before it: the KV entries past that
        // point are audio embeddings, which no text prompt can match.
        cached = prompt;
        a.track = !a.audio;
        a.n_past = int(n_past);
        a.result.prompt_ms = ms_since(t_prompt);
        log_debug("llm: slot %d: %s of %d tokens (%d new) in %.1f ms after %.1f ms queued", a.seq,
                  a.req.max_tokens > 0 ? "prompt" : "prefill", total, total - int(common),
                  a.result.prompt_ms, a.result.queue_ms);
        if (a.req.max_tokens <= 0) {
            finish(a, LLM_STOP_PREFILL); // the prompt is in the slot's cache; nothing to generate
            return false;
        }
        a.sampler = make_sampler(a.req.sampling, a.preselect);
        if (!config_.preselect) a.preselect = 0;
        if (!a.req.grammar.empty()) {
            // The grammar is not in the chain: the prompt replayed below is not its text.
            a.grammar = llama_sampler_init_grammar(vocab_, a.req.grammar.c_str(), "root");
            if (!a.grammar) {
                a.result.error = "the grammar does not parse";
                finish(a, LLM_STOP_ERROR);
                return false;
            }
        }
        // Replay the prompt into the penalty sampler's history.
        for (llama_token t : prompt)
            llama_sampler_accept(a.sampler, t);
        for (llama_token t : suffix)
            llama_sampler_accept(a.sampler, t);
        a.i_batch = -1;
        return accept(a, sample(a, -1));
    }

    // When the history no longer fits, the conversation drops its oldest turns: the prompt is
    // then the cached tokens with a piece cut out after the common prefix (the system prompt).
    // Without this, every token after the cut would be evaluated again, every turn from then
    // on (seconds for a 1B model at a full context). Instead the cut piece leaves the KV cache
    // and the cached tokens after it move down to their new positions (llama.cpp re-rotates
    // their keys): only what is new gets evaluated. Like llama-server's cache reuse, this is an
    // approximation: the moved entries were computed with the dropped turn in view (a test
    // checks that the reply is the one a fresh cache gives). Returns the new common prefix
    // length; `cached` is updated to match the cache.
    size_t shift_to_fit(llama_memory_t mem, int seq, std::vector<llama_token> &cached,
                        const std::vector<llama_token> &prompt, size_t common) {
        constexpr size_t MIN_RUN = 16; // shorter matches are not worth a shift
        if (common >= prompt.size() || common + MIN_RUN >= cached.size() ||
            !llama_memory_can_shift(mem))
            return common;
        // The longest run of the prompt after the prefix found further on in the cache.
        size_t best_at = 0, best_len = 0;
        for (size_t k = common + 1; k < cached.size(); ++k) {
            if (cached[k] != prompt[common]) continue;
            size_t len = 0;
            while (k + len < cached.size() && common + len < prompt.size() &&
                   cached[k + len] == prompt[common + len])
                ++len;
            if (len > best_len) {
                best_len = len;
                best_at = k;
            }
        }
        if (best_len < MIN_RUN) return common;
        llama_pos from = llama_pos(common), at = llama_pos(best_at), end = at + llama_pos(best_len);
        if (!llama_memory_seq_rm(mem, seq, end, -1) || !llama_memory_seq_rm(mem, seq, from, at))
            return common; // the caller's clean-up starts over from `common`
        llama_memory_seq_add(mem, seq, at, end, from - at);
        cached.assign(prompt.begin(), prompt.begin() + llama_pos(common + best_len));
        log_debug("llm: history cut: %d cached tokens moved down by %d, %zu kept", end - at,
                  at - from, common + best_len);
        return common + best_len;
    }

    // Handles a sampled token; returns false when the request ended.
    bool accept(active_request &a, llama_token tok) {
        if (a.t_first == steady::time_point{}) {
            a.t_first = steady::now();
            a.result.first_token_ms =
                std::chrono::duration<double, std::milli>(a.t_first - a.t_start).count();
        }
        if (cancelled(a)) {
            finish(a, LLM_STOP_CANCELLED);
            return false;
        }
        if (llama_vocab_is_eog(vocab_, tok)) {
            finish(a, LLM_STOP_EOG);
            return false;
        }
        ++a.result.generated_tokens;
        a.pending.assign(1, tok);
        std::string text = a.utf8.push(piece(tok));
        if (a.in_transcript) {
            ++a.transcript_tokens;
            text = a.split.feed(text); // the reply's start, once the transcript is closed
            if (a.split.done()) {
                send_transcript(a);
            } else if (a.transcript_tokens >= a.req.max_transcript_tokens) {
                // Close the transcript for the model, so that it goes on to reply.
                send_transcript(a);
                std::vector<llama_token> close =
                    tokenize(std::string(transcript_splitter::CLOSE) + "\n", false);
                a.pending.insert(a.pending.end(), close.begin(), close.end());
            }
        } else {
            ++a.reply_tokens;
        }
        text = a.stops.push(text);
        if (!text.empty()) {
            a.result.text += text;
            if (a.req.on_piece) a.req.on_piece(text);
        }
        if (a.stops.stopped()) {
            finish(a, LLM_STOP_STOP);
            return false;
        }
        if (a.reply_tokens >= a.req.max_tokens) {
            finish(a, LLM_STOP_LENGTH);
            return false;
        }
        if (a.n_past + int(a.pending.size()) >= slot_ctx_) {
            finish(a, LLM_STOP_CONTEXT);
            return false;
        }
        return true;
    }

    // llama.cpp takes n_threads_batch for any batch of more than one token, so a generation
    // step of several sessions (one token each) would get the prompt's thread count. A step
    // is generation whatever its width: it gets the generation threads, which leave room for
    // the other sessions' ASR and TTS (an OpenMP team short of cores waits at every barrier).
    static constexpr size_t SMALL_PROMPT = 32; // fewer tokens: evaluated on the generation threads
    static constexpr uint64_t SMALL_MODEL_PARAMS = 100'000'000; // see the thread counts above
    static constexpr int TINY_HEAD = 32; // narrower attention heads: no flash attention

    void use_batch_threads(bool prompt) {
        if (prompt == batch_threads_on_) return;
        llama_set_n_threads(ctx_, threads_, prompt ? threads_batch_ : threads_);
        batch_threads_on_ = prompt;
    }

    static bool paused(const active_request &a) { return a.req.pause && a.req.pause->load(); }
    static bool urgent(const active_request &a) { return a.req.urgent && a.req.urgent->load(); }

    // Each sequence in a step costs its own attention over its context (stories260K at a depth
    // of 1,700: 2-4 ms a sequence, more than the weights), so a reply whose listener waits
    // for its first words goes faster alone; see llm_request::urgent.
    static constexpr int URGENT_SKIP_MAX = 8;

    void step(std::vector<std::unique_ptr<active_request>> &active) {
        bool any_urgent = std::ranges::any_of(
            active, [this](auto &a) { return !paused(*a) && urgent(*a) && !cancelled(*a); });
        size_t n = 0;
        for (auto &a : active)
            if (!paused(*a)) n += a->pending.size();
        llama_batch batch = llama_batch_init(int(std::max<size_t>(1, n)), 0, 1);
        for (auto &a : active) {
            if (cancelled(*a)) {
                finish(*a, LLM_STOP_CANCELLED);
                continue;
            }
            a->i_batch = -1;
            if (paused(*a)) continue;
            if (any_urgent && !urgent(*a) && a->skipped < URGENT_SKIP_MAX) {
                ++a->skipped;
                continue;
            }
            a->skipped = 0;
            for (size_t j = 0; j < a->pending.size(); ++j) {
                int k = batch.n_tokens++;
                batch.token[k] = a->pending[j];
                batch.pos[k] = a->n_past + int(j);
                batch.n_seq_id[k] = 1;
                batch.seq_id[k][0] = a->seq;
                batch.logits[k] = j + 1 == a->pending.size();
                a->i_batch = k;
            }
        }
        if (batch.n_tokens > 0) {
            use_batch_threads(false);
            auto t_step = steady::now();
            int rc = llama_decode(ctx_, batch);
            if (double ms = ms_since(t_step); ms > 250)
                log_debug("llm: a step of %d sequences took %.1f ms", batch.n_tokens, ms);
            for (auto &a : active) {
                if (a->done || a->i_batch < 0) continue;
                if (rc != 0) {
                    a->result.error = "decode failed (" + std::to_string(rc) + ")";
                    finish(*a, LLM_STOP_ERROR);
                    continue;
                }
                if (a->track) {
                    std::vector<llama_token> &cached = slot_tokens_[size_t(a->seq)];
                    cached.insert(cached.end(), a->pending.begin(), a->pending.end());
                }
                a->n_past += int(a->pending.size());
                accept(*a, sample(*a, a->i_batch));
            }
        }
        llama_batch_free(batch);
        std::erase_if(active, [](const auto &a) { return a->done; });
    }

    int seq_of(const llm_request &r) const { return r.slot >= 0 ? r.slot : n_slots_; }

    // A prefill (a prompt put in the cache while the user speaks) only prepares: it must not
    // delay a reply. Each costs a prompt evaluation of the words since the last one, tens of ms
    // deep in a conversation, and every session sends one per partial transcript.
    static bool is_prefill(const llm_request &r) { return r.max_tokens <= 0 && r.audio.empty(); }

    // Moves the queued requests that can start now into `admit`, in order of arrival: replies
    // first; a prefill only when nothing is being generated and no reply starts in this round,
    // and one per round, so that the next round can take a reply that came meanwhile. A prefill
    // with a later request of its own slot queued behind it is out of date: it goes to
    // `superseded` (the later request evaluates its own prompt). A request whose sequence is
    // busy waits. Called with m_ held.
    void admit_locked(const std::vector<std::unique_ptr<active_request>> &active,
                      std::vector<queued> &admit, std::vector<queued> &superseded) {
        auto busy = [&](int seq) {
            for (auto &a : active)
                if (a->seq == seq) return true;
            for (auto &q : admit)
                if (seq_of(q.req) == seq) return true;
            return false;
        };
        for (auto it = queue_.begin(); it != queue_.end();) {
            int seq = seq_of(it->req);
            if (is_prefill(it->req) &&
                std::any_of(std::next(it), queue_.end(),
                            [&](const queued &q) { return seq_of(q.req) == seq; })) {
                superseded.push_back(std::move(*it));
                it = queue_.erase(it);
            } else if (is_prefill(it->req) || busy(seq)) {
                ++it;
            } else {
                admit.push_back(std::move(*it));
                it = queue_.erase(it);
            }
        }
        // Prefills use idle time only: while a reply is being generated, one would take the
        // worker for tens of ms (a session sends one per partial transcript, every few hundred
        // ms); it waits instead, and is dropped when its turn's reply arrives.
        if (!admit.empty() || !std::ranges::all_of(active, [](auto &a) { return paused(*a); }))
            return;
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (!busy(seq_of(it->req))) {
                admit.push_back(std::move(*it));
                queue_.erase(it);
                return;
            }
        }
    }

    void run(std::stop_token st) {
        std::vector<std::unique_ptr<active_request>> active;
        std::vector<queued> superseded;
        while (!st.stop_requested()) {
            std::vector<queued> admit;
            std::vector<int> released;
            {
                std::unique_lock lock(m_);
                auto news = [&] { return !queue_.empty() || !released_.empty() || woken_; };
                if (active.empty())
                    cv_.wait(lock, st, news);
                else if (std::ranges::all_of(active, [](auto &a) { return paused(*a); }))
                    // Nothing to decode until a request goes on (wake()) or comes; the timeout
                    // also finds a pause cleared, or a cancel, that nobody told of.
                    cv_.wait_for(lock, st, PAUSED_POLL, news);
                woken_ = false;
                if (st.stop_requested()) break;
                released.swap(released_);
                admit_locked(active, admit, superseded);
            }
            for (queued &q : superseded) {
                active_request a;
                a.req = std::move(q.req);
                a.t_submit = q.t_submit;
                finish(a, LLM_STOP_SUPERSEDED);
            }
            superseded.clear();
            for (int slot : released) {
                bool busy = false;
                for (auto &a : active)
                    busy |= a->seq == slot;
                if (!busy) {
                    llama_memory_seq_rm(llama_get_memory(ctx_), slot, -1, -1);
                    slot_tokens_[size_t(slot)].clear();
                }
            }
            for (queued &q : admit) {
                auto a = std::make_unique<active_request>();
                a->req = std::move(q.req);
                a->t_submit = q.t_submit;
                // The plain format has no end-of-turn token: stop where the next turn begins.
                if (template_.empty()) a->stops = stop_filter({"\nUser:", "User:"});
                if (start(*a)) active.push_back(std::move(a));
            }
            if (!active.empty()) step(active);
        }
        for (auto &a : active)
            finish(*a, LLM_STOP_CANCELLED);
        std::lock_guard lock(m_);
        for (queued &q : queue_) {
            active_request a;
            a.req = std::move(q.req);
            finish(a, LLM_STOP_CANCELLED);
        }
        queue_.clear();
    }

    llm_config config_;
    std::string name_;
    llama_model *model_ = nullptr;
    llama_context *ctx_ = nullptr;
    mtmd_context *mctx_ = nullptr; // audio projector, when loaded
    bool flash_ = false;           // flash attention not ruled out
    int audio_rate_ = 16000;
    int close_tokens_ = 0; // tokens of the transcript's closing mark, when the engine adds it
    const llama_vocab *vocab_ = nullptr;
    std::string template_;
    std::unique_ptr<minja::chat_template> jinja_; // for tools (and all prompts with a file)
    bool jinja_file_ = false;
    int slot_ctx_ = 0, n_slots_ = 0, n_batch_ = 512;
    int threads_ = 1, threads_batch_ = 1; // generation steps, prompts
    bool batch_threads_on_ = true;        // which of them llama.cpp uses for a batch
    bool small_model_ = true;             // under SMALL_MODEL_PARAMS
    double load_ms_ = 0;
    int reserve_ = 128; // reply room assumed by prefill requests
    std::atomic<bool> *abort_flag_ = nullptr;

    std::mutex m_;
    std::condition_variable_any cv_;
    std::deque<queued> queue_;
    std::vector<bool> slot_used_;
    std::vector<int> released_;
    bool woken_ = false; // wake() since the worker last looked
    static constexpr std::chrono::milliseconds PAUSED_POLL{20};
    std::vector<std::vector<llama_token>> slot_tokens_; // worker thread only
    std::vector<llama_token_data> candidates_;          // sample()'s, worker thread only
    std::jthread thread_;
};

} // namespace

std::unique_ptr<llm_engine> make_llm_llama(const llm_config &config) {
    return std::make_unique<llm_llama>(config);
}

std::unique_ptr<llm_engine> make_llm_remote(const llm_config &config);

std::unique_ptr<llm_engine> make_llm_engine(const llm_config &config) {
    if (!config.urls.empty()) return make_llm_remote(config);
    return make_llm_llama(config);
}

} // namespace parley
