// The native protocol's decoder and encoder (net/native-protocol.h) on any bytes a client sends.
// Promises: a message is decoded or refused with a code, never anything else; what is decoded
// is within the protocol's limits; whatever text goes back out is valid JSON.
#include "fuzz.h"
#include "net/native-protocol.h"
#include "text/utf8.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

using namespace parley;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::string_view text(reinterpret_cast<const char *>(data), size);
    auto parsed = parse_client_message(text);
    if (auto *err = std::get_if<protocol_error>(&parsed)) {
        FUZZ_CHECK(!err->code.empty() && !err->message.empty());
        // The error goes back to the client: it must be valid JSON whatever the input held.
        FUZZ_CHECK(nlohmann::json::accept(encode_error(err->code, err->message)));
    } else {
        const client_message &m = std::get<client_message>(parsed);
        if (m.type == CLIENT_MSG_START) {
            FUZZ_CHECK(m.start.sample_rate >= PROTOCOL_MIN_RATE &&
                       m.start.sample_rate <= PROTOCOL_MAX_RATE);
            FUZZ_CHECK(m.start.session_id.size() <= 64);
            FUZZ_CHECK(utf8_valid(m.start.session_id) && utf8_valid(m.start.voice));
        }
        if (m.type == CLIENT_MSG_TEXT) {
            FUZZ_CHECK(m.text.size() <= PROTOCOL_MAX_TEXT_BYTES);
            FUZZ_CHECK(m.text.find_first_not_of(" \t\r\n") != std::string::npos);
        }
        if (m.type == CLIENT_MSG_PLAYBACK) FUZZ_CHECK(m.playback.played_ms >= 0);
    }
    // Server text made of anything (a model's output, a transcript) still encodes to JSON.
    FUZZ_CHECK(nlohmann::json::accept(encode_event(transcript_event{std::string(text), true, 1})));
    reply_chunk_event chunk;
    chunk.text = std::string(text);
    chunk.words.push_back({std::string(text.substr(0, 8)), 0, 10});
    FUZZ_CHECK(nlohmann::json::accept(encode_event(chunk)));
    // Binary frames: any size is accepted or refused with a code.
    protocol_error ferr;
    if (!check_audio_frame(size, &ferr).empty()) FUZZ_CHECK(!ferr.code.empty());
    return 0;
}
