#include "net/realtime-protocol.h"

#include "audio/g711.h"
#include "audio/resampler.h"
#include "core/base64.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/secret.h"
#include "llm/tool-calls.h"
#include "net/openai-rest.h"
#include "pipeline/playout.h"
#include "text/utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

namespace parley {

using json = nlohmann::json;

namespace {

constexpr size_t INSTRUCTIONS_MAX = 64 << 10;
constexpr size_t ITEM_TEXT_MAX = 64 << 10;
constexpr size_t EVENT_ID_MAX = 64;
constexpr int MAX_OUTPUT_TOKENS_LIMIT = 4096;
const json EMPTY_OBJECT = json::object();

std::string dump(const json &j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The error's type: the engines' and the server's own failures are server_error, the rest is
// the client's.
const char *error_type_of(const std::string &code) {
    static const char *const server[] = {"llm_failed",   "asr_failed",      "tts_failed",
                                         "store_failed", "internal",        "server_error",
                                         "no_model",     "tts_unavailable", "echo_unavailable",
                                         "queued",       "session_taken",   "idle_timeout"};
    for (const char *s : server)
        if (code == s) return "server_error";
    return "invalid_request_error";
}

json error_event_json(const std::string &code, const std::string &message,
                      const std::string &param = {}, const std::string &event_id = {}) {
    json e = {{"type", error_type_of(code)},
              {"code", code},
              {"message", message},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"event_id", event_id.empty() ? json(nullptr) : json(event_id)}};
    return {{"type", "error"}, {"error", std::move(e)}};
}

// A string field of an object; empty when absent or not a string.
std::string string_field(const json &j, const char *key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                  : std::string();
}

// A client event that cannot be taken: the error names the field.
struct rt_error {
    std::string code, message, param;
};

struct audio_format {
    std::string type = "audio/pcm";
    int rate = REALTIME_PCM_RATE;
    int sample_rate() const { return type == "audio/pcm" ? rate : 8000; }
    bool operator==(const audio_format &) const = default;
};

json format_json(const audio_format &f) {
    json j = {{"type", f.type}};
    if (f.type == "audio/pcm") j["rate"] = f.rate;
    return j;
}

// The session as the client configured it (session.update merges into it).
struct rt_settings {
    std::string model;
    std::string instructions;
    bool audio_out = true;                // output_modalities ["audio"]; false: ["text"]
    std::optional<int> max_output_tokens; // unset: "inf" (the server's limit)
    audio_format in_format, out_format;
    json transcription; // null: no transcription events
    json noise_reduction = nullptr;
    bool vad = true; // turn_detection not null
    std::string vad_type = "server_vad";
    double threshold = 0.5;
    int prefix_padding_ms = 300, silence_duration_ms = 500;
    std::string eagerness = "auto";
    bool create_response = true, interrupt_response = true;
    std::string voice = "alloy";
    double speed = 1.0;
    json tools = json::array(); // as given (sent back)
    std::vector<tool_spec> tool_specs;
    json tool_choice = "auto"; // auto, none, required, {"type": "function", "name": ...}
    json tracing = nullptr, truncation = "auto", prompt = nullptr, include = nullptr;
};

json settings_json(const rt_settings &s, const std::string &id) {
    json td = nullptr;
    if (s.vad) {
        td = {{"type", s.vad_type},
              {"create_response", s.create_response},
              {"interrupt_response", s.interrupt_response}};
        if (s.vad_type == "server_vad") {
            td["threshold"] = s.threshold;
            td["prefix_padding_ms"] = s.prefix_padding_ms;
            td["silence_duration_ms"] = s.silence_duration_ms;
            td["idle_timeout_ms"] = nullptr;
        } else {
            td["eagerness"] = s.eagerness;
        }
    }
    return {{"type", "realtime"},
            {"object", "realtime.session"},
            {"id", id},
            {"model", s.model},
            {"output_modalities", json::array({s.audio_out ? "audio" : "text"})},
            {"instructions", s.instructions},
            {"tools", s.tools},
            {"tool_choice", s.tool_choice},
            {"max_output_tokens", s.max_output_tokens ? json(*s.max_output_tokens) : json("inf")},
            {"tracing", s.tracing},
            {"truncation", s.truncation},
            {"prompt", s.prompt},
            {"include", s.include},
            {"expires_at", 0},
            {"audio",
             {{"input",
               {{"format", format_json(s.in_format)},
                {"transcription", s.transcription},
                {"noise_reduction", s.noise_reduction},
                {"turn_detection", td}}},
              {"output",
               {{"format", format_json(s.out_format)}, {"voice", s.voice}, {"speed", s.speed}}}}}};
}

std::optional<rt_error> unknown(const std::string &param) {
    return rt_error{"unknown_parameter", "Unknown parameter: " + quote_value(param) + ".", param};
}

std::optional<rt_error> invalid(const std::string &param, const std::string &what) {
    return rt_error{"invalid_value", "Invalid value for " + quote_value(param) + ": " + what + ".",
                    param};
}

std::optional<rt_error> parse_format(const json &j, const std::string &param, bool output,
                                     audio_format *f) {
    if (!j.is_object()) return invalid(param, "an object with type is expected");
    for (auto &[k, v] : j.items())
        if (k != "type" && k != "rate") return unknown(param + "." + k);
    if (j.contains("type")) {
        if (!j["type"].is_string()) return invalid(param + ".type", "a string is expected");
        std::string t = j["type"];
        if (t != "audio/pcm" && t != "audio/pcmu" && t != "audio/pcma")
            return invalid(param + ".type", "audio/pcm, audio/pcmu or audio/pcma is supported");
        f->type = t;
    }
    if (j.contains("rate")) {
        if (!j["rate"].is_number_integer())
            return invalid(param + ".rate", "an integer is expected");
        int rate = j["rate"];
        // Input: any rate from 8 to 48 kHz; output: the session's 24 kHz.
        if (output ? rate != REALTIME_PCM_RATE : (rate < 8000 || rate > 48000))
            return invalid(param + ".rate", output ? "24000 is supported"
                                                   : "a rate from 8000 to 48000 is supported");
        f->rate = rate;
    }
    return {};
}

// turn_detection's fields into the settings; `j` is an object.
std::optional<rt_error> parse_turn_detection(const json &j, rt_settings *s) {
    const std::string p = "session.audio.input.turn_detection";
    if (j.contains("type")) {
        if (!j["type"].is_string() || (j["type"] != "server_vad" && j["type"] != "semantic_vad"))
            return invalid(p + ".type", "server_vad or semantic_vad is expected");
        s->vad_type = j["type"];
    } else if (!s->vad) {
        s->vad_type = "server_vad";
    }
    s->vad = true;
    for (auto &[k, v] : j.items()) {
        if (k == "type") continue;
        if (k == "create_response" || k == "interrupt_response") {
            if (!v.is_boolean()) return invalid(p + "." + k, "a boolean is expected");
            (k == "create_response" ? s->create_response : s->interrupt_response) = v;
        } else if (k == "threshold") {
            if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() >= 1)
                return invalid(p + ".threshold", "a number between 0 and 1 is expected");
            s->threshold = v;
        } else if (k == "prefix_padding_ms" || k == "silence_duration_ms") {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 10000)
                return invalid(p + "." + k, "an integer from 0 to 10000 is expected");
            (k == "prefix_padding_ms" ? s->prefix_padding_ms : s->silence_duration_ms) =
                v.get<int>();
        } else if (k == "idle_timeout_ms") {
            if (!v.is_null())
                return rt_error{"unsupported", "idle_timeout_ms is not supported: leave it null",
                                p + ".idle_timeout_ms"};
        } else if (k == "eagerness") {
            if (!v.is_string() || (v != "low" && v != "medium" && v != "high" && v != "auto"))
                return invalid(p + ".eagerness", "low, medium, high or auto is expected");
            s->eagerness = v;
        } else {
            return unknown(p + "." + k);
        }
    }
    return {};
}

// tool_choice: auto, none, required, or {"type": "function", "name": ...}.
std::optional<rt_error> check_tool_choice(const json &v, const std::string &p) {
    if (v == "auto" || v == "none" || v == "required") return {};
    if (v.is_object() && v.value("type", "") == "function" && v.contains("name") &&
        v["name"].is_string())
        return {};
    return invalid(p, "auto, none, required or {\"type\": \"function\", \"name\": ...} is "
                      "expected");
}

// The tools offered for a tool_choice, and the grammar a forced choice puts on the reply.
std::optional<rt_error> tools_for(const std::vector<tool_spec> &tools, const json &choice,
                                  std::vector<tool_spec> *offered, std::string *grammar) {
    offered->clear();
    grammar->clear();
    if (choice == "none" || tools.empty()) {
        if (choice == "required" || choice.is_object())
            return rt_error{"invalid_value", "tool_choice asks for a call but no tools are given",
                            "tool_choice"};
        return {};
    }
    *offered = tools;
    if (choice == "auto") return {};
    try {
        *grammar = tool_call_grammar(tools, choice.is_object() ? choice["name"].get<std::string>()
                                                               : std::string());
    } catch (const std::exception &e) {
        return rt_error{"invalid_value", std::string("tool_choice: ") + e.what(), "tool_choice"};
    }
    return {};
}

// A session.update's `session` into `s` (a copy: applied only when all of it is valid).
std::optional<rt_error> parse_session(const json &j, rt_settings *s,
                                      const std::function<bool(const std::string &)> &voice_ok) {
    if (!j.is_object()) return invalid("session", "an object is expected");
    for (auto &[k, v] : j.items()) {
        std::string p = "session." + k;
        if (k == "type") {
            if (v != "realtime")
                return invalid(p, "realtime is supported (transcription sessions are not)");
        } else if (k == "model") {
            if (!v.is_string()) return invalid(p, "a string is expected");
            s->model = v.get<std::string>().substr(0, 128);
        } else if (k == "instructions") {
            if (!v.is_string() || v.get<std::string>().size() > INSTRUCTIONS_MAX)
                return invalid(p, "a string of at most 64 KiB is expected");
            s->instructions = utf8_sanitize(v.get<std::string>());
        } else if (k == "output_modalities") {
            if (!v.is_array() || v.size() != 1 || (v[0] != "audio" && v[0] != "text"))
                return invalid(p, "[\"audio\"] or [\"text\"] is expected");
            s->audio_out = v[0] == "audio";
        } else if (k == "max_output_tokens") {
            if (v == "inf") {
                s->max_output_tokens.reset();
            } else if (v.is_number_integer() && v.get<int64_t>() >= 1 &&
                       v.get<int64_t>() <= MAX_OUTPUT_TOKENS_LIMIT) {
                s->max_output_tokens = v.get<int>();
            } else {
                return invalid(p, "an integer from 1 to 4096 or \"inf\" is expected");
            }
        } else if (k == "tools") {
            std::string err;
            std::vector<tool_spec> specs = parse_tools(v, &err);
            if (!err.empty()) return invalid(p, err);
            s->tools = v;
            s->tool_specs = std::move(specs);
        } else if (k == "tool_choice") {
            if (auto e = check_tool_choice(v, p)) return e;
            s->tool_choice = v;
        } else if (k == "tracing" || k == "truncation" || k == "prompt" || k == "include") {
            // Accepted and kept (they change nothing here: no traces, no stored prompts).
            (k == "tracing"      ? s->tracing
             : k == "truncation" ? s->truncation
             : k == "prompt"     ? s->prompt
                                 : s->include) = v;
        } else if (k == "audio") {
            if (!v.is_object()) return invalid(p, "an object is expected");
            for (auto &[dir, dv] : v.items()) {
                std::string dp = p + "." + dir;
                if (dir != "input" && dir != "output") return unknown(dp);
                if (!dv.is_object()) return invalid(dp, "an object is expected");
                for (auto &[f, fv] : dv.items()) {
                    std::string fp = dp + "." + f;
                    if (f == "format") {
                        if (auto e = parse_format(fv, fp, dir == "output",
                                                  dir == "output" ? &s->out_format : &s->in_format))
                            return e;
                    } else if (dir == "input" && f == "transcription") {
                        if (!fv.is_null() && !fv.is_object())
                            return invalid(fp, "an object or null is expected");
                        for (auto &[tk, tv] : (fv.is_object() ? fv : EMPTY_OBJECT).items()) {
                            if (tk != "model" && tk != "language" && tk != "prompt")
                                return unknown(fp + "." + tk);
                            if (!tv.is_string() && !tv.is_null())
                                return invalid(fp + "." + tk, "a string is expected");
                        }
                        s->transcription = fv;
                    } else if (dir == "input" && f == "noise_reduction") {
                        if (!fv.is_null() &&
                            !(fv.is_object() && fv.size() == 1 && fv.contains("type") &&
                              (fv["type"] == "near_field" || fv["type"] == "far_field")))
                            return invalid(fp, "null or {\"type\": near_field|far_field} is "
                                               "expected");
                        s->noise_reduction = fv;
                    } else if (dir == "input" && f == "turn_detection") {
                        if (fv.is_null()) {
                            s->vad = false;
                        } else if (!fv.is_object()) {
                            return invalid(fp, "an object or null is expected");
                        } else if (auto e = parse_turn_detection(fv, s)) {
                            return e;
                        }
                    } else if (dir == "output" && f == "voice") {
                        std::string voice;
                        if (fv.is_string())
                            voice = fv;
                        else if (fv.is_object() && fv.contains("id") && fv["id"].is_string())
                            voice = fv["id"];
                        if (voice.empty() || voice.size() > 64 || !voice_ok(voice))
                            return invalid(fp, "voice " + quote_value(voice) +
                                                   " is not available: use one of OpenAI's voice "
                                                   "names (each speaks with this server's voice) "
                                                   "or one of the engine's");
                        s->voice = voice;
                    } else if (dir == "output" && f == "speed") {
                        if (!fv.is_number() || fv.get<double>() < 0.25 || fv.get<double>() > 1.5)
                            return invalid(fp, "a number from 0.25 to 1.5 is expected");
                        s->speed = fv;
                    } else {
                        return unknown(fp);
                    }
                }
            }
        } else if (k == "id" || k == "object" || k == "expires_at") {
            // The server's own fields, sent back unchanged by some clients.
        } else {
            return unknown(p);
        }
    }
    return {};
}

// The text of a message item's content parts (input_text, text, output_text; the transcript
// of audio parts). Empty with *err set when a part is not text.
std::string content_text(const json &content, const std::string &param, bool allow_audio,
                         std::optional<rt_error> *err) {
    if (!content.is_array()) {
        *err = invalid(param, "an array of content parts is expected");
        return {};
    }
    std::string text;
    for (size_t i = 0; i < content.size(); i++) {
        const json &c = content[i];
        std::string p = param + "[" + std::to_string(i) + "]";
        if (!c.is_object() || !c.contains("type") || !c["type"].is_string()) {
            *err = invalid(p, "a content part with a type is expected");
            return {};
        }
        std::string type = c["type"];
        std::string piece;
        if (type == "input_text" || type == "text" || type == "output_text") {
            if (!c.contains("text") || !c["text"].is_string()) {
                *err = invalid(p + ".text", "a string is expected");
                return {};
            }
            piece = c["text"];
        } else if ((type == "input_audio" || type == "output_audio" || type == "audio") &&
                   allow_audio && c.contains("transcript") && c["transcript"].is_string() &&
                   !c.contains("audio")) {
            piece = c["transcript"];
        } else if (type == "input_audio" || type == "output_audio" || type == "audio") {
            *err = rt_error{"unsupported",
                            "audio inside an item is not supported: append it to the input audio "
                            "buffer (input_audio_buffer.append), or give its transcript",
                            p};
            return {};
        } else {
            *err = invalid(p + ".type", "input_text, text or output_text is expected");
            return {};
        }
        if (!text.empty() && !piece.empty()) text += " ";
        text += piece;
    }
    if (text.size() > ITEM_TEXT_MAX) {
        *err = invalid(param, "at most 64 KiB of text is taken");
        return {};
    }
    return utf8_sanitize(text);
}

} // namespace

std::string realtime_error_message(const std::string &code, const std::string &message) {
    json j = error_event_json(code, message);
    j["event_id"] = "event_" + random_hex(8);
    return dump(j);
}

// An item of the conversation as the client sees it.
struct rt_item {
    std::string id;
    std::string type = "message"; // or function_call, function_call_output
    std::string role;             // a message's: user, assistant
    std::string name, call_id;    // a function call's (and its output's call_id)
    std::string status = "completed";
    bool audio = false;         // input_audio (user) or output_audio (assistant)
    std::string text;           // the text, or the audio's transcript
    bool has_transcript = true; // a user audio item's transcript has come
    int64_t turn_id = 0;        // an assistant item's turn in the session
    bool truncated = false;
    reply_playout playout{REALTIME_PCM_RATE}; // an assistant item's chunks (truncation)
    int audio_ms = 0;

    json to_json() const {
        if (type == "function_call")
            return {
                {"id", id},     {"object", "realtime.item"}, {"type", type},     {"status", status},
                {"name", name}, {"call_id", call_id},        {"arguments", text}};
        if (type == "function_call_output")
            return {{"id", id},         {"object", "realtime.item"}, {"type", type},
                    {"status", status}, {"call_id", call_id},        {"output", text}};
        json part;
        if (role == "user") {
            part = audio ? json{{"type", "input_audio"},
                                {"transcript", has_transcript ? json(text) : json(nullptr)}}
                         : json{{"type", "input_text"}, {"text", text}};
        } else {
            part = audio ? json{{"type", "output_audio"}, {"transcript", text}}
                         : json{{"type", "output_text"}, {"text", text}};
        }
        return {{"id", id},          {"object", "realtime.item"},
                {"type", "message"}, {"status", status},
                {"role", role},      {"content", json::array({part})}};
    }
};

// A response on its way: from the session's reply_started_event to its end.
struct rt_response {
    std::string id;
    json metadata = nullptr;
    bool out_of_band = false;
    bool audio = true;
    std::optional<int> max_output_tokens;
    int64_t turn_id = 0;
    std::shared_ptr<rt_item> item;                // the message, once the reply has words
    int item_index = 0;                           // its output_index
    std::vector<std::shared_ptr<rt_item>> output; // in output_index order
    bool first_text = true;
    bool cancel_asked = false;
};

// What a response.create asked for, until the session starts it.
struct rt_asked {
    json metadata = nullptr;
    bool out_of_band = false;
    bool audio = true;
    std::optional<int> max_output_tokens;
};

struct realtime_connection::state : session_sink {
    std::mutex m;
    std::shared_ptr<ws_output> out;
    const session_engines eng;
    session_config cfg; // the server's
    rt_settings settings;
    std::string session_object_id = "sess_" + random_hex(12);
    std::string conversation_id = "conv_" + random_hex(12);
    std::string id_prefix = random_hex(4);
    uint64_t next_id = 0;

    // The input side.
    bool listening = false;     // a start is open (push to talk: until the commit)
    session_start last_start;   // what the session was started with
    int64_t buffer_samples = 0; // appended since the last commit or clear
    double stream_ms = 0;       // all audio appended, in ms
    double listen_base_ms = 0;  // stream_ms at the last start (the detector's zero)
    std::string speech_item;    // server VAD: the speech in progress
    double speech_start_ms = 0;
    std::string last_partial;
    std::deque<std::shared_ptr<rt_item>> awaiting_transcript;

    std::deque<std::shared_ptr<rt_item>> items;
    std::map<std::string, rt_asked> asked;                     // by response id, until it starts
    std::map<int64_t, std::shared_ptr<rt_response>> responses; // by turn id, until done

    explicit state(const session_engines &e) : eng(e) {}

    std::string new_id(const char *prefix) {
        char n[17];
        std::snprintf(n, sizeof(n), "%010llx", static_cast<unsigned long long>(++next_id));
        return prefix + id_prefix + n;
    }

    void send(json j) {
        j["event_id"] = new_id("event_");
        out->send_text(dump(j));
    }

    // `base` with a type and more fields, sent.
    void send_as(json base, const char *type, const json &fields = json::object()) {
        base["type"] = type;
        for (auto &[k, v] : fields.items())
            base[k] = v;
        send(std::move(base));
    }

    void send_error(const std::string &code, const std::string &message,
                    const std::string &param = {}, const std::string &event_id = {}) {
        send(error_event_json(code, message, param, event_id));
    }

    std::string last_item_id() const { return items.empty() ? std::string() : items.back()->id; }
    json previous_id() const { return items.empty() ? json(nullptr) : json(items.back()->id); }
    void add_item(std::shared_ptr<rt_item> it) {
        items.push_back(std::move(it));
        while (items.size() > REALTIME_ITEMS_MAX)
            items.pop_front();
    }
    std::shared_ptr<rt_item> find_item(const std::string &id) const {
        for (const auto &it : items)
            if (it->id == id) return it;
        return nullptr;
    }
    // The assistant's message of a turn.
    std::shared_ptr<rt_item> find_turn(int64_t turn_id) const {
        for (auto it = items.rbegin(); it != items.rend(); ++it)
            if ((*it)->turn_id == turn_id && (*it)->type == "message" && (*it)->role == "assistant")
                return *it;
        return nullptr;
    }
    std::shared_ptr<rt_response> active_response() const {
        return responses.empty() ? nullptr : responses.rbegin()->second;
    }

    // A user audio item goes into the conversation (committed); its transcript follows.
    void commit_user_audio(const std::string &id, double ms) {
        auto it = std::make_shared<rt_item>();
        it->audio_ms = int(ms);
        it->id = id;
        it->role = "user";
        it->audio = true;
        it->has_transcript = false;
        json prev = previous_id();
        send({{"type", "input_audio_buffer.committed"},
              {"previous_item_id", prev},
              {"item_id", id}});
        add_item(it);
        send({{"type", "conversation.item.added"},
              {"previous_item_id", prev},
              {"item", it->to_json()}});
        send({{"type", "conversation.item.done"},
              {"previous_item_id", prev},
              {"item", it->to_json()}});
        awaiting_transcript.push_back(it);
        buffer_samples = 0;
    }

    // --- the session's events (session_sink) ---
    void on_event(session_event e) override {
        std::lock_guard lock(m);
        std::visit([this](auto &x) { handle(x); }, e);
    }
    void hold() override { out->hold(); }
    void flush() override { out->flush(); }
    void end(const std::string &reason) override { out->end(reason); }

    void handle(const ready_event &e) {
        // The session's id: its history is at GET /sessions/{id} (with the API key).
        session_object_id = "sess_" + e.session_id;
        send(
            {{"type", "session.created"}, {"session", settings_json(settings, session_object_id)}});
        send({{"type", "conversation.created"},
              {"conversation", {{"id", conversation_id}, {"object", "realtime.conversation"}}}});
    }

    void handle(const transcript_event &e) {
        if (!e.is_final) {
            // The recogniser's hypothesis so far: what it adds to the last one is the delta.
            if (speech_item.empty() || settings.transcription.is_null()) return;
            if (!e.text.starts_with(last_partial)) return; // revised: the final text says it
            std::string delta = e.text.substr(last_partial.size());
            last_partial = e.text;
            if (!delta.empty())
                send({{"type", "conversation.item.input_audio_transcription.delta"},
                      {"item_id", speech_item},
                      {"content_index", 0},
                      {"delta", delta}});
            return;
        }
        last_partial.clear();
        if (awaiting_transcript.empty()) return;
        auto it = awaiting_transcript.front();
        awaiting_transcript.pop_front();
        it->text = e.text;
        it->has_transcript = true;
        if (settings.transcription.is_null()) return;
        send({{"type", "conversation.item.input_audio_transcription.completed"},
              {"item_id", it->id},
              {"content_index", 0},
              {"transcript", e.text},
              {"usage", {{"type", "duration"}, {"seconds", it->audio_ms / 1000.0}}}});
    }

    void handle(const speech_started_event &e) {
        speech_item = new_id("item_");
        speech_start_ms = e.at_ms;
        last_partial.clear();
        send({{"type", "input_audio_buffer.speech_started"},
              {"audio_start_ms", int64_t(listen_base_ms + e.at_ms)},
              {"item_id", speech_item}});
    }

    void handle(const speech_stopped_event &e) {
        if (speech_item.empty()) speech_item = new_id("item_");
        std::string id = std::exchange(speech_item, {});
        send({{"type", "input_audio_buffer.speech_stopped"},
              {"audio_end_ms", int64_t(listen_base_ms + e.at_ms)},
              {"item_id", id}});
        commit_user_audio(id, e.at_ms - speech_start_ms);
    }

    std::shared_ptr<rt_response> response_for(int64_t turn_id) {
        auto r = responses.find(turn_id);
        if (r != responses.end()) return r->second;
        handle(reply_started_event{turn_id, {}, false}); // (not expected: started first)
        return responses[turn_id];
    }

    json response_json(const rt_response &r, const std::string &status, json details,
                       json usage) const {
        json output = json::array();
        if (status != "in_progress")
            for (const auto &it : r.output)
                output.push_back(it->to_json());
        json j = {
            {"object", "realtime.response"},
            {"id", r.id},
            {"status", status},
            {"status_details", std::move(details)},
            {"output", output},
            {"conversation_id", r.out_of_band ? json(nullptr) : json(conversation_id)},
            {"output_modalities", json::array({r.audio ? "audio" : "text"})},
            {"max_output_tokens", r.max_output_tokens ? json(*r.max_output_tokens) : json("inf")},
            {"audio",
             {{"output",
               {{"format", format_json(settings.out_format)}, {"voice", settings.voice}}}}},
            {"metadata", r.metadata},
            {"usage", std::move(usage)}};
        return j;
    }

    json part_json(const rt_response &r, bool done) const {
        if (r.audio) return {{"type", "audio"}, {"transcript", done ? r.item->text : ""}};
        return {{"type", "text"}, {"text", done ? r.item->text : ""}};
    }

    json ids(const rt_response &r) const {
        return {{"response_id", r.id},
                {"item_id", r.item->id},
                {"output_index", r.item_index},
                {"content_index", 0}};
    }

    // An output item of the response joins it (and the conversation, unless out of band).
    void add_output(rt_response &r, const std::shared_ptr<rt_item> &it) {
        int index = int(r.output.size());
        r.output.push_back(it);
        json prev = previous_id();
        if (!r.out_of_band) add_item(it);
        send({{"type", "response.output_item.added"},
              {"response_id", r.id},
              {"output_index", index},
              {"item", it->to_json()}});
        if (!r.out_of_band)
            send({{"type", "conversation.item.added"},
                  {"previous_item_id", prev},
                  {"item", it->to_json()}});
    }

    // The reply's words begin: its message item and content part.
    void start_message(rt_response &r) {
        r.item = std::make_shared<rt_item>();
        r.item->id = new_id("item_");
        r.item->role = "assistant";
        r.item->status = "in_progress";
        r.item->audio = r.audio;
        r.item->turn_id = r.turn_id;
        r.item_index = int(r.output.size());
        add_output(r, r.item);
        send_as(ids(r), "response.content_part.added", {{"part", part_json(r, false)}});
    }

    void handle(const reply_started_event &e) {
        auto r = std::make_shared<rt_response>();
        auto a = asked.find(e.tag);
        if (!e.tag.empty() && a != asked.end()) {
            r->id = e.tag;
            r->metadata = a->second.metadata;
            r->out_of_band = a->second.out_of_band;
            r->audio = a->second.audio;
            r->max_output_tokens = a->second.max_output_tokens;
            asked.erase(a);
        } else {
            r->id = new_id("resp_");
            r->audio = settings.audio_out;
            r->max_output_tokens = settings.max_output_tokens;
        }
        r->turn_id = e.turn_id;
        responses[e.turn_id] = r;
        // The user's words since the last reply are this turn's.
        if (!r->out_of_band)
            for (const auto &it : items)
                if (it->turn_id == 0 && it->type != "function_call" && it->role != "assistant")
                    it->turn_id = e.turn_id;
        send({{"type", "response.created"},
              {"response", response_json(*r, "in_progress", nullptr, nullptr)}});
    }

    // The model called tools: a function_call item each, its arguments in one delta.
    void handle(const tool_calls_event &e) {
        auto r = response_for(e.turn_id);
        for (const tool_call &c : e.calls) {
            auto it = std::make_shared<rt_item>();
            it->id = new_id("item_");
            it->type = "function_call";
            it->status = "in_progress";
            it->name = c.name;
            it->call_id = c.id;
            it->text = c.arguments;
            it->turn_id = e.turn_id;
            add_output(*r, it);
            int index = int(r->output.size()) - 1;
            json base = {{"response_id", r->id},
                         {"item_id", it->id},
                         {"output_index", index},
                         {"call_id", c.id}};
            send_as(base, "response.function_call_arguments.delta", {{"delta", c.arguments}});
            send_as(base, "response.function_call_arguments.done",
                    {{"name", c.name}, {"arguments", c.arguments}});
            it->status = "completed";
            send({{"type", "response.output_item.done"},
                  {"response_id", r->id},
                  {"output_index", index},
                  {"item", it->to_json()}});
            if (!r->out_of_band)
                send({{"type", "conversation.item.done"}, {"item", it->to_json()}});
        }
    }

    std::string encode_audio(const std::vector<int16_t> &pcm) const {
        const audio_format &f = settings.out_format;
        if (f.type == "audio/pcm")
            return base64_encode(
                std::string_view(reinterpret_cast<const char *>(pcm.data()), pcm.size() * 2));
        std::vector<int16_t> narrow = resample(pcm, REALTIME_PCM_RATE, 8000);
        return base64_encode(
            g711_encode(narrow, f.type == "audio/pcmu" ? G711_MU_LAW : G711_A_LAW));
    }

    void handle(const reply_chunk_event &c) {
        auto r = response_for(c.turn_id);
        if (!r->item) {
            if (c.text.empty() && !c.has_audio) return; // no words (the end of a call's reply)
            start_message(*r);
        }
        if (r->item->truncated) return; // cut by the client: the rest is not wanted
        rt_item &it = *r->item;
        if (!c.text.empty()) {
            std::string delta = r->first_text ? c.text : " " + c.text;
            r->first_text = false;
            it.text += delta;
            send_as(ids(*r),
                    r->audio ? "response.output_audio_transcript.delta"
                             : "response.output_text.delta",
                    {{"delta", delta}});
        }
        if (c.has_audio && r->audio) {
            sent_chunk sc;
            sc.id = c.chunk_id;
            sc.text = c.text;
            sc.has_audio = true;
            sc.audio_ms = int(c.pcm.size() * 1000 / REALTIME_PCM_RATE);
            sc.words = c.words;
            sc.words_estimated = c.words_estimated;
            it.audio_ms += sc.audio_ms;
            it.playout.add(std::move(sc));
            send_as(ids(*r), "response.output_audio.delta", {{"delta", encode_audio(c.pcm)}});
        } else if (!c.text.empty() || c.is_final) {
            sent_chunk sc;
            sc.id = c.chunk_id;
            sc.text = c.text;
            it.playout.add(std::move(sc));
        }
    }

    // The response's closing events, in the API's order.
    void finish(const std::shared_ptr<rt_response> &r, const std::string &status, json details,
                json usage) {
        if (r->item) finish_message(*r, status);
        send({{"type", "response.done"},
              {"response", response_json(*r, status, std::move(details), std::move(usage))}});
        // No request or token limits apply to this server.
        send({{"type", "rate_limits.updated"}, {"rate_limits", json::array()}});
    }

    void finish_message(rt_response &rr, const std::string &status) {
        rt_response *r = &rr;
        rt_item &it = *r->item;
        it.status = status == "completed" ? "completed" : "incomplete";
        json base = ids(*r);
        if (r->audio) {
            send_as(base, "response.output_audio.done");
            send_as(base, "response.output_audio_transcript.done", {{"transcript", it.text}});
        } else {
            send_as(base, "response.output_text.done", {{"text", it.text}});
        }
        send_as(base, "response.content_part.done", {{"part", part_json(*r, true)}});
        send({{"type", "response.output_item.done"},
              {"response_id", r->id},
              {"output_index", r->item_index},
              {"item", it.to_json()}});
        if (!r->out_of_band) send({{"type", "conversation.item.done"}, {"item", it.to_json()}});
    }

    void handle(const reply_done_event &e) {
        auto found = responses.find(e.turn_id);
        if (found == responses.end()) return;
        auto r = found->second;
        responses.erase(found);
        const turn_timings &t = e.timings;
        json usage = {
            {"total_tokens", t.prompt_tokens + t.generated_tokens},
            {"input_tokens", t.prompt_tokens},
            {"output_tokens", t.generated_tokens},
            {"input_token_details",
             {{"cached_tokens", t.cached_tokens},
              {"text_tokens", t.prompt_tokens},
              {"audio_tokens", t.audio_tokens}}},
            {"output_token_details", {{"text_tokens", t.generated_tokens}, {"audio_tokens", 0}}}};
        if (e.stop_reason == LLM_STOP_LENGTH)
            finish(r, "incomplete", {{"type", "incomplete"}, {"reason", "max_output_tokens"}},
                   usage);
        else
            finish(r, "completed", nullptr, usage);
    }

    void handle(const interrupted_event &e) {
        auto found = responses.find(e.turn_id);
        std::shared_ptr<rt_item> it;
        bool by_client = false;
        if (found != responses.end()) {
            auto r = found->second;
            responses.erase(found);
            it = r->item;
            by_client = r->cancel_asked || (it && it->truncated);
            if (it && !it->truncated && it->audio) it->text = e.heard;
            finish(r, "cancelled",
                   {{"type", "cancelled"},
                    {"reason", by_client ? "client_cancelled" : "turn_detected"}},
                   nullptr);
        } else {
            it = find_turn(e.turn_id); // done, but its audio was still playing
        }
        // Cut by the user's speech while its audio played: the item keeps what was heard.
        if (it && it->audio && !it->truncated && !by_client) {
            it->truncated = true;
            it->text = e.heard;
            send({{"type", "conversation.item.truncated"},
                  {"item_id", it->id},
                  {"content_index", 0},
                  {"audio_end_ms", std::min(e.heard_ms, it->audio_ms)}});
        }
    }

    void handle(const resumed_event &) {} // off for this protocol (resume_after_false_start)

    void handle(const queued_event &e) {
        send_error("queued", "every place with the language model is taken: this session is "
                             "number " +
                                 std::to_string(e.position) +
                                 " in line; replies are refused until it is its turn");
    }

    void handle(const admitted_event &) {}

    void handle(const error_event &e) {
        if (e.code == "asr_failed" && !awaiting_transcript.empty()) {
            auto it = awaiting_transcript.front();
            awaiting_transcript.pop_front();
            it->has_transcript = true;
            send({{"type", "conversation.item.input_audio_transcription.failed"},
                  {"item_id", it->id},
                  {"content_index", 0},
                  {"error", {{"type", "server_error"}, {"code", e.code}, {"message", e.message}}}});
            return;
        }
        if (e.code == "reply_active") {
            asked.clear();
            send_error("conversation_already_has_active_response",
                       "Conversation already has an active response in progress: cancel it "
                       "(response.cancel) or wait for response.done.");
            return;
        }
        send_error(e.code, e.message);
    }
};

realtime_connection::realtime_connection(const session_engines &engines,
                                         const session_config &config, const server_info &info,
                                         std::shared_ptr<ws_output> out)
    : st_(std::make_shared<state>(engines)) {
    st_->out = std::move(out);
    st_->cfg = config;
    rt_settings &s = st_->settings;
    s.model = info.llm.empty() ? "parley" : info.llm;
    s.instructions = config.system_prompt;
    s.max_output_tokens = config.max_tokens;
    s.threshold = config.vad.threshold;
    s.prefix_padding_ms = config.vad.prefix_pad_ms;
    s.silence_duration_ms = config.vad.min_silence_ms;
    if (!info.asr.empty()) s.transcription = {{"model", info.asr}};
    session_config c = config;
    c.audio_out_rate = REALTIME_PCM_RATE;
    c.resume_after_false_start = false; // a cancelled response stays cancelled
    c.auto_respond = s.create_response;
    c.interrupt_on_speech = s.interrupt_response;
    session_ = std::make_shared<session>(engines, c, st_);
}

realtime_connection::~realtime_connection() {
    close();
}

namespace {

// What the session is started with for these settings.
session_start start_of(const rt_settings &s, const session_config &defaults) {
    session_start p;
    p.sample_rate = s.in_format.sample_rate();
    p.tts = s.audio_out;
    if (!is_openai_voice(s.voice)) p.voice = s.voice;
    if (s.speed != 1.0) p.rate_wpm = std::max(1, int(std::lround(defaults.tts.rate_wpm * s.speed)));
    p.mode = s.vad ? SESSION_MODE_HANDS_FREE : SESSION_MODE_PUSH_TO_TALK;
    if (s.vad) {
        if (s.vad_type == "server_vad") {
            p.vad_threshold = float(s.threshold);
            p.min_silence_ms = s.silence_duration_ms;
            p.prefix_pad_ms = s.prefix_padding_ms;
        } else {
            // Semantic VAD's eagerness: how soon a pause ends the turn, around the server's.
            int base = defaults.vad.min_silence_ms;
            p.min_silence_ms = s.eagerness == "high"  ? base / 2
                               : s.eagerness == "low" ? base * 2
                                                      : base;
        }
    }
    p.echo = s.noise_reduction.is_object() && s.noise_reduction["type"] == "far_field"
                 ? CLIENT_ECHO_NONE
                 : CLIENT_ECHO_UNKNOWN;
    return p;
}

bool same_start(const session_start &a, const session_start &b) {
    return a.sample_rate == b.sample_rate && a.tts == b.tts && a.voice == b.voice &&
           a.rate_wpm == b.rate_wpm && a.mode == b.mode && a.vad_threshold == b.vad_threshold &&
           a.min_silence_ms == b.min_silence_ms && a.prefix_pad_ms == b.prefix_pad_ms &&
           a.echo == b.echo;
}

session_settings settings_of(const rt_settings &s, const session_config &defaults) {
    session_settings o;
    o.instructions = s.instructions;
    o.max_tokens = s.max_output_tokens.value_or(defaults.max_tokens);
    o.auto_respond = s.vad && s.create_response;
    o.interrupt_on_speech = s.vad && s.interrupt_response;
    return o;
}

} // namespace

void realtime_connection::open(const std::string &) {
    session_->open();
    session_start p;
    {
        std::lock_guard lock(st_->m);
        p = start_of(st_->settings, st_->cfg);
        st_->last_start = p;
        st_->listening = true;
        st_->listen_base_ms = st_->stream_ms;
    }
    session_->start(p);
}

void realtime_connection::close() {
    session_->close();
}

void realtime_connection::store_changed() {
    session_->store_changed();
}

void realtime_connection::drain(std::function<void()> ready) {
    session_->drain(std::move(ready));
}

std::string realtime_connection::error_message(const std::string &code,
                                               const std::string &message) {
    std::lock_guard lock(st_->m);
    json j = error_event_json(code == "internal" ? "server_error" : code, message);
    j["event_id"] = st_->new_id("event_");
    return dump(j);
}

void realtime_connection::on_binary(std::string_view) {
    std::lock_guard lock(st_->m);
    st_->send_error("invalid_event", "binary messages are not part of the Realtime API: send "
                                     "audio as input_audio_buffer.append with base64");
}

void realtime_connection::on_text(std::string_view message) {
    mono_time t_recv = mono_now();
    json j = json::parse(message, nullptr, false);
    // Session calls are made after the state's lock is let go (the session may report an error
    // at once, through the same lock).
    std::vector<std::function<void()>> then;
    {
        std::lock_guard lock(st_->m);
        state &st = *st_;
        if (j.is_discarded() || !j.is_object()) {
            st.send_error("invalid_json", "The event is not a JSON object.");
            return;
        }
        std::string event_id;
        if (j.contains("event_id") && j["event_id"].is_string())
            event_id = j["event_id"].get<std::string>().substr(0, EVENT_ID_MAX);
        if (!j.contains("type") || !j["type"].is_string()) {
            st.send_error("invalid_event", "The event has no type.", "type", event_id);
            return;
        }
        std::string type = j["type"];
        auto fail = [&](const rt_error &e) { st.send_error(e.code, e.message, e.param, event_id); };
        // The session's inputs for the current settings.
        auto restart = [&](bool force) {
            session_start p = start_of(st.settings, st.cfg);
            bool changed = !same_start(p, st.last_start);
            if (!force && !changed && st.listening) return;
            st.last_start = p;
            st.listening = true;
            st.listen_base_ms = st.stream_ms;
            st.speech_item.clear();
            st.buffer_samples = 0;
            then.push_back([this, p] { session_->start(p); });
        };

        if (type == "session.update") {
            if (!j.contains("session")) {
                fail({"missing_required_parameter", "Missing required parameter: 'session'.",
                      "session"});
                return;
            }
            rt_settings s = st.settings;
            tts_engine *tts = st.eng.tts;
            auto voice_ok = [tts](const std::string &v) { return voice_available(v, tts); };
            if (auto e = parse_session(j["session"], &s, voice_ok)) return fail(*e);
            session_settings o = settings_of(s, st.cfg);
            std::vector<tool_spec> offered;
            std::string grammar;
            if (auto e = tools_for(s.tool_specs, s.tool_choice, &offered, &grammar)) {
                e->param = "session." + e->param;
                return fail(*e);
            }
            o.tools = std::move(offered);
            o.tool_grammar = std::move(grammar);
            bool format_changed = !(s.in_format == st.settings.in_format);
            st.settings = s;
            then.push_back([this, o] { session_->configure(o); });
            restart(format_changed);
            st.send({{"type", "session.updated"},
                     {"session", settings_json(st.settings, st.session_object_id)}});
        } else if (type == "input_audio_buffer.append") {
            if (!j.contains("audio") || !j["audio"].is_string())
                return fail({"missing_required_parameter",
                             "Missing required parameter: 'audio' (base64).", "audio"});
            const std::string &b64 = j["audio"].get_ref<const std::string &>();
            if (b64.size() / 4 * 3 > REALTIME_APPEND_MAX_BYTES)
                return fail({"invalid_value", "Audio over 15 MiB in one append.", "audio"});
            std::optional<std::string> bytes = base64_decode(b64);
            if (!bytes) return fail({"invalid_value", "The audio is not valid base64.", "audio"});
            const audio_format &f = st.settings.in_format;
            std::vector<int16_t> pcm;
            if (f.type == "audio/pcm") {
                if (bytes->size() % 2)
                    return fail({"invalid_value",
                                 "audio/pcm is 16-bit: an odd number of bytes was appended.",
                                 "audio"});
                pcm.resize(bytes->size() / 2);
                std::memcpy(pcm.data(), bytes->data(), bytes->size());
            } else {
                pcm = g711_decode(*bytes, f.type == "audio/pcmu" ? G711_MU_LAW : G711_A_LAW);
            }
            if (pcm.empty()) return;
            if (!st.listening) restart(true); // push to talk: a new utterance
            st.buffer_samples += int64_t(pcm.size());
            st.stream_ms += pcm.size() * 1000.0 / f.sample_rate();
            then.push_back(
                [this, pcm = std::move(pcm)]() mutable { session_->audio(std::move(pcm)); });
        } else if (type == "input_audio_buffer.commit") {
            if (st.settings.vad ? st.speech_item.empty() : st.buffer_samples == 0)
                return fail({"input_audio_buffer_commit_empty",
                             st.settings.vad ? "No speech in the input audio buffer to commit."
                                             : "The input audio buffer is empty.",
                             {}});
            if (st.settings.vad) {
                // The speech in progress ends here (speech_stopped, committed); listening goes on.
                then.push_back([this, t_recv] { session_->stop(t_recv); });
                restart(true);
            } else {
                st.listening = false;
                st.commit_user_audio(st.new_id("item_"), st.buffer_samples * 1000.0 /
                                                             st.settings.in_format.sample_rate());
                then.push_back([this, t_recv] { session_->stop(t_recv); });
            }
        } else if (type == "input_audio_buffer.clear") {
            st.send({{"type", "input_audio_buffer.cleared"}});
            // A new start drops the utterance that was not committed.
            if (st.listening) restart(true);
            st.buffer_samples = 0;
        } else if (type == "conversation.item.create") {
            if (!j.contains("item") || !j["item"].is_object())
                return fail(
                    {"missing_required_parameter", "Missing required parameter: 'item'.", "item"});
            const json &item = j["item"];
            if (j.contains("previous_item_id") && !j["previous_item_id"].is_null() &&
                j["previous_item_id"] != st.last_item_id())
                return fail({"unsupported",
                             "Items are added at the end of the conversation: previous_item_id "
                             "must be the last item's id, or absent.",
                             "previous_item_id"});
            std::string item_type = item.contains("type") && item["type"].is_string()
                                        ? item["type"].get<std::string>()
                                        : "message";
            auto it = std::make_shared<rt_item>();
            it->type = item_type;
            message_role role = MESSAGE_ROLE_USER;
            std::string text; // what the model is given
            if (item_type == "function_call_output") {
                // A tool's result: the model reads it in the next reply's user turn.
                std::string call_id = string_field(item, "call_id");
                if (call_id.empty() || !item.contains("output") || !item["output"].is_string() ||
                    item["output"].get<std::string>().size() > ITEM_TEXT_MAX)
                    return fail({"invalid_value",
                                 "A function_call_output needs its call_id and an output string "
                                 "(at most 64 KiB).",
                                 "item"});
                it->call_id = call_id.substr(0, 64);
                it->text = utf8_sanitize(item["output"].get<std::string>());
                text = "<tool_response>\n" + it->text + "\n</tool_response>";
            } else if (item_type == "function_call") {
                // A call the client says the assistant made: the model sees it as its own.
                std::string name = string_field(item, "name");
                json args = json::parse(string_field(item, "arguments"), nullptr, false);
                if (name.empty() || !args.is_object())
                    return fail({"invalid_value",
                                 "A function_call needs a name and arguments (a JSON object as "
                                 "a string).",
                                 "item"});
                it->name = name.substr(0, 64);
                it->call_id = string_field(item, "call_id").substr(0, 64);
                it->text = args.dump();
                role = MESSAGE_ROLE_ASSISTANT;
                text = tool_call_text({it->call_id, it->name, it->text});
            } else if (item_type == "message") {
                if (!item.contains("role") || !item["role"].is_string() ||
                    (item["role"] != "user" && item["role"] != "assistant"))
                    return fail({"invalid_value",
                                 "Invalid value for 'item.role': user or assistant is supported.",
                                 "item.role"});
                std::optional<rt_error> err;
                text = content_text(item.contains("content") ? item["content"] : json(),
                                    "item.content", true, &err);
                if (err) return fail(*err);
                it->role = item["role"];
                it->text = text;
                if (it->role == "assistant") role = MESSAGE_ROLE_ASSISTANT;
            } else {
                return fail({"invalid_value",
                             "Invalid value for 'item.type': message, function_call or "
                             "function_call_output.",
                             "item.type"});
            }
            it->id = st.new_id("item_");
            if (item.contains("id") && item["id"].is_string()) {
                std::string id = item["id"];
                if (id.empty() || id.size() > 32 || st.find_item(id))
                    return fail({"invalid_value",
                                 "Invalid value for 'item.id': a new id of 1 to 32 characters is "
                                 "expected.",
                                 "item.id"});
                it->id = id;
            }
            json prev = st.previous_id();
            if (role == MESSAGE_ROLE_ASSISTANT) it->turn_id = -1; // not a reply of the model
            st.add_item(it);
            st.send({{"type", "conversation.item.added"},
                     {"previous_item_id", prev},
                     {"item", it->to_json()}});
            st.send({{"type", "conversation.item.done"},
                     {"previous_item_id", prev},
                     {"item", it->to_json()}});
            then.push_back([this, role, text] { session_->add_message(role, text); });
        } else if (type == "conversation.item.retrieve") {
            std::string id = string_field(j, "item_id");
            auto it = st.find_item(id);
            if (!it) return fail({"item_not_found", "No item " + quote_value(id) + ".", "item_id"});
            st.send({{"type", "conversation.item.retrieved"}, {"item", it->to_json()}});
        } else if (type == "conversation.item.truncate") {
            std::string id = string_field(j, "item_id");
            auto it = st.find_item(id);
            if (!it) return fail({"item_not_found", "No item " + quote_value(id) + ".", "item_id"});
            if (it->role != "assistant" || !it->audio || it->turn_id <= 0)
                return fail({"invalid_value", "Only an assistant's audio item can be truncated.",
                             "item_id"});
            if (!j.contains("content_index") || j["content_index"] != 0)
                return fail({"invalid_value", "content_index must be 0.", "content_index"});
            if (!j.contains("audio_end_ms") || !j["audio_end_ms"].is_number_integer() ||
                j["audio_end_ms"].get<int64_t>() < 0)
                return fail({"invalid_value", "audio_end_ms must be a whole number of ms.",
                             "audio_end_ms"});
            int64_t end_ms = j["audio_end_ms"];
            if (end_ms > it->audio_ms)
                return fail({"invalid_value",
                             "audio_end_ms (" + std::to_string(end_ms) +
                                 ") is past the item's audio (" + std::to_string(it->audio_ms) +
                                 " ms).",
                             "audio_end_ms"});
            // The words heard by audio_end_ms (by the speech engine's word timings).
            double left = double(end_ms);
            size_t k = 0;
            const auto &chunks = it->playout.chunks();
            double played = 0;
            for (size_t i = 0; i < chunks.size(); i++) {
                k = i;
                if (!chunks[i].has_audio) continue;
                if (left <= chunks[i].audio_ms) {
                    played = left;
                    break;
                }
                left -= chunks[i].audio_ms;
                played = chunks[i].audio_ms;
            }
            std::string heard = chunks.empty() ? std::string() : it->playout.heard(k, played);
            it->truncated = true;
            it->text = heard;
            for (auto &[turn, r] : st.responses)
                if (r->item == it) r->cancel_asked = true;
            st.send({{"type", "conversation.item.truncated"},
                     {"item_id", it->id},
                     {"content_index", 0},
                     {"audio_end_ms", end_ms}});
            int64_t turn_id = it->turn_id;
            then.push_back([this, turn_id, heard] { session_->truncate(turn_id, heard); });
        } else if (type == "conversation.item.delete") {
            std::string id = string_field(j, "item_id");
            auto it = st.find_item(id);
            if (!it) return fail({"item_not_found", "No item " + quote_value(id) + ".", "item_id"});
            for (const auto &[turn, r] : st.responses)
                if (std::find(r->output.begin(), r->output.end(), it) != r->output.end())
                    return fail({"invalid_value",
                                 "The item belongs to a response in progress: cancel it first.",
                                 "item_id"});
            if (it->role == "user" && it->audio && !it->has_transcript)
                return fail({"invalid_value",
                             "The item's transcript is still being made: delete it after "
                             "conversation.item.input_audio_transcription.completed.",
                             "item_id"});
            // What the session was given for it (a function's output in its tags).
            bool assistant = it->role == "assistant" || it->type == "function_call";
            std::string text = it->type == "function_call_output"
                                   ? "<tool_response>\n" + it->text + "\n</tool_response>"
                               : it->type == "function_call" && it->turn_id < 0
                                   ? tool_call_text({it->call_id, it->name, it->text})
                                   : it->text;
            int64_t turn_id = it->turn_id;
            st.items.erase(std::find(st.items.begin(), st.items.end(), it));
            st.awaiting_transcript.erase(
                std::remove(st.awaiting_transcript.begin(), st.awaiting_transcript.end(), it),
                st.awaiting_transcript.end());
            st.send({{"type", "conversation.item.deleted"}, {"item_id", id}});
            then.push_back(
                [this, turn_id, text, assistant] { session_->forget(turn_id, text, assistant); });
        } else if (type == "response.create") {
            json r = j.contains("response") ? j["response"] : json::object();
            if (!r.is_object())
                return fail({"invalid_value",
                             "Invalid value for 'response': an object is "
                             "expected.",
                             "response"});
            response_request req;
            rt_asked a;
            std::optional<std::vector<tool_spec>> response_tools;
            std::optional<json> response_choice;
            a.audio = st.settings.audio_out;
            a.max_output_tokens = st.settings.max_output_tokens;
            for (auto &[k, v] : r.items()) {
                std::string p = "response." + k;
                if (k == "conversation") {
                    if (v != "auto" && v != "none")
                        return fail(*invalid(p, "auto or none is expected"));
                    a.out_of_band = v == "none";
                } else if (k == "instructions") {
                    if (!v.is_string() || v.get<std::string>().size() > INSTRUCTIONS_MAX)
                        return fail(*invalid(p, "a string of at most 64 KiB is expected"));
                    req.instructions = utf8_sanitize(v.get<std::string>());
                } else if (k == "output_modalities") {
                    if (!v.is_array() || v.size() != 1 || (v[0] != "audio" && v[0] != "text"))
                        return fail(*invalid(p, "[\"audio\"] or [\"text\"] is expected"));
                    a.audio = v[0] == "audio";
                } else if (k == "metadata") {
                    if (!v.is_null() && !v.is_object()) return fail(*invalid(p, "an object"));
                    if (v.is_object()) {
                        if (v.size() > 16) return fail(*invalid(p, "at most 16 keys"));
                        for (auto &[mk, mv] : v.items())
                            if (mk.size() > 64 || !mv.is_string() ||
                                mv.get<std::string>().size() > 512)
                                return fail(*invalid(p, "string values of at most 512 "
                                                        "characters, keys of at most 64"));
                    }
                    a.metadata = v;
                } else if (k == "max_output_tokens") {
                    if (v == "inf") {
                        a.max_output_tokens.reset();
                    } else if (v.is_number_integer() && v.get<int64_t>() >= 1 &&
                               v.get<int64_t>() <= MAX_OUTPUT_TOKENS_LIMIT) {
                        a.max_output_tokens = v.get<int>();
                    } else {
                        return fail(*invalid(p, "an integer from 1 to 4096 or \"inf\""));
                    }
                } else if (k == "input") {
                    if (!v.is_array()) return fail(*invalid(p, "an array of items"));
                    std::vector<chat_message> msgs;
                    for (size_t i = 0; i < v.size(); i++) {
                        const json &item = v[i];
                        std::string ip = p + "[" + std::to_string(i) + "]";
                        if (!item.is_object()) return fail(*invalid(ip, "an item"));
                        if (item.contains("type") && item["type"] == "item_reference") {
                            std::string ref = string_field(item, "id");
                            auto found = st.find_item(ref);
                            if (!found)
                                return fail({"item_not_found", "No item " + quote_value(ref) + ".",
                                             ip + ".id"});
                            msgs.push_back({found->role, found->text});
                            continue;
                        }
                        if (item.contains("type") && item["type"] != "message")
                            return fail(
                                {"unsupported", "Only message items are supported.", ip + ".type"});
                        if (!item.contains("role") || !item["role"].is_string() ||
                            (item["role"] != "user" && item["role"] != "assistant" &&
                             item["role"] != "system"))
                            return fail(*invalid(ip + ".role", "user, assistant or system"));
                        std::optional<rt_error> err;
                        std::string text =
                            content_text(item.contains("content") ? item["content"] : json(),
                                         ip + ".content", true, &err);
                        if (err) return fail(*err);
                        msgs.push_back({item["role"].get<std::string>(), text});
                    }
                    req.input = std::move(msgs);
                } else if (k == "tools") {
                    std::string err;
                    std::vector<tool_spec> specs = parse_tools(v, &err);
                    if (!err.empty()) return fail(*invalid(p, err));
                    response_tools = std::move(specs);
                } else if (k == "tool_choice") {
                    if (auto e = check_tool_choice(v, p)) return fail(*e);
                    response_choice = v;
                } else if (k == "audio") {
                    // The session's voice and format are the response's: only those are taken.
                    json expect = {{"output",
                                    {{"format", format_json(st.settings.out_format)},
                                     {"voice", st.settings.voice}}}};
                    bool same = v.is_object();
                    for (auto &[ak, av] : (v.is_object() ? v : EMPTY_OBJECT).items()) {
                        if (ak != "output" || !av.is_object()) same = false;
                        for (auto &[ok, ov] : (av.is_object() ? av : EMPTY_OBJECT).items())
                            if (!expect["output"].contains(ok) || expect["output"][ok] != ov)
                                same = false;
                    }
                    if (!same)
                        return fail({"unsupported",
                                     "A response speaks with the session's voice and format: "
                                     "change them with session.update.",
                                     p});
                } else {
                    return fail(*unknown(p));
                }
            }
            if (response_tools || response_choice) {
                std::vector<tool_spec> offered;
                std::string grammar;
                if (auto e = tools_for(response_tools.value_or(st.settings.tool_specs),
                                       response_choice.value_or(st.settings.tool_choice), &offered,
                                       &grammar)) {
                    e->param = "response." + e->param;
                    return fail(*e);
                }
                req.tools = std::move(offered);
                req.tool_grammar = std::move(grammar);
            }
            std::string id = st.new_id("resp_");
            req.tag = id;
            req.out_of_band = a.out_of_band;
            req.audio = a.audio;
            req.max_tokens = a.max_output_tokens;
            st.asked[id] = a;
            then.push_back([this, req = std::move(req), t_recv]() mutable {
                session_->respond(std::move(req), t_recv);
            });
        } else if (type == "response.cancel") {
            auto r = st.active_response();
            if (j.contains("response_id") && j["response_id"].is_string()) {
                r = nullptr;
                for (auto &[turn, x] : st.responses)
                    if (x->id == j["response_id"].get<std::string>()) r = x;
            }
            if (!r)
                return fail({"response_cancel_not_active",
                             "Cancellation failed: no active response found.",
                             {}});
            r->cancel_asked = true;
            then.push_back([this, t_recv] { session_->interrupt(t_recv); });
        } else if (type == "output_audio_buffer.clear") {
            // The client stops playing: the reply stops where the playout clock says it is.
            then.push_back([this, t_recv] { session_->interrupt(t_recv); });
            st.send({{"type", "output_audio_buffer.cleared"}});
        } else {
            return fail({"invalid_event", "Unknown event type " + quote_value(type) + ".", "type"});
        }
    }
    for (auto &call : then)
        call();
}

} // namespace parley
