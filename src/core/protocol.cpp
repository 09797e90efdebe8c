#include "core/protocol.h"

#include <nlohmann/json.hpp>

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
        if (j.contains("chunk_id") && j["chunk_id"].is_string()) m.chunk_id = j["chunk_id"];
        if (j.contains("played_ms") && j["played_ms"].is_number()) m.played_ms = j["played_ms"];
    } else {
        return bad("unknown_type", "unknown message type \"" + type.substr(0, 64) + "\"");
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

std::string encode_ready(const std::string &session_id, int sample_rate, bool resumed,
                         int64_t turns, bool llm_available, bool tts_available) {
    json j = {{"type", "ready"},
              {"session_id", session_id},
              {"audio_format",
               {{"encoding", "pcm_s16le"}, {"sample_rate", sample_rate}, {"channels", 1}}},
              {"resumed", resumed},
              {"turns", turns},
              {"llm", llm_available},
              {"tts", tts_available}};
    return j.dump();
}

std::string encode_transcript(const std::string &text, bool is_final, int64_t turn_id) {
    json j = {{"type", "transcript"}, {"text", text}, {"is_final", is_final}};
    if (turn_id > 0) j["turn_id"] = turn_id;
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_text_chunk(const text_chunk_event &c) {
    json j = {{"type", "text_chunk"},   {"chunk_id", c.chunk_id},
              {"text", c.text},         {"has_audio", c.has_audio},
              {"is_final", c.is_final}, {"processing_time_ms", c.processing_time_ms},
              {"turn_id", c.turn_id}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_response_done(int64_t turn_id, const std::string &reply,
                                 const std::string &timings_json, const std::string &stop_reason) {
    json j = {{"type", "response_done"},
              {"turn_id", turn_id},
              {"text", reply},
              {"stop_reason", stop_reason}};
    j["timings"] = json::parse(timings_json, nullptr, false);
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_interrupted(int64_t turn_id) {
    return json({{"type", "interrupted"}, {"turn_id", turn_id}}).dump();
}

std::string encode_error(const std::string &code, const std::string &message) {
    return json({{"type", "error"}, {"code", code}, {"message", message}})
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_error(const protocol_error &err) {
    return encode_error(err.code, err.message);
}

} // namespace parley
