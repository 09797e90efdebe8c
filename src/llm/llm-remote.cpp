// Language model over OpenAI-compatible servers (llama-server, vLLM, another Parley, ...).
//
// Each request is a streamed chat completion (server-sent events) carrying the conversation's
// messages and tools. One thread per engine drives every transfer through libcurl's multi
// interface: connections are kept alive and reused (HTTP/2 where the server offers it over TLS),
// a cut reply closes its request at once (the server stops generating when the connection
// goes), and a paused request stops reading (the socket's flow control holds the server back).
//
// Several URLs make a pool: each request goes to the reachable member with the fewest requests
// in flight. A member that cannot be reached, or that fails a request, is down until its
// health check (GET /health, every second) answers again; a request that failed before any
// reply arrived is tried on the next member. With llama-server (recognised by its /props) the
// request also asks for prompt caching and a server slot per session, so the history sent
// unchanged from turn to turn is evaluated only where it is new.
//
// The prompt budget is estimated from bytes: llama-server's /tokenize on a sample at start,
// then the servers' own prompt token counts (usage) as replies come back. A prompt llama-server
// finds too long for its slot (its words tokenize worse than any before) is sent again, cut to
// the ratio the server counted.
#include "llm/llm.h"

#include "core/clock.h"
#include "core/http-client.h"
#include "core/log.h"
#include "core/worker.h"
#include "llm/tool-calls.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace parley {

std::unique_ptr<llm_engine> make_llm_remote(const llm_config &config);

namespace {

using json = nlohmann::json;

constexpr double BYTES_PER_TOKEN = 3; // the prompt budget's first estimate
constexpr int TOKENS_PER_MESSAGE = 8; // a message's markup in the chat template
constexpr double HEALTH_EVERY_MS = 1000;
constexpr size_t MAX_ERROR_BODY = 4096;

struct member {
    std::string base; // scheme://host:port[/prefix], without /v1
    bool up = false;
    std::string why_down;
    int in_flight = 0;
    bool llama_server = false; // /props answered: cache_prompt, id_slot, its samplers
    int server_slots = 0;
    int server_ctx = 0;
    bool props_known = false; // /props answered (or is not there)
    mono_time next_check{};
    CURL *check = nullptr; // a health check in flight
    curl_slist *check_headers = nullptr;
    std::string check_body;
};

json message_json(const chat_message &m) {
    json out = {{"role", m.role}, {"content", m.content}};
    if (!m.tool_calls.empty()) {
        json calls = json::array();
        for (const tool_call &c : m.tool_calls)
            calls.push_back({{"id", c.id},
                             {"type", "function"},
                             {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        out["tool_calls"] = std::move(calls);
    }
    if (m.role == "tool") out["tool_call_id"] = m.tool_call_id;
    return out;
}

// The text a prompt's messages hold, in bytes.
size_t text_bytes(const std::vector<chat_message> &list) {
    size_t bytes = 0;
    for (const chat_message &c : list) {
        bytes += c.content.size();
        for (const tool_call &k : c.tool_calls)
            bytes += k.name.size() + k.arguments.size();
    }
    return bytes;
}

struct transfer {
    size_t prompt_bytes = 0; // the messages' text sent
    llm_request req;
    mono_time submitted{}, started{}, first{};
    size_t member = 0;
    std::vector<size_t> tried;
    CURL *easy = nullptr;
    curl_slist *headers = nullptr;
    std::string body;
    std::string pending; // bytes of the event stream not yet read
    std::string raw;     // a reply that is not an event stream (an error), up to a bound
    bool events = false; // the reply is text/event-stream
    bool got_bytes = false;
    bool delivered = false; // a piece went to on_piece
    bool paused = false;
    int refits = 0; // sent again with the history cut to what the server counted
    mono_time last_byte{};
    llm_result result;
    std::map<int, tool_call> calls; // streamed tool calls by index
    char errbuf[CURL_ERROR_SIZE] = "";
};

class llm_remote : public llm_engine {
  public:
    explicit llm_remote(const llm_config &config)
        : api_key_(config.api_key), model_(config.remote_model),
          timeout_ms_(long(config.remote_timeout_s) * 1000), slots_(config.slots),
          ctx_(config.context) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw llm_error("llm: libcurl cannot start");
        for (const std::string &u : config.urls) {
            member m;
            m.base = api_base(u);
            if (m.base.empty())
                throw llm_error("llm: --llm-url " + u + " is not an http:// or https:// URL");
            members_.push_back(std::move(m));
        }
        if (members_.empty()) throw llm_error("llm: no --llm-url");
        auto t0 = mono_now();
        for (member &m : members_)
            probe(m);
        int smallest = 0;
        for (const member &m : members_)
            if (m.server_ctx > 0)
                smallest = smallest ? std::min(smallest, m.server_ctx) : m.server_ctx;
        if (smallest > 0) ctx_ = std::min(ctx_, smallest);
        // A session keeps a server slot (id_slot) while every llama-server has one for it;
        // sessions beyond that go to whichever slot is free.
        if (!config.remote_shared)
            for (const member &m : members_)
                if (m.llama_server && m.server_slots > 0) slots_ = std::min(slots_, m.server_slots);
        shared_ = config.remote_shared;
        slot_used_.assign(size_t(std::max(0, slots_)), false);
        load_ms_ = ms_between(t0, mono_now());
        multi_ = curl_multi_init();
        if (!multi_) throw llm_error("llm: curl_multi_init failed");
        curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        for (const member &m : members_)
            log_info("llm: %s %s%s", m.base.c_str(), m.up ? "up" : "down: ",
                     m.up ? (m.llama_server ? " (llama-server: prompt cache, slots)" : "")
                          : m.why_down.c_str());
        thread_ = std::thread([this] { run(); });
    }

    ~llm_remote() override {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        curl_multi_wakeup(multi_);
        thread_.join();
        curl_multi_cleanup(multi_);
    }

    std::string name() const override {
        std::string out = "remote";
        for (const member &m : members_)
            out += (out == "remote" ? " " : ", ") + m.base;
        return out + (model_.empty() ? "" : " (" + model_ + ")");
    }
    int slot_context() const override { return ctx_; }
    double load_ms() const override { return load_ms_; }

    int acquire_slot() override {
        std::lock_guard lock(mutex_);
        for (size_t i = 0; i < slot_used_.size(); ++i)
            if (!slot_used_[i]) {
                slot_used_[i] = true;
                return int(i);
            }
        return -1;
    }
    void release_slot(int slot) override {
        std::lock_guard lock(mutex_);
        if (slot >= 0 && size_t(slot) < slot_used_.size()) slot_used_[size_t(slot)] = false;
    }

    void submit(llm_request request) override {
        auto t = std::make_unique<transfer>();
        t->req = std::move(request);
        t->submitted = mono_now();
        {
            std::lock_guard lock(mutex_);
            incoming_.push_back(std::move(t));
        }
        curl_multi_wakeup(multi_);
    }

    void wake() override { curl_multi_wakeup(multi_); }

    // The request body's messages, as JSON text.
    std::string format(const std::vector<chat_message> &messages) override {
        json list = json::array();
        for (const chat_message &m : messages)
            list.push_back(message_json(m));
        return list.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    std::string format(const std::vector<chat_message> &messages,
                       const std::vector<tool_spec> &) override {
        return format(messages);
    }

  private:
    // At start, before the engine's thread: /props (llama-server: its context and slots), then
    // the health check.
    void probe(member &m) {
        http_reply props = http_call(m.base + "/props", "", "", api_key_, 5000, 1u << 20);
        if (props.status == 0) {
            m.why_down = props.error;
            return;
        }
        read_props(m, props.status, props.body);
        if (m.llama_server) {
            // Its tokenizer on a sample of prose: the budget's first estimate.
            static const std::string SAMPLE =
                "Once upon a time, in a quiet town by the sea, a little girl named Lily found "
                "a shiny red ball. She asked her mother, \"Can I keep it?\" Her mother smiled.";
            http_reply tok = http_call(m.base + "/tokenize", "application/json",
                                       json{{"content", SAMPLE}}.dump(), api_key_, 5000, 1u << 20);
            json j = json::parse(tok.body, nullptr, false);
            if (tok.status == 200 && j.is_object() && j.contains("tokens") &&
                j["tokens"].is_array())
                calibrate(SAMPLE.size(), int(j["tokens"].size()));
        }
        http_reply h = http_call(m.base + "/health", "", "", api_key_, 5000, 1u << 20);
        health(m, h.status, h.error);
    }

    void read_props(member &m, long status, const std::string &body) {
        if (status == 0 || status == 503) return; // not answering, or loading its model
        m.props_known = true;
        json j = json::parse(body, nullptr, false);
        if (status != 200 || !j.is_object() || !j.contains("default_generation_settings")) return;
        m.llama_server = true;
        if (j.contains("total_slots") && j["total_slots"].is_number_integer())
            m.server_slots = j["total_slots"].get<int>();
        const json &g = j["default_generation_settings"];
        if (g.is_object() && g.contains("n_ctx") && g["n_ctx"].is_number_integer())
            m.server_ctx = g["n_ctx"].get<int>();
    }

    // A server without /health (404) answers HTTP: up.
    void health(member &m, long status, const std::string &error) {
        bool was = m.up;
        m.up = (status >= 200 && status < 300) || status == 404;
        if (!m.up)
            m.why_down =
                status == 0 ? error : "its health check answers HTTP " + std::to_string(status);
        else if (!was && !m.why_down.empty())
            log_info("llm: %s is up again", m.base.c_str());
        m.next_check = mono_now() + std::chrono::milliseconds(int(HEALTH_EVERY_MS));
    }

    // A member that is down is checked again every second, in the background of the transfers:
    // /props until it has answered, then /health.
    void recheck_members() {
        mono_time now = mono_now();
        for (member &m : members_) {
            if (m.up || m.check || now < m.next_check) continue;
            m.check = curl_easy_init();
            if (!m.check) continue;
            m.check_body.clear();
            std::string url = m.base + (m.props_known ? "/health" : "/props");
            curl_easy_setopt(m.check, CURLOPT_URL, url.c_str());
            curl_easy_setopt(m.check, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(m.check, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(m.check, CURLOPT_TIMEOUT_MS, 2000L);
            curl_easy_setopt(
                m.check, CURLOPT_WRITEFUNCTION,
                +[](char *p, size_t, size_t n, void *out) -> size_t {
                    auto *body = static_cast<std::string *>(out);
                    if (body->size() < (1u << 20)) body->append(p, n);
                    return n;
                });
            curl_easy_setopt(m.check, CURLOPT_WRITEDATA, &m.check_body);
            if (!api_key_.empty()) {
                m.check_headers =
                    curl_slist_append(nullptr, ("Authorization: Bearer " + api_key_).c_str());
                curl_easy_setopt(m.check, CURLOPT_HTTPHEADER, m.check_headers);
            }
            curl_multi_add_handle(multi_, m.check);
        }
    }

    // A health check ended: true when `easy` was one.
    bool checked(CURL *easy, CURLcode rc) {
        for (member &m : members_) {
            if (m.check != easy) continue;
            long status = 0;
            if (rc == CURLE_OK) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(multi_, easy);
            curl_easy_cleanup(easy);
            m.check = nullptr;
            std::string error = rc == CURLE_OK ? "" : curl_easy_strerror(rc);
            curl_slist_free_all(m.check_headers);
            m.check_headers = nullptr;
            if (!m.props_known) {
                read_props(m, status, m.check_body);
                if (m.props_known)
                    m.next_check = {}; // the health check next, at once
                else
                    health(m, 0,
                           status == 0 ? error
                                       : "its /props answers HTTP " + std::to_string(status));
                return true;
            }
            health(m, status, error);
            return true;
        }
        return false;
    }

    void run() {
        set_thread_name("llm-remote");
        for (;;) {
            std::deque<std::unique_ptr<transfer>> fresh;
            {
                std::lock_guard lock(mutex_);
                if (stop_) break;
                fresh.swap(incoming_);
            }
            for (auto &t : fresh)
                start(std::move(t));
            watch();
            int running = 0;
            curl_multi_perform(multi_, &running);
            int left = 0;
            while (CURLMsg *msg = curl_multi_info_read(multi_, &left)) {
                if (msg->msg != CURLMSG_DONE) continue;
                CURLcode rc = msg->data.result;
                if (checked(msg->easy_handle, rc)) continue;
                auto it = std::find_if(active_.begin(), active_.end(),
                                       [&](const auto &t) { return t->easy == msg->easy_handle; });
                if (it != active_.end()) done(it, rc);
            }
            recheck_members();
            curl_multi_poll(multi_, nullptr, 0, active_.empty() ? 500 : 20, nullptr);
        }
        for (auto it = active_.begin(); it != active_.end();)
            it = end(it, LLM_STOP_CANCELLED, "");
        for (member &m : members_)
            if (m.check) {
                curl_multi_remove_handle(multi_, m.check);
                curl_easy_cleanup(m.check);
                curl_slist_free_all(m.check_headers);
                m.check = nullptr;
            }
    }

    // The member with the fewest requests in flight. Among equals, the session's own: slot s
    // goes to member s mod N while the load is even, so sessions spread over the pool and each
    // keeps returning to the server that has its conversation in its prompt cache.
    int pick(const transfer &t) {
        int best = -1;
        size_t n = members_.size();
        size_t home = t.req.slot >= 0 ? size_t(t.req.slot) % n : 0;
        for (size_t k = 0; k < n; ++k) {
            size_t i = (home + k) % n;
            const member &m = members_[i];
            if (!m.up || std::find(t.tried.begin(), t.tried.end(), i) != t.tried.end()) continue;
            if (best < 0 || m.in_flight < members_[size_t(best)].in_flight) best = int(i);
        }
        return best;
    }

    std::string why_none() const {
        std::string out = "no language model server is reachable:";
        for (const member &m : members_)
            out += " " + m.base + " (" + (m.why_down.empty() ? "busy" : m.why_down) + ")";
        return out;
    }

    void start(std::unique_ptr<transfer> t) {
        if (t->req.cancel && t->req.cancel->load()) return finish(*t, LLM_STOP_CANCELLED, "");
        if (t->req.max_tokens == 0) return finish(*t, LLM_STOP_PREFILL, "");
        if (!t->req.audio.empty())
            return finish(*t, LLM_STOP_ERROR, "a remote language model takes text, not audio");
        int i = pick(*t);
        if (i < 0) return finish(*t, LLM_STOP_ERROR, why_none());
        t->member = size_t(i);
        t->tried.push_back(size_t(i));
        member &m = members_[size_t(i)];
        if (t->body.empty()) {
            if (t->started.time_since_epoch().count() == 0) {
                t->started = mono_now();
                t->result.queue_ms = ms_between(t->submitted, t->started);
            }
            t->body = request_body(*t, m);
        }
        t->easy = curl_easy_init();
        if (!t->easy) return finish(*t, LLM_STOP_ERROR, "curl_easy_init failed");
        t->headers = curl_slist_append(nullptr, "Content-Type: application/json");
        t->headers = curl_slist_append(t->headers, "Accept: text/event-stream");
        t->headers = curl_slist_append(t->headers, "Expect:"); // no 100-continue round trip
        if (!api_key_.empty())
            t->headers =
                curl_slist_append(t->headers, ("Authorization: Bearer " + api_key_).c_str());
        std::string url = m.base + "/v1/chat/completions";
        CURL *e = t->easy;
        curl_easy_setopt(e, CURLOPT_URL, url.c_str());
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body.c_str());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(t->body.size()));
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms_, 10000L));
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
        curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
        t->last_byte = mono_now();
        m.in_flight++;
        log_debug("llm: request (slot %d) to %s, %d in flight there%s", t->req.slot, m.base.c_str(),
                  m.in_flight, t->req.pause && t->req.pause->load() ? ", held" : "");
        curl_multi_add_handle(multi_, e);
        active_.push_back(std::move(t));
    }

    std::string request_body(transfer &t, const member &m) {
        const llm_request &r = t.req;
        int reply = std::max(16, r.max_tokens);
        int budget = std::max(16, ctx_ - reply);
        std::vector<chat_message> msgs;
        if (r.messages)
            msgs =
                r.messages(budget, [bpt = bytes_per_token_](const std::vector<chat_message> &list) {
                    return int(double(text_bytes(list)) / bpt) +
                           TOKENS_PER_MESSAGE * int(list.size());
                });
        t.prompt_bytes = text_bytes(msgs);
        json messages = json::array();
        for (const chat_message &c : msgs)
            messages.push_back(message_json(c));
        const sampling_params &s = r.sampling;
        json body = {{"messages", std::move(messages)},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}},
                     {"max_tokens", r.max_tokens},
                     {"temperature", s.temperature},
                     {"top_p", s.top_p}};
        if (!model_.empty()) body["model"] = model_;
        if (s.seed != 0) body["seed"] = s.seed;
        if (!r.tools.empty()) {
            json tools = json::array();
            for (const tool_spec &k : r.tools)
                tools.push_back({{"type", "function"},
                                 {"function",
                                  {{"name", k.name},
                                   {"description", k.description},
                                   {"parameters", k.parameters}}}});
            body["tools"] = std::move(tools);
            // The engine's grammar for tools is "some call": the API's "required".
            if (!r.grammar.empty()) body["tool_choice"] = "required";
        } else if (!r.grammar.empty() && m.llama_server) {
            body["grammar"] = r.grammar;
        }
        if (m.llama_server) {
            body["top_k"] = s.top_k;
            body["min_p"] = s.min_p;
            body["repeat_penalty"] = s.repeat_penalty;
            body["repeat_last_n"] = s.repeat_last_n;
            body["cache_prompt"] = true;
            // A session keeps its server slot (its KV cache) while the server has one for each.
            if (!shared_ && r.slot >= 0 && r.slot < m.server_slots) body["id_slot"] = r.slot;
        }
        return body.dump(-1, ' ', false, json::error_handler_t::replace);
    }

    static size_t on_header(char *p, size_t, size_t n, void *self) {
        auto *t = static_cast<transfer *>(self);
        std::string line(p, n);
        std::transform(line.begin(), line.end(), line.begin(),
                       [](unsigned char c) { return char(std::tolower(c)); });
        if (line.starts_with("content-type:") &&
            line.find("text/event-stream") != std::string::npos)
            t->events = true;
        return n;
    }

    static size_t on_body(char *p, size_t, size_t n, void *self) {
        auto *t = static_cast<transfer *>(self);
        t->got_bytes = true;
        t->last_byte = mono_now();
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200 || !t->events) {
            if (t->raw.size() < MAX_ERROR_BODY) t->raw.append(p, std::min(n, MAX_ERROR_BODY));
            return n;
        }
        t->pending.append(p, n);
        size_t at;
        while ((at = t->pending.find('\n')) != std::string::npos) {
            std::string line = t->pending.substr(0, at);
            t->pending.erase(0, at + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.starts_with("data:")) event(*t, line.substr(line[5] == ' ' ? 6 : 5));
        }
        if (t->pending.size() > (1u << 20)) return 0; // a line without end: give up
        return n;
    }

    static void event(transfer &t, const std::string &data) {
        if (data == "[DONE]") return;
        json j = json::parse(data, nullptr, false);
        if (!j.is_object()) return;
        if (j.contains("error")) {
            const json &e = j["error"];
            t.result.error = e.is_object() && e.contains("message") && e["message"].is_string()
                                 ? e["message"].get<std::string>()
                                 : e.dump();
            t.result.stop_reason = LLM_STOP_ERROR;
            return;
        }
        if (j.contains("usage") && j["usage"].is_object()) {
            const json &u = j["usage"];
            t.result.prompt_tokens = u.value("prompt_tokens", t.result.prompt_tokens);
            t.result.generated_tokens = u.value("completion_tokens", t.result.generated_tokens);
            if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
                t.result.cached_tokens =
                    u["prompt_tokens_details"].value("cached_tokens", t.result.cached_tokens);
        }
        if (j.contains("timings") && j["timings"].is_object()) { // llama-server's
            const json &g = j["timings"];
            t.result.prompt_ms = g.value("prompt_ms", t.result.prompt_ms);
            t.result.cached_tokens = g.value("cache_n", t.result.cached_tokens);
        }
        if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;
        const json &c = j["choices"][0];
        if (!c.is_object()) return;
        if (c.contains("delta") && c["delta"].is_object()) {
            const json &d = c["delta"];
            if (d.contains("content") && d["content"].is_string()) {
                std::string piece = d["content"];
                if (!piece.empty()) deliver(t, piece);
            }
            if (d.contains("tool_calls") && d["tool_calls"].is_array())
                for (const json &k : d["tool_calls"]) {
                    if (!k.is_object()) continue;
                    tool_call &call = t.calls[k.value("index", 0)];
                    if (k.contains("id") && k["id"].is_string()) call.id = k["id"];
                    if (k.contains("function") && k["function"].is_object()) {
                        const json &f = k["function"];
                        if (f.contains("name") && f["name"].is_string())
                            call.name += f["name"].get<std::string>();
                        if (f.contains("arguments") && f["arguments"].is_string())
                            call.arguments += f["arguments"].get<std::string>();
                    }
                }
        }
        if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
            std::string why = c["finish_reason"];
            t.result.stop_reason = why == "length" ? LLM_STOP_LENGTH : LLM_STOP_EOG;
        }
    }

    static void deliver(transfer &t, const std::string &piece) {
        if (t.result.first_token_ms == 0) {
            t.first = mono_now();
            t.result.first_token_ms = ms_between(t.started, t.first);
        }
        t.delivered = true;
        t.result.text += piece;
        if (t.req.on_piece) t.req.on_piece(piece);
    }

    // Cancels, pauses and timeouts of the transfers in flight.
    void watch() {
        mono_time now = mono_now();
        for (auto it = active_.begin(); it != active_.end();) {
            transfer &t = **it;
            if (t.req.cancel && t.req.cancel->load()) {
                it = end(it, LLM_STOP_CANCELLED, "");
                continue;
            }
            bool pause = t.req.pause && t.req.pause->load();
            if (pause != t.paused) {
                log_debug("llm: request (slot %d) %s", t.req.slot, pause ? "paused" : "goes on");
                curl_easy_pause(t.easy, pause ? CURLPAUSE_RECV : CURLPAUSE_CONT);
                t.paused = pause;
                t.last_byte = now;
            }
            if (!t.paused && ms_between(t.last_byte, now) > double(timeout_ms_)) {
                member &m = members_[t.member];
                it = end(it, LLM_STOP_ERROR,
                         "llm " + m.base + ": no answer for " + std::to_string(timeout_ms_ / 1000) +
                             " s");
                continue;
            }
            ++it;
        }
    }

    void done(std::vector<std::unique_ptr<transfer>>::iterator it, CURLcode rc) {
        transfer &t = **it;
        member &m = members_[t.member];
        long status = 0;
        curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK) {
            std::string why = t.errbuf[0] ? t.errbuf : curl_easy_strerror(rc);
            m.up = false;
            m.why_down = why;
            m.next_check = mono_now() + std::chrono::milliseconds(int(HEALTH_EVERY_MS));
            log_warn("llm: %s: %s", m.base.c_str(), why.c_str());
            if (!t.got_bytes && !t.delivered) return retry(it);
            end(it, LLM_STOP_ERROR,
                "llm " + m.base + ": " + (t.delivered ? "the reply broke off: " : "") + why);
            return;
        }
        if (status != 200 || !t.events) {
            std::string message = t.raw;
            json j = json::parse(t.raw, nullptr, false);
            if (j.is_object() && j.contains("error") && j["error"].is_object() &&
                j["error"].contains("message") && j["error"]["message"].is_string())
                message = j["error"]["message"];
            if (message.size() > 300) message.resize(300);
            // llama-server counted more prompt tokens than a slot holds: the budget's estimate
            // was short for this prompt's words (a rarer vocabulary than before). It learns
            // this prompt's ratio and the request goes again, its history cut to fit.
            if (status == 400 && !t.delivered && t.refits < 2 && j.is_object() &&
                j["error"].is_object() &&
                j["error"].value("type", "") == "exceed_context_size_error" &&
                j["error"].contains("n_prompt_tokens") &&
                j["error"]["n_prompt_tokens"].is_number_integer()) {
                int counted = j["error"]["n_prompt_tokens"].get<int>();
                log_info("llm: %s counted %d prompt tokens, more than the budget's estimate for "
                         "%zu bytes: sent again with less history",
                         m.base.c_str(), counted, t.prompt_bytes);
                return refit(it, counted);
            }
            if (status >= 500) {
                m.up = false;
                m.why_down = "HTTP " + std::to_string(status);
                m.next_check = mono_now() + std::chrono::milliseconds(int(HEALTH_EVERY_MS));
                if (!t.delivered)
                    return retry(it, "HTTP " + std::to_string(status) + ": " + message);
            }
            end(it, LLM_STOP_ERROR,
                "llm " + m.base + ": HTTP " + std::to_string(status) + ": " + message);
            return;
        }
        llm_stop stop = t.result.stop_reason;
        if (stop == LLM_STOP_ERROR) {
            end(it, stop, "llm " + m.base + ": " + t.result.error);
            return;
        }
        if (stop == LLM_STOP_NONE) stop = LLM_STOP_EOG;
        calibrate(t.prompt_bytes, t.result.prompt_tokens);
        // Calls the server returned as structured tool calls: the text form the pipeline reads.
        for (auto &[index, call] : t.calls) {
            if (call.name.empty()) continue;
            if (call.arguments.empty()) call.arguments = "{}";
            deliver(t, tool_call_text(call));
        }
        end(it, stop, "");
    }

    // The budget's bytes per token follows what the servers count: the smallest ratio seen (a
    // prompt's template markup makes it an underestimate, the safe side).
    void calibrate(size_t bytes, int tokens) {
        if (tokens <= 0 || bytes < 64) return;
        lower_ratio(double(bytes) / tokens);
    }
    void lower_ratio(double bytes_per_token) {
        bytes_per_token_ = std::min(bytes_per_token_, std::max(0.5, bytes_per_token));
    }

    // The same request again, its messages chosen anew with the ratio of the prompt the server
    // refused (`counted` tokens).
    void refit(std::vector<std::unique_ptr<transfer>>::iterator it, int counted) {
        std::unique_ptr<transfer> t = take(it);
        if (counted > 0 && t->prompt_bytes > 0) lower_ratio(double(t->prompt_bytes) / counted);
        t->refits++;
        t->tried.pop_back(); // the member is fine: any may take it
        t->body.clear();     // made anew with the lower ratio
        resend(std::move(t));
    }

    // The same request on another member, or the error when none is left.
    void retry(std::vector<std::unique_ptr<transfer>>::iterator it, const std::string &why = {}) {
        std::unique_ptr<transfer> t = take(it);
        if (pick(*t) < 0) {
            std::string what =
                why.empty() ? why_none() : "llm " + members_[t->member].base + ": " + why;
            return finish(*t, LLM_STOP_ERROR, what);
        }
        resend(std::move(t));
    }

    // A transfer out of the active ones, its connection let go.
    std::unique_ptr<transfer> take(std::vector<std::unique_ptr<transfer>>::iterator it) {
        std::unique_ptr<transfer> t = std::move(*it);
        detach(*t);
        active_.erase(it);
        return t;
    }

    // Starts a taken transfer again, as if nothing had come back yet.
    void resend(std::unique_ptr<transfer> t) {
        t->pending.clear();
        t->raw.clear();
        t->events = t->got_bytes = false;
        t->errbuf[0] = 0;
        start(std::move(t));
    }

    void detach(transfer &t) {
        if (!t.easy) return;
        curl_multi_remove_handle(multi_, t.easy);
        curl_easy_cleanup(t.easy);
        curl_slist_free_all(t.headers);
        t.easy = nullptr;
        t.headers = nullptr;
        members_[t.member].in_flight--;
    }

    std::vector<std::unique_ptr<transfer>>::iterator
    end(std::vector<std::unique_ptr<transfer>>::iterator it, llm_stop stop,
        const std::string &error) {
        std::unique_ptr<transfer> t = std::move(*it);
        detach(*t);
        it = active_.erase(it);
        finish(*t, stop, error);
        return it;
    }

    void finish(transfer &t, llm_stop stop, const std::string &error) {
        log_debug("llm: request (slot %d) ends: %s after %.1f ms (first token %.1f ms)", t.req.slot,
                  llm_stop_name(stop), ms_between(t.submitted, mono_now()),
                  t.result.first_token_ms);
        t.result.stop_reason = stop;
        t.result.error = error;
        if (t.started.time_since_epoch().count() == 0) {
            t.started = mono_now();
            t.result.queue_ms = ms_between(t.submitted, t.started);
        }
        if (t.result.first_token_ms > 0) t.result.generate_ms = ms_between(t.first, mono_now());
        if (!error.empty()) log_warn("%s", error.c_str());
        if (t.req.on_done) t.req.on_done(t.result);
    }

    std::string api_key_, model_;
    long timeout_ms_;
    int slots_;
    bool shared_ = false; // --llm-shared: no id_slot
    int ctx_;
    double load_ms_ = 0;
    double bytes_per_token_ = BYTES_PER_TOKEN; // the engine's thread (and the constructor)
    std::vector<member> members_;              // this engine's thread only, after the constructor
    std::mutex mutex_;
    std::vector<bool> slot_used_;
    std::deque<std::unique_ptr<transfer>> incoming_;
    bool stop_ = false;
    CURLM *multi_ = nullptr;
    std::vector<std::unique_ptr<transfer>> active_;
    std::thread thread_;
};

} // namespace

std::unique_ptr<llm_engine> make_llm_remote(const llm_config &config) {
    return std::make_unique<llm_remote>(config);
}

} // namespace parley
