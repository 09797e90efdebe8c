#include "net/openai-rest.h"

#include "asr/asr.h"
#include "audio/audio-file.h"
#include "audio/resampler.h"
#include "audio/vad.h"
#include "core/base64.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/worker.h"
#include "llm/llm.h"
#include "llm/tool-calls.h"
#include "net/multipart.h"
#include "pipeline/slot-queue.h"
#include "text/phrase-chunker.h"
#include "text/subtitles.h"
#include "text/utf8.h"
#include "tts/tts.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>

namespace parley {

using json = nlohmann::json;

namespace {

constexpr size_t JSON_BODY_MAX = 1 << 20;
constexpr size_t SPEECH_INPUT_MAX = 4096; // characters, as OpenAI's
// The voices OpenAI's clients name: each speaks with the server's own voice.
const char *const OPENAI_VOICES[] = {"alloy", "ash",  "ballad",  "coral", "echo",  "fable", "nova",
                                     "onyx",  "sage", "shimmer", "verse", "marin", "cedar"};
const char *const SPEECH_FORMATS[] = {"mp3", "opus", "flac", "wav", "pcm"};

std::string dump(const json &j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// An OpenAI-shaped error answer.
void fail(http_answer &a, int status, const std::string &message,
          const std::string &type = "invalid_request_error", const std::string &param = {},
          const std::string &code = {}) {
    a.reply(status, "application/json", openai_error(message, type, param, code));
}

// A request body as a JSON object; nullopt after answering 400.
std::optional<json> json_body(const rest_request &req, http_answer &a) {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded()) {
        fail(a, 400,
             "We could not parse the JSON body of your request. (HINT: This likely means you "
             "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)");
        return std::nullopt;
    }
    if (!j.is_object()) {
        fail(a, 400, "the request body must be a JSON object");
        return std::nullopt;
    }
    return j;
}

// The text of a chat message's content: a string, or an array of parts of which the text ones
// count. Empty with *err set for anything else.
std::string content_text(const json &content, std::string *err) {
    if (content.is_string()) return content.get<std::string>();
    if (content.is_null()) return {};
    if (!content.is_array()) {
        *err = "content must be a string or an array of content parts";
        return {};
    }
    std::string out;
    for (const json &part : content) {
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
            *err = "each content part needs a string type";
            return {};
        }
        std::string type = part["type"];
        if (type != "text") {
            *err = "content parts of type " + quote_value(type) +
                   " are not supported here (text only)";
            return {};
        }
        if (!part.contains("text") || !part["text"].is_string()) {
            *err = "a text content part needs a string text";
            return {};
        }
        out += part["text"].get<std::string>();
    }
    return out;
}

std::string finish_reason(llm_stop s) {
    return s == LLM_STOP_LENGTH || s == LLM_STOP_CONTEXT ? "length" : "stop";
}

// The speech in 16 kHz audio, cut where the voice activity detector hears a pause, each piece
// transcribed on its own: segments with the times of their speech, and with words, the words'
// times in the file.
std::vector<timed_text>
transcribe_segments(asr_engine &asr, std::shared_ptr<const vad_model> vad, const vad_params &params,
                    const std::vector<int16_t> &s16k, std::vector<asr_word> *words = nullptr,
                    const std::function<void(const timed_text &)> &each = {}) {
    vad_stream detector(std::move(vad), params);
    std::vector<vad_event> events = detector.process(s16k);
    for (vad_event &e : detector.finish())
        events.push_back(std::move(e));
    std::vector<timed_text> out;
    int64_t from = 0, onset = 0;
    constexpr int64_t TAIL = VAD_SAMPLE_RATE / 5; // after the speech's end, for its last sound
    for (const vad_event &e : events) {
        if (e.type == VAD_EVENT_SPEECH_STARTED) {
            from = std::max<int64_t>(0, e.audio_start);
            onset = e.sample;
            continue;
        }
        int64_t to = std::min<int64_t>(int64_t(s16k.size()), e.sample + TAIL);
        if (to <= from) continue;
        auto stream = asr.open();
        stream->accept(std::span<const int16_t>(s16k).subspan(size_t(from), size_t(to - from)));
        std::string text;
        if (words) {
            std::vector<asr_word> these;
            text = stream->finish_timed(&these);
            const double offset = double(from) / VAD_SAMPLE_RATE;
            for (asr_word &w : these)
                words->push_back({std::move(w.word), offset + w.start, offset + w.end});
        } else {
            text = stream->finish();
        }
        out.push_back(
            {double(onset) / VAD_SAMPLE_RATE, double(e.sample) / VAD_SAMPLE_RATE, std::move(text)});
        if (each) each(out.back());
    }
    return out;
}

} // namespace

bool is_openai_voice(std::string_view name) {
    return std::find(std::begin(OPENAI_VOICES), std::end(OPENAI_VOICES), name) !=
           std::end(OPENAI_VOICES);
}

bool voice_available(const std::string &name, tts_engine *tts) {
    if (is_openai_voice(name)) return true;
    return tts && !name.empty() && name.size() <= 64 && tts->knows_voice(name);
}

std::string openai_error(const std::string &message, const std::string &type,
                         const std::string &param, const std::string &code) {
    return dump({{"error",
                  {{"message", message},
                   {"type", type},
                   {"param", param.empty() ? json(nullptr) : json(param)},
                   {"code", code.empty() ? json(nullptr) : json(code)}}}});
}

struct openai_rest::impl {
    session_engines eng;
    session_config cfg;
    server_info info;
    // Decoding and transcribing uploads: blocking work, off the network threads, one at a time.
    worker uploads{"rest-asr"};

    std::string llm_id() const { return info.llm.empty() ? std::string() : info.llm; }

    void models(http_answer &a);
    void chat(const rest_request &req, std::shared_ptr<http_answer> a);
    void speech(const rest_request &req, std::shared_ptr<http_answer> a);
    void transcription(const rest_request &req, std::shared_ptr<http_answer> a);
};

openai_rest::openai_rest(const session_engines &engines, const session_config &config,
                         const server_info &info)
    : impl_(std::make_unique<impl>()) {
    impl_->eng = engines;
    impl_->cfg = config;
    impl_->info = info;
}

openai_rest::~openai_rest() = default;

bool openai_rest::handles(std::string_view path) {
    return path.starts_with("/v1/");
}

size_t openai_rest::body_limit(std::string_view path, size_t upload_max) {
    if (path == "/v1/audio/transcriptions" || path == "/v1/audio/translations") return upload_max;
    return JSON_BODY_MAX;
}

void openai_rest::handle(rest_request req, std::shared_ptr<http_answer> answer) {
    const std::string &p = req.path;
    auto method_is = [&](const char *m) {
        if (req.method == m) return true;
        fail(*answer, 405, "Method " + req.method + " is not allowed on " + p + " (" + m + ")",
             "invalid_request_error", {}, "method_not_allowed");
        return false;
    };
    if (p == "/v1/models") {
        if (method_is("GET")) impl_->models(*answer);
    } else if (p == "/v1/chat/completions") {
        if (method_is("POST")) impl_->chat(req, answer);
    } else if (p == "/v1/audio/speech") {
        if (method_is("POST")) impl_->speech(req, answer);
    } else if (p == "/v1/audio/transcriptions") {
        if (method_is("POST")) impl_->transcription(req, answer);
    } else if (p == "/v1/audio/translations") {
        fail(*answer, 400,
             "Translation is not supported by this server: its recognisers transcribe English. "
             "Use /v1/audio/transcriptions.",
             "invalid_request_error", {}, "unsupported");
    } else {
        fail(*answer, 404, "Unknown request URL: " + req.method + " " + p + ".",
             "invalid_request_error", {}, "unknown_url");
    }
}

void openai_rest::impl::models(http_answer &a) {
    json data = json::array();
    int64_t created = unix_now();
    for (const std::string &id : {info.llm, info.asr, info.tts})
        if (!id.empty())
            data.push_back(
                {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "parley"}});
    a.reply(200, "application/json", dump({{"object", "list"}, {"data", data}}));
}

// POST /v1/chat/completions: the model's reply to the request's messages, whole or streamed.
void openai_rest::impl::chat(const rest_request &req, std::shared_ptr<http_answer> a) {
    auto body = json_body(req, *a);
    if (!body) return;
    json &j = *body;
    if (!eng.llm)
        return fail(*a, 503, "This server has no language model loaded (start it with --model).",
                    "server_error", "model", "model_not_loaded");
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
        return fail(*a, 400, "messages must be a non-empty array", "invalid_request_error",
                    "messages");
    std::vector<chat_message> messages;
    for (size_t i = 0; i < j["messages"].size(); ++i) {
        const json &m = j["messages"][i];
        std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
            return fail(*a, 400, where + " needs a string role", "invalid_request_error",
                        where + ".role");
        std::string role = m["role"];
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant" && role != "tool")
            return fail(*a, 400,
                        where + ".role " + quote_value(role) +
                            " is not supported (system, developer, user, assistant, tool)",
                        "invalid_request_error", where + ".role");
        std::string err;
        std::string text = content_text(m.contains("content") ? m["content"] : json(), &err);
        if (!err.empty())
            return fail(*a, 400, where + ": " + err, "invalid_request_error", where + ".content");
        chat_message msg{role, utf8_sanitize(text), {}, {}};
        if (role == "tool") {
            if (!m.contains("tool_call_id") || !m["tool_call_id"].is_string())
                return fail(*a, 400, where + ": a tool message needs its tool_call_id",
                            "invalid_request_error", where + ".tool_call_id");
            msg.tool_call_id = m["tool_call_id"].get<std::string>().substr(0, 128);
        }
        if (role == "assistant" && m.contains("tool_calls") && !m["tool_calls"].is_null()) {
            const json &calls = m["tool_calls"];
            if (!calls.is_array())
                return fail(*a, 400, where + ".tool_calls must be an array",
                            "invalid_request_error", where + ".tool_calls");
            for (const json &c : calls) {
                const json *f = c.is_object() && c.contains("function") && c["function"].is_object()
                                    ? &c["function"]
                                    : nullptr;
                if (!f || !f->contains("name") || !(*f)["name"].is_string() ||
                    !f->contains("arguments") || !(*f)["arguments"].is_string())
                    return fail(*a, 400,
                                where + ".tool_calls: each call needs function.name and "
                                        "function.arguments (a JSON string)",
                                "invalid_request_error", where + ".tool_calls");
                msg.tool_calls.push_back({c.contains("id") && c["id"].is_string()
                                              ? c["id"].get<std::string>().substr(0, 128)
                                              : "",
                                          (*f)["name"].get<std::string>().substr(0, 64),
                                          (*f)["arguments"].get<std::string>()});
            }
        }
        messages.push_back(std::move(msg));
    }
    llm_request r;
    r.sampling = cfg.sampling;
    r.max_tokens = cfg.max_tokens;
    for (const char *key : {"max_completion_tokens", "max_tokens"}) {
        if (!j.contains(key) || j[key].is_null()) continue;
        if (!j[key].is_number_integer() || j[key].get<int64_t>() < 1 ||
            j[key].get<int64_t>() > 1 << 20)
            return fail(*a, 400, std::string(key) + " must be a positive integer",
                        "invalid_request_error", key);
        r.max_tokens = int(std::min<int64_t>(j[key].get<int64_t>(), eng.llm->slot_context()));
        break;
    }
    if (j.contains("temperature") && !j["temperature"].is_null()) {
        if (!j["temperature"].is_number() || j["temperature"] < 0 || j["temperature"] > 2)
            return fail(*a, 400, "temperature must be a number from 0 to 2",
                        "invalid_request_error", "temperature");
        r.sampling.temperature = j["temperature"].get<float>();
    }
    if (j.contains("top_p") && !j["top_p"].is_null()) {
        if (!j["top_p"].is_number() || j["top_p"] <= 0 || j["top_p"] > 1)
            return fail(*a, 400, "top_p must be a number in (0, 1]", "invalid_request_error",
                        "top_p");
        r.sampling.top_p = j["top_p"].get<float>();
    }
    if (j.contains("seed") && !j["seed"].is_null()) {
        if (!j["seed"].is_number_integer())
            return fail(*a, 400, "seed must be an integer", "invalid_request_error", "seed");
        r.sampling.seed = uint32_t(j["seed"].get<int64_t>());
    }
    std::vector<std::string> stops;
    if (j.contains("stop") && !j["stop"].is_null()) {
        const json &s = j["stop"];
        if (s.is_string())
            stops.push_back(s);
        else if (s.is_array() && s.size() <= 4 &&
                 std::all_of(s.begin(), s.end(), [](const json &x) { return x.is_string(); }))
            for (const json &x : s)
                stops.push_back(x);
        else
            return fail(*a, 400, "stop must be a string or an array of up to 4 strings",
                        "invalid_request_error", "stop");
        std::erase_if(stops, [](const std::string &x) { return x.empty(); });
    }
    if (j.contains("n") && !j["n"].is_null() && j["n"] != 1)
        return fail(*a, 400, "n must be 1 here", "invalid_request_error", "n");
    // Tools: offered through the chat template; tool_choice "required" or a named function
    // constrains the reply to a call (a grammar from the tools' JSON Schemas).
    std::vector<tool_spec> tools;
    std::string grammar;
    if (j.contains("tools") && !j["tools"].is_null()) {
        std::string err;
        tools = parse_tools(j["tools"], &err);
        if (!err.empty()) return fail(*a, 400, err, "invalid_request_error", "tools");
    }
    if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
        const json &tc = j["tool_choice"];
        std::string only;
        bool forced = false;
        if (tc == "none") {
            tools.clear();
        } else if (tc == "required") {
            forced = true;
        } else if (tc.is_object() && tc.value("type", "") == "function" &&
                   tc.contains("function") && tc["function"].is_object() &&
                   tc["function"].contains("name") && tc["function"]["name"].is_string()) {
            forced = true;
            only = tc["function"]["name"];
        } else if (tc != "auto") {
            return fail(*a, 400,
                        "tool_choice must be none, auto, required or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                        "invalid_request_error", "tool_choice");
        }
        if (forced && tools.empty())
            return fail(*a, 400, "tool_choice asks for a call but no tools are given",
                        "invalid_request_error", "tool_choice");
        if (forced) {
            try {
                grammar = tool_call_grammar(tools, only);
            } catch (const std::exception &e) {
                return fail(*a, 400, std::string("tool_choice: ") + e.what(),
                            "invalid_request_error", "tool_choice");
            }
        }
    }
    if (j.contains("parallel_tool_calls") && !j["parallel_tool_calls"].is_null() &&
        !j["parallel_tool_calls"].is_boolean())
        return fail(*a, 400, "parallel_tool_calls must be true or false", "invalid_request_error",
                    "parallel_tool_calls");
    for (const char *key : {"stream", "logprobs"})
        if (j.contains(key) && !j[key].is_null() && !j[key].is_boolean())
            return fail(*a, 400, std::string(key) + " must be true or false",
                        "invalid_request_error", key);
    if (j.contains("stream_options") && !j["stream_options"].is_null() &&
        (!j["stream_options"].is_object() || (j["stream_options"].contains("include_usage") &&
                                              !j["stream_options"]["include_usage"].is_boolean())))
        return fail(*a, 400, "stream_options must be an object; include_usage true or false",
                    "invalid_request_error", "stream_options");
    bool stream = j.contains("stream") && j["stream"].is_boolean() && j["stream"].get<bool>();
    bool usage_in_stream = stream && j.contains("stream_options") &&
                           j["stream_options"].is_object() &&
                           j["stream_options"].value("include_usage", false);
    std::string model =
        j.contains("model") && j["model"].is_string() ? j["model"].get<std::string>() : llm_id();

    // A slot of its own when one is free (its KV cache keeps the prompt's prefix for the next
    // request with the same start); else the slot-less sequence. Never a place in the line
    // the voice sessions wait in.
    int slot = eng.slots ? eng.slots->try_take() : -1;
    struct state {
        std::mutex m;
        stop_filter filter;
        std::string text;
        // With tools: the reply is held back while it may still be a call (then it is sent as
        // tool_calls at the end); once it cannot be, what was held goes out as content.
        bool holding = false;
        size_t sent = 0;  // bytes of text streamed as content
        int too_long = 0; // the prompt's tokens, when more than the context leaves room for
        explicit state(std::vector<std::string> s) : filter(std::move(s)) {}
    };
    auto st = std::make_shared<state>(stops);
    st->holding = !tools.empty();
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    std::string id = "chatcmpl-" + random_hex(12);
    int64_t created = unix_now();
    auto chunk = [id, created, model](const json &delta, const json &finish) {
        return "data: " +
               dump({{"id", id},
                     {"object", "chat.completion.chunk"},
                     {"created", created},
                     {"model", model},
                     {"system_fingerprint", nullptr},
                     {"choices", json::array({{{"index", 0},
                                               {"delta", delta},
                                               {"logprobs", nullptr},
                                               {"finish_reason", finish}}})}}) +
               "\n\n";
    };
    r.slot = slot;
    r.cancel = cancel;
    r.tools = tools;
    r.grammar = grammar;
    r.messages = [messages, st](int budget, const auto &count) {
        if (int n = count(messages); n > budget) st->too_long = n;
        return messages;
    };
    r.on_piece = [st, a, cancel, stream, chunk](std::string_view piece) {
        std::lock_guard lock(st->m);
        std::string out = st->filter.push(piece);
        if (st->filter.stopped()) cancel->store(true);
        if (out.empty()) return;
        st->text += out;
        if (!stream) return;
        if (a->gone()) cancel->store(true);
        if (st->holding && may_be_tool_call(st->text)) return;
        st->holding = false;
        a->send_chunk(chunk({{"content", st->text.substr(st->sent)}}, nullptr));
        st->sent = st->text.size();
    };
    auto slots = eng.slots;
    r.on_done = [st, a, stream, chunk, slot, slots, id, created, model, usage_in_stream,
                 tools](const llm_result &res) {
        if (slot >= 0 && slots) slots->release(slot);
        std::lock_guard lock(st->m);
        if (res.stop_reason == LLM_STOP_ERROR) {
            // A prompt over the context is the request's fault (400), anything else the model's.
            std::string body =
                st->too_long
                    ? openai_error("The messages (" + std::to_string(st->too_long) +
                                       " tokens) and the reply do not fit this model's "
                                       "context: " +
                                       res.error,
                                   "invalid_request_error", "messages", "context_length_exceeded")
                    : openai_error("the model failed: " + res.error, "server_error", {}, {});
            if (!stream) return a->reply(st->too_long ? 400 : 500, "application/json", body);
            a->send_chunk("data: " + body + "\n\n");
            return a->end_stream();
        }
        st->text += st->filter.flush();
        std::string reason = st->filter.stopped() ? "stop" : finish_reason(res.stop_reason);
        // The model's calls, when tools were offered.
        parsed_reply parsed;
        if (!tools.empty()) parsed = parse_tool_calls(st->text, tools);
        json calls = json::array();
        for (tool_call &c : parsed.calls) {
            c.id = "call_" + random_hex(12);
            calls.push_back({{"id", c.id},
                             {"type", "function"},
                             {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        std::string content = calls.empty() ? st->text : parsed.content;
        if (!calls.empty()) reason = "tool_calls";
        if (stream && st->sent < content.size() &&
            content.compare(0, st->sent, st->text, 0, st->sent) == 0)
            a->send_chunk(chunk({{"content", content.substr(st->sent)}}, nullptr));
        if (stream && !calls.empty())
            for (size_t i = 0; i < calls.size(); i++) {
                json c = calls[i];
                c["index"] = i;
                a->send_chunk(chunk({{"tool_calls", json::array({c})}}, nullptr));
            }
        json usage = {{"prompt_tokens", res.prompt_tokens},
                      {"completion_tokens", res.generated_tokens},
                      {"total_tokens", res.prompt_tokens + res.generated_tokens},
                      {"prompt_tokens_details", {{"cached_tokens", res.cached_tokens}}}};
        json message = {
            {"role", "assistant"},
            {"content", calls.empty() || !content.empty() ? json(content) : json(nullptr)},
            {"refusal", nullptr}};
        if (!calls.empty()) message["tool_calls"] = calls;
        if (!stream) {
            return a->reply(200, "application/json",
                            dump({{"id", id},
                                  {"object", "chat.completion"},
                                  {"created", created},
                                  {"model", model},
                                  {"system_fingerprint", nullptr},
                                  {"choices", json::array({{{"index", 0},
                                                            {"message", message},
                                                            {"logprobs", nullptr},
                                                            {"finish_reason", reason}}})},
                                  {"usage", usage}}));
        }
        a->send_chunk(chunk(json::object(), reason));
        if (usage_in_stream)
            a->send_chunk("data: " +
                          dump({{"id", id},
                                {"object", "chat.completion.chunk"},
                                {"created", created},
                                {"model", model},
                                {"choices", json::array()},
                                {"usage", usage}}) +
                          "\n\n");
        a->send_chunk("data: [DONE]\n\n");
        a->end_stream();
    };
    if (stream) {
        a->start_stream("text/event-stream");
        a->send_chunk(
            chunk({{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}, nullptr));
    }
    eng.llm->submit(std::move(r));
}

// POST /v1/audio/speech: the input spoken, encoded as asked (or streamed as SSE deltas).
void openai_rest::impl::speech(const rest_request &req, std::shared_ptr<http_answer> a) {
    auto body = json_body(req, *a);
    if (!body) return;
    json &j = *body;
    if (!eng.tts || !eng.tts_worker)
        return fail(*a, 503, "This server has no speech engine (it runs with --tts none).",
                    "server_error", "model", "model_not_loaded");
    if (!j.contains("input") || !j["input"].is_string() || j["input"].get<std::string>().empty())
        return fail(*a, 400, "input must be a non-empty string", "invalid_request_error", "input");
    std::string input = utf8_sanitize(j["input"].get<std::string>());
    if (input.size() > SPEECH_INPUT_MAX)
        return fail(*a, 400,
                    "input is limited to " + std::to_string(SPEECH_INPUT_MAX) + " characters",
                    "invalid_request_error", "input", "string_too_long");
    tts_params params = cfg.tts;
    if (j.contains("voice")) {
        std::string voice = j["voice"].is_string() ? j["voice"].get<std::string>() : "";
        if (j["voice"].is_object() && j["voice"].contains("id") && j["voice"]["id"].is_string())
            voice = j["voice"]["id"];
        if (!is_openai_voice(voice)) {
            if (!voice_available(voice, eng.tts))
                return fail(*a, 400,
                            "voice " + quote_value(voice) +
                                " is not available: use one of OpenAI's voice names (each "
                                "speaks with this server's voice) or one of the engine's",
                            "invalid_request_error", "voice");
            params.voice = voice;
        }
    }
    if (j.contains("speed") && !j["speed"].is_null()) {
        if (!j["speed"].is_number() || j["speed"] < 0.25 || j["speed"] > 4.0)
            return fail(*a, 400, "speed must be a number from 0.25 to 4.0", "invalid_request_error",
                        "speed");
        params.rate_wpm = int(std::lround(params.rate_wpm * j["speed"].get<double>()));
    }
    std::string format = "mp3";
    if (j.contains("response_format")) {
        format = j["response_format"].is_string() ? j["response_format"].get<std::string>() : "";
        if (std::find(std::begin(SPEECH_FORMATS), std::end(SPEECH_FORMATS), format) ==
            std::end(SPEECH_FORMATS))
            return fail(*a, 400,
                        "response_format " + quote_value(format) +
                            " is not supported (mp3, opus, flac, wav, pcm)",
                        "invalid_request_error", "response_format");
    }
    bool sse = false;
    if (j.contains("stream_format")) {
        std::string sf =
            j["stream_format"].is_string() ? j["stream_format"].get<std::string>() : "";
        if (sf != "sse" && sf != "audio")
            return fail(*a, 400, "stream_format must be sse or audio", "invalid_request_error",
                        "stream_format");
        sse = sf == "sse";
    }
    if (std::string err = eng.tts->check(params); !err.empty())
        return fail(*a, 400, err, "invalid_request_error", "voice");
    int out_rate = format == "pcm" ? 24000 : cfg.audio_out_rate; // OpenAI's pcm is 24 kHz
    tts_engine *tts = eng.tts;
    // On the TTS worker, which every session's speech goes through: phrase by phrase, so a
    // long input does not hold a session's first phrase back for long.
    std::vector<std::string> phrases;
    {
        phrase_chunker ch;
        phrases = ch.push(input);
        if (std::string last = ch.flush(); !last.empty()) phrases.push_back(last);
    }
    struct job {
        std::vector<std::string> phrases;
        size_t next = 0;
        std::vector<int16_t> pcm;
    };
    auto work = std::make_shared<job>();
    work->phrases = std::move(phrases);
    auto step = std::make_shared<std::function<void()>>();
    worker *w = eng.tts_worker;
    // Raw PCM needs no header: each phrase goes out as it is spoken (chunked), as OpenAI's does.
    bool chunked = !sse && format == "pcm";
    if (sse) a->start_stream("text/event-stream");
    if (chunked) a->start_stream(audio_mime_type(format));
    // The queued task holds the step; the step holds itself weakly (a strong hold would be a
    // cycle, and the job with its audio would never be freed).
    std::weak_ptr<std::function<void()>> self = step;
    *step = [work, self, w, a, tts, params, out_rate, format, sse, chunked] {
        try {
            if (a->gone()) return;
            if (work->next < work->phrases.size()) {
                tts_result r = tts->synthesize(work->phrases[work->next++], params);
                std::vector<int16_t> pcm = resample(r.pcm, r.sample_rate, out_rate);
                if (sse)
                    a->send_chunk(
                        "data: " +
                        dump({{"type", "speech.audio.delta"},
                              {"audio", base64_encode(encode_audio(
                                            pcm, out_rate, format == "pcm" ? "pcm" : format))}}) +
                        "\n\n");
                else if (chunked)
                    a->send_chunk(encode_audio(pcm, out_rate, "pcm"));
                else
                    work->pcm.insert(work->pcm.end(), pcm.begin(), pcm.end());
                if (auto next = self.lock()) w->post([next] { (*next)(); });
                return;
            }
            if (sse) {
                a->send_chunk("data: " + dump({{"type", "speech.audio.done"}}) + "\n\n");
                return a->end_stream();
            }
            if (chunked) return a->end_stream();
            a->reply(200, audio_mime_type(format), encode_audio(work->pcm, out_rate, format));
        } catch (const std::exception &e) {
            log_warn("rest: speech failed: %s", e.what());
            if (sse) {
                a->send_chunk("data: " +
                              openai_error(std::string("speech failed: ") + e.what(),
                                           "server_error", {}, {}) +
                              "\n\n");
                return a->end_stream();
            }
            if (chunked) return a->abort_stream(); // the audio so far, then a cut connection
            fail(*a, 500, std::string("speech failed: ") + e.what(), "server_error");
        }
    };
    w->post([step] { (*step)(); });
}

// POST /v1/audio/transcriptions: a multipart upload's audio, transcribed.
void openai_rest::impl::transcription(const rest_request &req, std::shared_ptr<http_answer> a) {
    if (!eng.asr)
        return fail(*a, 503, "This server has no speech recogniser (it runs with --asr none).",
                    "server_error", "model", "model_not_loaded");
    std::string boundary = multipart_boundary(req.content_type);
    if (boundary.empty())
        return fail(*a, 400, "send the audio as multipart/form-data (a file field)",
                    "invalid_request_error", "file");
    auto parts = std::make_shared<std::vector<form_part>>();
    auto body = std::make_shared<std::string>(req.body);
    if (std::string err = parse_multipart(*body, boundary, parts.get()); !err.empty())
        return fail(*a, 400, err, "invalid_request_error", "file");
    const form_part *file = find_part(*parts, "file");
    if (!file || file->data.empty())
        return fail(*a, 400, "a file field with the audio is required", "invalid_request_error",
                    "file");
    auto field = [&](const char *name) {
        const form_part *p = find_part(*parts, name);
        return p ? std::string(p->data) : std::string();
    };
    std::string format = field("response_format");
    if (format.empty()) format = "json";
    if (format != "json" && format != "text" && format != "verbose_json" && format != "srt" &&
        format != "vtt")
        return fail(*a, 400,
                    "response_format " + quote_value(format) +
                        " is not supported (json, text, verbose_json, srt, vtt)",
                    "invalid_request_error", "response_format");
    // timestamp_granularities[]: word and/or segment (segment alone when none is named).
    bool granularity_named = false, want_words = false, want_segments = false;
    for (const form_part &p : *parts) {
        if (p.name != "timestamp_granularities[]" && p.name != "timestamp_granularities") continue;
        granularity_named = true;
        if (p.data == "word")
            want_words = true;
        else if (p.data == "segment")
            want_segments = true;
        else
            return fail(*a, 400,
                        "timestamp_granularities " + quote_value(std::string(p.data)) +
                            " is not one of word, segment",
                        "invalid_request_error", "timestamp_granularities");
    }
    if (!granularity_named) want_segments = true;
    if (granularity_named && format != "verbose_json")
        return fail(*a, 400, "timestamp_granularities needs response_format verbose_json",
                    "invalid_request_error", "timestamp_granularities");
    std::string language = field("language");
    if (!language.empty() && language != "en")
        return fail(*a, 400,
                    "language " + quote_value(language) +
                        " is not available: this server's recogniser transcribes English (en)",
                    "invalid_request_error", "language", "unsupported_language");
    std::string stream_field = field("stream");
    bool stream = stream_field == "true";
    if (!stream_field.empty() && stream_field != "true" && stream_field != "false")
        return fail(*a, 400, "stream must be true or false", "invalid_request_error", "stream");
    if (stream && format != "json" && format != "text")
        return fail(*a, 400, "stream takes response_format json or text", "invalid_request_error",
                    "response_format");
    std::string_view audio = file->data;
    asr_engine *asr = eng.asr;
    if (want_words && !asr->times_words())
        return fail(*a, 400,
                    "word timestamps are not available from the " + asr->name() +
                        " recogniser (segment timestamps are)",
                    "invalid_request_error", "timestamp_granularities", "unsupported");
    std::shared_ptr<const vad_model> vad = eng.vad ? eng.vad : make_energy_vad();
    vad_params vp = cfg.vad;
    uploads.post([a, body, audio, asr, format, vad, vp, stream, want_words, want_segments] {
        pcm_audio pcm;
        try {
            pcm = parse_audio_file(audio);
        } catch (const audio_file_error &e) {
            return fail(*a, 400,
                        std::string("the file is not audio this server can read: ") + e.what(),
                        "invalid_request_error", "file", "invalid_file_format");
        }
        try {
            std::vector<int16_t> s16k = resample(pcm.samples, pcm.sample_rate, ASR_SAMPLE_RATE);
            json usage = {{"type", "duration"}, {"seconds", int(std::ceil(pcm.seconds()))}};
            if (stream) {
                // Server-sent events: a delta as each stretch of speech is transcribed.
                a->start_stream("text/event-stream");
                std::string text;
                transcribe_segments(*asr, vad, vp, s16k, nullptr, [&](const timed_text &t) {
                    if (t.text.empty()) return;
                    std::string delta = (text.empty() ? "" : " ") + t.text;
                    text += delta;
                    a->send_chunk(
                        "data: " + dump({{"type", "transcript.text.delta"}, {"delta", delta}}) +
                        "\n\n");
                });
                a->send_chunk(
                    "data: " +
                    dump({{"type", "transcript.text.done"}, {"text", text}, {"usage", usage}}) +
                    "\n\n");
                return a->end_stream();
            }
            if (format == "json" || format == "text") {
                // The whole file in one pass, as the engine's own command line decodes it.
                auto stream = asr->open();
                stream->accept(s16k);
                std::string text = stream->finish();
                if (format == "text")
                    return a->reply(200, "text/plain; charset=utf-8", text + "\n");
                return a->reply(200, "application/json", dump({{"text", text}, {"usage", usage}}));
            }
            std::vector<asr_word> words;
            std::vector<timed_text> segments =
                transcribe_segments(*asr, vad, vp, s16k, want_words ? &words : nullptr);
            if (format == "srt")
                return a->reply(200, "text/plain; charset=utf-8", to_srt(segments));
            if (format == "vtt")
                return a->reply(200, "text/plain; charset=utf-8", to_vtt(segments));
            std::string text;
            json list = json::array();
            for (size_t i = 0; i < segments.size(); ++i) {
                const timed_text &t = segments[i];
                if (!t.text.empty()) text += (text.empty() ? "" : " ") + t.text;
                list.push_back({{"id", i},
                                {"seek", int(std::lround(t.start * 100))},
                                {"start", t.start},
                                {"end", t.end},
                                {"text", t.text}});
            }
            json reply = {{"task", "transcribe"},
                          {"language", "english"},
                          {"duration", pcm.seconds()},
                          {"text", text}};
            if (want_words) {
                json timed = json::array();
                for (const asr_word &w : words)
                    timed.push_back({{"word", w.word}, {"start", w.start}, {"end", w.end}});
                reply["words"] = std::move(timed);
            }
            if (want_segments) reply["segments"] = std::move(list);
            reply["usage"] = usage;
            a->reply(200, "application/json", dump(reply));
        } catch (const std::exception &e) {
            log_warn("rest: transcription failed: %s", e.what());
            fail(*a, 500, std::string("transcription failed: ") + e.what(), "server_error");
        }
    });
}

} // namespace parley
