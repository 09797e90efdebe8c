// The OpenAI Realtime endpoint (net/realtime-protocol.h) on any sequence of events a client
// sends, over a real session with scripted engines (the session's actors, its replies, its
// history and the connection's item list all run; only the models are scripted).
//
// An input is several client messages separated by NUL bytes (no JSON text holds one); a
// message starting with 0x01 goes in as a binary frame. After the last one the run waits until
// the session has been quiet for a moment (what the events started has been answered), then
// closes the connection as the network layer does.
//
// Promises: every message the server sends is a JSON object with a string `type` and a string
// `event_id`; an `error` event has an `error` object with a non-empty message; the session
// survives everything (no crash, no sanitizer report, close() returns).
#include "../unit/scripted-engines.h"
#include "core/log.h"
#include "fuzz.h"
#include "net/realtime-protocol.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

using namespace parley;
using namespace parley::testing;
using json = nlohmann::json;

namespace {

class checking_output : public ws_output {
  public:
    void send_text(std::string message) override {
        json j = json::parse(message, nullptr, false);
        FUZZ_CHECK(j.is_object());
        FUZZ_CHECK(j.contains("type") && j["type"].is_string());
        FUZZ_CHECK(j.contains("event_id") && j["event_id"].is_string());
        if (j["type"] == "error") {
            FUZZ_CHECK(j.contains("error") && j["error"].is_object());
            const json &e = j["error"];
            FUZZ_CHECK(e.contains("message") && e["message"].is_string() &&
                       !e["message"].get<std::string>().empty());
        }
        ++sent;
    }
    void send_binary(std::string) override { ++sent; }
    std::atomic<int> sent{0};
};

// The engines outlive every input (as a server's do).
struct engines {
    scripted_llm llm{{"Hello", " there", ".", " How", " are", " you", "?"},
                     std::chrono::milliseconds(0)};
    scripted_tts tts;
    scripted_asr asr{"turn the lights on"};
    worker tts_worker{"tts"};
    session_engines e;
    engines() {
        log_set_level(LOG_LEVEL_ERROR); // a line per turn would be most of the run's time
        e.llm = &llm;
        e.tts = &tts;
        e.asr = &asr;
        e.tts_worker = &tts_worker;
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static engines *eng = new engines;
    server_info info;
    info.llm = "scripted";
    info.asr = "scripted";
    auto out = std::make_shared<checking_output>();
    auto c = std::make_shared<realtime_connection>(eng->e, session_config{}, info, out);
    c->open();
    std::string_view input(reinterpret_cast<const char *>(data), size);
    while (!input.empty()) {
        size_t end = input.find('\0');
        std::string_view message = input.substr(0, end);
        if (!message.empty() && message[0] == '\x01')
            c->on_binary(message.substr(1));
        else
            c->on_text(message);
        if (end == std::string_view::npos) break;
        input.remove_prefix(end + 1);
    }
    // Quiet: nothing sent for 2 ms (at most 200 ms in all).
    using namespace std::chrono;
    auto deadline = steady_clock::now() + milliseconds(200);
    int seen = -1;
    while (steady_clock::now() < deadline && out->sent.load() != seen) {
        seen = out->sent.load();
        std::this_thread::sleep_for(milliseconds(2));
    }
    c->close();
    return 0;
}
