#include "net/native-protocol.h"

#include "store/turn-timings-json.h"
#include "text/utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace parley {

using json = nlohmann::json;

namespace {

protocol_error bad(const std::string &code, const std::string &message) {
    return {code, message};
}

} // namespace

std::variant<client_message, protocol_error> parse_client_message(std::string_view text) {
    if (text.size() > PROTOCOL_MAX_TEXT_BYTES * 4)
        return bad("message_too_large", "control messages are limited to 16 KiB");
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return bad("invalid_json", "message is not valid JSON");
    if (!j.is_object()) return bad("invalid_message", "message must be a JSON object");
    auto type_it = j.find("type");
    if (type_it == j.end() || !type_it->is_string())
        return bad("invalid_message", "message needs a string field \"type\"");
    std::string type = *type_it;
    client_message m;
    if (type == "start") {
        m.type = CLIENT_MSG_START;
        if (j.contains("sample_rate")) {
            if (!j["sample_rate"].is_number_integer())
                return bad("bad_sample_rate", "sample_rate must be an integer");
            long long rate = j["sample_rate"];
            if (rate < PROTOCOL_MIN_RATE || rate > PROTOCOL_MAX_RATE)
                return bad("bad_sample_rate",
                           "sample_rate must be 8000..48000 Hz, got " + std::to_string(rate));
            m.start.sample_rate = int(rate);
        }
        if (j.contains("tts")) {
            if (!j["tts"].is_boolean()) return bad("invalid_message", "tts must be true or false");
            m.start.tts = j["tts"];
        }
        if (j.contains("session_id") && !j["session_id"].is_null()) {
            if (!j["session_id"].is_string())
                return bad("invalid_message", "session_id must be a string");
            m.start.session_id = j["session_id"];
            if (m.start.session_id.size() > 64)
                return bad("invalid_message", "session_id is too long");
        }
        if (j.contains("voice")) {
            if (!j["voice"].is_string()) return bad("invalid_message", "voice must be a string");
            m.start.voice = j["voice"];
        }
        if (j.contains("rate")) {
            if (!j["rate"].is_number_integer())
                return bad("invalid_message", "rate must be an integer");
            m.start.rate_wpm = j["rate"];
        }
        if (j.contains("mode")) {
            if (!j["mode"].is_string() ||
                (j["mode"] != "push_to_talk" && j["mode"] != "hands_free"))
                return bad("invalid_message", "mode must be \"push_to_talk\" or \"hands_free\"");
            m.start.mode =
                j["mode"] == "hands_free" ? SESSION_MODE_HANDS_FREE : SESSION_MODE_PUSH_TO_TALK;
        }
        if (j.contains("echo_cancellation")) {
            if (!j["echo_cancellation"].is_boolean())
                return bad("invalid_message", "echo_cancellation must be true or false");
            m.start.echo = j["echo_cancellation"] ? CLIENT_ECHO_CANCELLED : CLIENT_ECHO_NONE;
        }
        if (j.contains("vad")) {
            const json &v = j["vad"];
            if (!v.is_object()) return bad("invalid_message", "vad must be an object");
            if (v.contains("threshold")) {
                if (!v["threshold"].is_number() || v["threshold"] <= 0 || v["threshold"] >= 1)
                    return bad("invalid_message", "vad.threshold must be a number in (0, 1)");
                m.start.vad_threshold = v["threshold"];
            }
            for (auto [key, dest, lo, hi] :
                 {std::tuple{"min_speech_ms", &m.start.min_speech_ms, 32, 5000},
                  std::tuple{"min_silence_ms", &m.start.min_silence_ms, 64, 10000},
                  std::tuple{"prefix_pad_ms", &m.start.prefix_pad_ms, 0, 1000}}) {
                if (!v.contains(key)) continue;
                if (!v[key].is_number_integer() || v[key] < lo || v[key] > hi)
                    return bad("invalid_message", std::string("vad.") + key +
                                                      " must be an integer " + std::to_string(lo) +
                                                      ".." + std::to_string(hi));
                *dest = v[key];
            }
        }
    } else if (type == "stop") {
        m.type = CLIENT_MSG_STOP;
    } else if (type == "interrupt") {
        m.type = CLIENT_MSG_INTERRUPT;
    } else if (type == "text") {
        m.type = CLIENT_MSG_TEXT;
        if (!j.contains("text") || !j["text"].is_string())
            return bad("invalid_message", "text message needs a string field \"text\"");
        m.text = j["text"];
        if (m.text.size() > PROTOCOL_MAX_TEXT_BYTES)
            return bad("text_too_long",
                       "text is limited to 4096 bytes, got " + std::to_string(m.text.size()));
        if (m.text.find_first_not_of(" \t\r\n") == std::string::npos)
            return bad("empty_text", "text is empty");
    } else if (type == "playback") {
        m.type = CLIENT_MSG_PLAYBACK;
        if (!j.contains("chunk_id") || !j["chunk_id"].is_string() || !j.contains("played_ms") ||
            !j["played_ms"].is_number() || j["played_ms"] < 0)
            return bad("invalid_message",
                       "playback needs chunk_id (string) and played_ms (a number >= 0)");
        m.playback.chunk_id = j["chunk_id"];
        m.playback.played_ms = int(std::min<double>(j["played_ms"].get<double>(), 3600000.0));
        if (j.contains("turn_id") && j["turn_id"].is_number_integer())
            m.playback.turn_id = j["turn_id"];
    } else {
        return bad("unknown_type", "unknown message type " + quote_value(type));
    }
    return m;
}

std::string check_audio_frame(size_t bytes, protocol_error *err) {
    protocol_error e;
    if (bytes == 0) {
        e = bad("empty_frame", "audio frame is empty");
    } else if (bytes > PROTOCOL_MAX_FRAME_BYTES) {
        e = bad("frame_too_large",
                "audio frames are limited to 1 MiB, got " + std::to_string(bytes) + " bytes");
    } else if (bytes % 2) {
        e = bad("odd_frame", "audio frame has an odd number of bytes (" + std::to_string(bytes) +
                                 "); expected 16-bit samples");
    } else {
        return {};
    }
    if (err) *err = e;
    return e.code;
}

namespace {

std::string dump(const json &j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json encode(const ready_event &e) {
    json j = {{"type", "ready"},
              {"session_id", e.session_id},
              {"audio_format",
               {{"encoding", "pcm_s16le"}, {"sample_rate", e.audio_rate}, {"channels", 1}}},
              {"resumed", e.resumed},
              {"turns", e.turns},
              {"llm", e.llm},
              {"tts", e.tts}};
    if (!e.resume_token.empty()) j["resume_token"] = e.resume_token;
    return j;
}

json encode(const queued_event &e) {
    return {{"type", "queued"}, {"position", e.position}};
}

json encode(const admitted_event &) {
    return {{"type", "admitted"}};
}

json encode(const transcript_event &e) {
    json j = {{"type", "transcript"}, {"text", e.text}, {"is_final", e.is_final}};
    if (e.turn_id > 0) j["turn_id"] = e.turn_id;
    return j;
}

json encode(const speech_started_event &e) {
    return {{"type", "speech_started"}, {"at_ms", std::round(e.at_ms)}};
}

json encode(const speech_stopped_event &e) {
    return {{"type", "speech_stopped"},
            {"at_ms", std::round(e.at_ms)},
            {"decided_ms", std::round(e.decided_ms)}};
}

json encode(const reply_chunk_event &c) {
    json j = {{"type", "text_chunk"},   {"chunk_id", c.chunk_id},
              {"text", c.text},         {"has_audio", c.has_audio},
              {"is_final", c.is_final}, {"processing_time_ms", c.processing_time_ms},
              {"turn_id", c.turn_id}};
    if (c.has_audio && !c.words.empty()) {
        json words = json::array();
        for (const chunk_word &w : c.words)
            words.push_back({{"text", w.text}, {"start_ms", w.start_ms}, {"end_ms", w.end_ms}});
        j["words"] = std::move(words);
        if (c.words_estimated) j["words_estimated"] = true;
    }
    return j;
}

json encode(const reply_started_event &) {
    return nullptr; // the first text_chunk says it
}

json encode(const tool_calls_event &) {
    return nullptr; // sessions of this protocol offer no tools
}

json encode(const reply_done_event &e) {
    return {{"type", "response_done"},
            {"turn_id", e.turn_id},
            {"text", e.text},
            {"stop_reason", llm_stop_name(e.stop_reason)},
            {"timings", json::parse(turn_timings_json(e.timings))}};
}

json encode(const interrupted_event &e) {
    json j = {{"type", "interrupted"}, {"turn_id", e.turn_id}};
    if (!e.heard.empty()) j["heard"] = e.heard;
    return j;
}

json encode(const resumed_event &e) {
    return {{"type", "resumed"}, {"turn_id", e.turn_id}};
}

json encode(const error_event &e) {
    return {{"type", "error"}, {"code", e.code}, {"message", e.message}};
}

} // namespace

std::string encode_event(const session_event &e) {
    json j = std::visit([](const auto &x) { return encode(x); }, e);
    return j.is_null() ? std::string() : dump(j);
}

std::string encode_pcm(const std::vector<int16_t> &pcm) {
    return std::string(reinterpret_cast<const char *>(pcm.data()), pcm.size() * 2);
}

std::string encode_error(const std::string &code, const std::string &message) {
    return dump(encode(error_event{code, message}));
}

} // namespace parley
