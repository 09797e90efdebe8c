// llama.cpp engine: one model, one context with a sequence per slot, one worker thread.
//
// The worker admits queued requests (evaluating each prompt after its slot's cached prefix),
// then decodes one token for every active request in a single batch per step, so several
// sessions generate at once. Only this file sees llama.h.
#include "llm/llm.h"

#include "core/log.h"
#include "text/utf8.h"

#include <llama.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <thread>

namespace parley {

namespace {

using steady = std::chrono::steady_clock;

double ms_since(steady::time_point t) {
    return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

bool g_verbose = false;

void on_llama_log(ggml_log_level level, const char *text, void *) {
    if (g_verbose || level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

struct active_request {
    llm_request req;
    int seq = 0;
    llama_sampler *sampler = nullptr;
    llama_token last = 0;
    int n_past = 0;
    int i_batch = -1;
    llm_result result;
    utf8_stream utf8;
    stop_filter stops{{}};
    steady::time_point t_submit, t_start, t_first;
    bool done = false;
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
        // Generation (one token per sequence per step) gets half the cores by default: ASR and
        // TTS run beside it, and an OpenMP team that is short of cores waits at every barrier.
        // Prompt batches are larger and get all of them.
        int cores = int(std::max(1u, std::thread::hardware_concurrency()));
        int threads = config.threads > 0 ? config.threads : std::max(1, cores / 2);
        int threads_batch = config.threads_batch > 0 ? config.threads_batch : cores;
        cp.n_threads = threads;
        cp.n_threads_batch = threads_batch;
        cp.no_perf = true;
        cp.abort_callback = [](void *data) {
            auto *self = static_cast<llm_llama *>(data);
            return self->abort_flag_ && self->abort_flag_->load();
        };
        cp.abort_callback_data = this;
        ctx_ = llama_init_from_model(model_, cp);
        if (!ctx_) {
            llama_model_free(model_);
            throw llm_error("cannot create a context for " + path);
        }
        slot_ctx_ = int(llama_n_ctx_seq(ctx_));
        n_batch_ = int(llama_n_batch(ctx_));

        if (config.chat_template != "plain") {
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
        slot_used_.assign(size_t(n_slots_), false);
        slot_tokens_.assign(size_t(n_slots_ + 1), {});
        // Every llama_decode runs on the worker thread, the warm-up included: ggml's CPU backend
        // uses OpenMP, and libgomp keeps a thread team per calling thread. A decode on this
        // thread would leave an idle second team behind, libgomp would then count more threads
        // than cores and stop spin-waiting at barriers, and every token would wait on wake-ups
        // (measured: 1.5-2x slower generation at a depth of 300-800 tokens).
        std::promise<void> ready;
        thread_ = std::jthread([this, &ready](std::stop_token st) {
            if (config_.warmup) warmup();
            ready.set_value();
            run(st);
        });
        ready.get_future().wait();
        load_ms_ = ms_since(t0);
        name_ = path.substr(path.find_last_of('/') + 1);
        log_info(
            "llm: %s loaded in %.0f ms (context %d per slot, %d slots, %d/%d threads, template %s)",
            name_.c_str(), load_ms_, slot_ctx_, n_slots_, threads, threads_batch,
            template_.empty() ? "plain" : "model's own");
    }

    ~llm_llama() override {
        thread_.request_stop();
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
        llama_free(ctx_);
        llama_model_free(model_);
    }

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

    void submit(llm_request request) override {
        {
            std::lock_guard lock(m_);
            queue_.push_back({std::move(request), steady::now()});
        }
        cv_.notify_one();
    }

    std::string format(const std::vector<chat_message> &messages) override {
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

  private:
    struct queued {
        llm_request req;
        steady::time_point t_submit;
    };

    std::vector<llama_token> tokenize(const std::string &text) {
        int n = -llama_tokenize(vocab_, text.c_str(), int(text.size()), nullptr, 0, true, true);
        std::vector<llama_token> out(size_t(std::max(n, 0)));
        if (n > 0)
            llama_tokenize(vocab_, text.c_str(), int(text.size()), out.data(), n, true, true);
        return out;
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

    llama_sampler *make_sampler(const sampling_params &s) {
        llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
        auto penalties = [&] {
            if (s.repeat_penalty != 1.0f)
                llama_sampler_chain_add(chain, llama_sampler_init_penalties(
                                                   llama_vocab_n_tokens(vocab_), s.repeat_last_n,
                                                   s.repeat_penalty, 0.0f, 0.0f));
        };
        if (s.temperature <= 0.0f) {
            penalties();
            llama_sampler_chain_add(chain, llama_sampler_init_greedy());
            return chain;
        }
        uint32_t seed = s.seed ? s.seed : std::random_device{}();
        if (s.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(s.top_k));
        penalties(); // after top-k: cheap on a short candidate list
        llama_sampler_chain_add(chain, llama_sampler_init_top_p(s.top_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_min_p(s.min_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(s.temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
        return chain;
    }

    // Counts the tokens of a formatted prompt (used by history budgeting).
    int count(const std::vector<chat_message> &messages) {
        return int(tokenize(format(messages)).size());
    }

    void finish(active_request &a, const std::string &reason) {
        if (a.done) return;
        a.done = true;
        std::string rest = a.stops.push(a.utf8.flush());
        rest += a.stops.flush();
        if (!rest.empty() && reason != "cancelled") {
            a.result.text += rest;
            if (a.req.on_piece) a.req.on_piece(rest);
        }
        a.result.stop_reason = reason;
        if (a.t_first != steady::time_point{})
            a.result.generate_ms =
                std::chrono::duration<double, std::milli>(steady::now() - a.t_first).count();
        if (a.sampler) llama_sampler_free(a.sampler);
        a.sampler = nullptr;
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
            finish(a, "cancelled");
            return false;
        }
        int budget = std::max(
            16, slot_ctx_ - std::max(16, a.req.max_tokens > 0 ? a.req.max_tokens : reserve_));
        std::vector<chat_message> msgs =
            a.req.messages(budget, [this](const std::vector<chat_message> &m) { return count(m); });
        std::vector<llama_token> prompt = tokenize(format(msgs));
        a.result.prompt_tokens = int(prompt.size());
        if (prompt.empty() || int(prompt.size()) >= slot_ctx_) {
            a.result.error = "prompt of " + std::to_string(prompt.size()) +
                             " tokens does not fit the context of " + std::to_string(slot_ctx_);
            finish(a, "error");
            return false;
        }
        std::vector<llama_token> &cached = slot_tokens_[size_t(a.seq)];
        size_t common = 0;
        if (a.seq < n_slots_)
            while (common < cached.size() && common < prompt.size() &&
                   cached[common] == prompt[common])
                ++common;
        if (common == prompt.size()) --common; // evaluate at least one token for fresh logits
        llama_memory_t mem = llama_get_memory(ctx_);
        if (!llama_memory_seq_rm(mem, a.seq, llama_pos(common), -1)) {
            llama_memory_seq_rm(mem, a.seq, -1, -1);
            common = 0;
        }
        cached.resize(common);
        a.result.cached_tokens = int(common);

        auto t_prompt = steady::now();
        abort_flag_ = a.req.cancel.get();
        llama_batch batch = llama_batch_init(n_batch_, 0, 1);
        bool ok = true;
        for (size_t i = common; i < prompt.size() && ok;) {
            batch.n_tokens = 0;
            for (; i < prompt.size() && batch.n_tokens < n_batch_; ++i) {
                int k = batch.n_tokens++;
                batch.token[k] = prompt[i];
                batch.pos[k] = llama_pos(i);
                batch.n_seq_id[k] = 1;
                batch.seq_id[k][0] = a.seq;
                batch.logits[k] = i + 1 == prompt.size();
            }
            int rc = llama_decode(ctx_, batch);
            if (rc != 0) ok = false;
        }
        llama_batch_free(batch);
        abort_flag_ = nullptr;
        if (!ok) {
            llama_memory_seq_rm(mem, a.seq, -1, -1);
            cached.clear();
            if (cancelled(a)) {
                finish(a, "cancelled");
            } else {
                a.result.error = "prompt evaluation failed";
                finish(a, "error");
            }
            return false;
        }
        cached = prompt;
        a.n_past = int(prompt.size());
        a.result.prompt_ms = ms_since(t_prompt);
        if (a.req.max_tokens <= 0) {
            finish(a, "prefill"); // the prompt is in the slot's cache; nothing to generate
            return false;
        }
        a.sampler = make_sampler(a.req.sampling);
        // Replay the prompt into the penalty sampler's history.
        for (llama_token t : prompt)
            llama_sampler_accept(a.sampler, t);
        a.i_batch = -1;
        return accept(a, llama_sampler_sample(a.sampler, ctx_, -1));
    }

    // Handles a sampled token; returns false when the request ended.
    bool accept(active_request &a, llama_token tok) {
        if (a.t_first == steady::time_point{}) {
            a.t_first = steady::now();
            a.result.first_token_ms =
                std::chrono::duration<double, std::milli>(a.t_first - a.t_start).count();
        }
        if (cancelled(a)) {
            finish(a, "cancelled");
            return false;
        }
        if (llama_vocab_is_eog(vocab_, tok)) {
            finish(a, "eog");
            return false;
        }
        ++a.result.generated_tokens;
        std::string text = a.stops.push(a.utf8.push(piece(tok)));
        if (!text.empty()) {
            a.result.text += text;
            if (a.req.on_piece) a.req.on_piece(text);
        }
        if (a.stops.stopped()) {
            finish(a, "stop");
            return false;
        }
        if (a.result.generated_tokens >= a.req.max_tokens) {
            finish(a, "length");
            return false;
        }
        if (a.n_past + 1 >= slot_ctx_) {
            finish(a, "context");
            return false;
        }
        a.last = tok;
        return true;
    }

    void step(std::vector<std::unique_ptr<active_request>> &active) {
        llama_batch batch = llama_batch_init(int(active.size()), 0, 1);
        for (auto &a : active) {
            if (cancelled(*a)) {
                finish(*a, "cancelled");
                continue;
            }
            int k = batch.n_tokens++;
            batch.token[k] = a->last;
            batch.pos[k] = a->n_past;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = a->seq;
            batch.logits[k] = true;
            a->i_batch = k;
        }
        if (batch.n_tokens > 0) {
            int rc = llama_decode(ctx_, batch);
            for (auto &a : active) {
                if (a->done) continue;
                if (rc != 0) {
                    a->result.error = "decode failed (" + std::to_string(rc) + ")";
                    finish(*a, "error");
                    continue;
                }
                slot_tokens_[size_t(a->seq)].push_back(a->last);
                ++a->n_past;
                accept(*a, llama_sampler_sample(a->sampler, ctx_, a->i_batch));
            }
        }
        llama_batch_free(batch);
        std::erase_if(active, [](const auto &a) { return a->done; });
    }

    void run(std::stop_token st) {
        std::vector<std::unique_ptr<active_request>> active;
        while (!st.stop_requested()) {
            std::vector<queued> admit;
            std::vector<int> released;
            {
                std::unique_lock lock(m_);
                if (active.empty())
                    cv_.wait(lock, st, [&] { return !queue_.empty() || !released_.empty(); });
                if (st.stop_requested()) break;
                released.swap(released_);
                // Admit queued requests whose sequence is idle, in order.
                for (auto it = queue_.begin(); it != queue_.end();) {
                    int seq = it->req.slot >= 0 ? it->req.slot : n_slots_;
                    bool busy = false;
                    for (auto &a : active)
                        busy |= a->seq == seq;
                    for (auto &q : admit)
                        busy |= (q.req.slot >= 0 ? q.req.slot : n_slots_) == seq;
                    if (busy) {
                        ++it;
                        continue;
                    }
                    admit.push_back(std::move(*it));
                    it = queue_.erase(it);
                }
            }
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
            finish(*a, "cancelled");
        std::lock_guard lock(m_);
        for (queued &q : queue_) {
            active_request a;
            a.req = std::move(q.req);
            finish(a, "cancelled");
        }
        queue_.clear();
    }

    llm_config config_;
    std::string name_;
    llama_model *model_ = nullptr;
    llama_context *ctx_ = nullptr;
    const llama_vocab *vocab_ = nullptr;
    std::string template_;
    int slot_ctx_ = 0, n_slots_ = 0, n_batch_ = 512;
    double load_ms_ = 0;
    int reserve_ = 128; // reply room assumed by prefill requests
    std::atomic<bool> *abort_flag_ = nullptr;

    std::mutex m_;
    std::condition_variable_any cv_;
    std::deque<queued> queue_;
    std::vector<bool> slot_used_;
    std::vector<int> released_;
    std::vector<std::vector<llama_token>> slot_tokens_; // worker thread only
    std::jthread thread_;
};

} // namespace

std::unique_ptr<llm_engine> make_llm_llama(const llm_config &config) {
    return std::make_unique<llm_llama>(config);
}

} // namespace parley
