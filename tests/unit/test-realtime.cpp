// The OpenAI Realtime codec over scripted engines: what the model is given (instructions,
// history, out-of-band prompts, truncated replies), push-to-talk commits, partial updates; and
// G.711.
#include "audio/g711.h"
#include "core/base64.h"
#include "fakes.h"
#include "net/realtime-protocol.h"

#include <cmath>

using namespace parley;
using namespace parley::testing;

namespace {

struct rt_rig {
    scripted_llm llm{{"Hello", " there", ".", " How", " are", " you", "?"}};
    scripted_tts tts;
    scripted_asr asr{"turn the lights on"}; // an end pass after the commit: the response waits
    worker tts_worker{"tts"};
    std::shared_ptr<recording_output> out = std::make_shared<recording_output>();
    std::shared_ptr<realtime_connection> c;

    rt_rig() {
        session_engines e;
        e.llm = &llm;
        e.tts = &tts;
        e.asr = &asr;
        e.tts_worker = &tts_worker;
        server_info info;
        info.llm = "scripted";
        info.asr = "scripted";
        c = std::make_shared<realtime_connection>(e, session_config{}, info, out);
        c->open();
        EXPECT_TRUE(out->wait_type("session.created"));
    }
    ~rt_rig() { c->close(); }
    void send(const json &j) { c->on_text(j.dump()); }
    void say(const std::string &text) {
        send({{"type", "conversation.item.create"},
              {"item",
               {{"type", "message"},
                {"role", "user"},
                {"content", json::array({{{"type", "input_text"}, {"text", text}}})}}}});
    }
    // The messages of the model's last prompt (role: content).
    std::vector<std::string> last_prompt() {
        std::vector<std::string> out;
        auto prompts = llm.prompts();
        if (prompts.empty()) return out;
        for (const chat_message &m : prompts.back())
            out.push_back(m.role + ": " + m.content);
        return out;
    }
};

std::vector<std::string> types(const std::vector<out_msg> &msgs) {
    std::vector<std::string> t;
    for (const auto &m : msgs)
        t.push_back(m.j["type"]);
    return t;
}

} // namespace

TEST(g711, every_code_decodes_and_encodes_back_and_speech_levels_survive) {
    for (g711_law law : {G711_MU_LAW, G711_A_LAW}) {
        for (int code = 0; code < 256; code++) {
            int16_t x = g711_decode_sample(uint8_t(code), law);
            uint8_t back = g711_encode_sample(x, law);
            // mu-law has two codes for zero (0x7F and 0xFF); every other code is its own.
            if (law == G711_MU_LAW && (code == 0x7F || code == 0xFF))
                EXPECT_EQ(g711_decode_sample(back, law), 0);
            else
                EXPECT_EQ(back, code) << "law " << law << " code " << code;
        }
        for (int s = -32768; s < 32768; s += 97) {
            int16_t y = g711_decode_sample(g711_encode_sample(int16_t(s), law), law);
            // 8-bit logarithmic: within about 1/16 of the sample above the smallest steps.
            EXPECT_LE(std::abs(y - s), std::abs(s) / 16 + 40) << "law " << law << " sample " << s;
        }
    }
    EXPECT_EQ(g711_encode_sample(0, G711_MU_LAW), 0xFF);
    EXPECT_EQ(g711_encode_sample(0, G711_A_LAW), 0xD5);
    EXPECT_EQ(g711_decode_sample(0x80, G711_MU_LAW), 32124);
    EXPECT_EQ(g711_decode_sample(0xAA, G711_A_LAW), 32256);
}

TEST(realtime, a_typed_turn_streams_the_response_events_in_order_with_the_sessions_instructions) {
    rt_rig r;
    r.send({{"type", "session.update"},
            {"session", {{"type", "realtime"}, {"instructions", "Answer in French."}}}});
    ASSERT_TRUE(r.out->wait_type("session.updated"));
    EXPECT_EQ(r.out->of_type("session.updated")[0]["session"]["instructions"], "Answer in French.");
    r.say("Hi");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done"));
    std::vector<std::string> t = types(r.out->all());
    std::vector<std::string> order = {"response.created",
                                      "response.output_item.added",
                                      "response.content_part.added",
                                      "response.output_audio_transcript.delta",
                                      "response.output_audio.delta",
                                      "response.output_audio.done",
                                      "response.output_audio_transcript.done",
                                      "response.content_part.done",
                                      "response.output_item.done",
                                      "conversation.item.done",
                                      "response.done"};
    size_t at = 0;
    for (const std::string &o : order) {
        auto it = std::find(t.begin() + ptrdiff_t(at), t.end(), o);
        ASSERT_NE(it, t.end()) << o << " in order";
        at = size_t(it - t.begin());
    }
    json done = r.out->of_type("response.done")[0]["response"];
    EXPECT_EQ(done["status"], "completed");
    EXPECT_EQ(done["output"][0]["content"][0]["transcript"], "Hello there. How are you?");
    EXPECT_EQ(done["usage"]["output_tokens"], 7);
    std::vector<std::string> p = r.last_prompt();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0], "system: Answer in French.");
    EXPECT_EQ(p[1], "user: Hi");
    // Audio deltas are 24 kHz 16-bit PCM: the scripted voice is 10 ms a character.
    size_t bytes = 0;
    for (const json &d : r.out->of_type("response.output_audio.delta"))
        bytes += base64_decode(d["delta"].get<std::string>())->size();
    EXPECT_NEAR(double(bytes) / 2 / 24000, 0.01 * (12 + 12), 0.01);
}

TEST(realtime, an_out_of_band_response_has_its_own_prompt_and_stays_out_of_the_history) {
    rt_rig r;
    r.say("Hi");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done"));
    r.send({{"type", "response.create"},
            {"response",
             {{"conversation", "none"},
              {"instructions", "Classify the topic."},
              {"metadata", {{"k", "v"}}},
              {"output_modalities", json::array({"text"})}}}});
    ASSERT_TRUE(r.out->wait_type("response.done", 2));
    json side = r.out->of_type("response.done")[1]["response"];
    EXPECT_TRUE(side["conversation_id"].is_null());
    EXPECT_EQ(side["metadata"]["k"], "v");
    std::vector<std::string> p = r.last_prompt();
    ASSERT_EQ(p.size(), 3u); // its instructions, then the conversation as it stands
    EXPECT_EQ(p[0], "system: Classify the topic.");
    EXPECT_EQ(p[2], "assistant: Hello there. How are you?");
    EXPECT_FALSE(r.out->of_type("response.output_text.delta").empty());
    // The next reply's prompt has the first turn only.
    r.say("And then?");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done", 3));
    p = r.last_prompt();
    ASSERT_EQ(p.size(), 4u);
    EXPECT_EQ(p[3], "user: And then?");
}

TEST(realtime, truncation_keeps_the_words_heard_by_audio_end_ms_for_the_next_prompt) {
    rt_rig r;
    r.say("Hi");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done"));
    json item = r.out->of_type("response.done")[0]["response"]["output"][0];
    // "Hello there." is 120 ms; "Hello" 0-50 ms: 60 ms in, the client heard "Hello".
    r.send({{"type", "conversation.item.truncate"},
            {"item_id", item["id"]},
            {"content_index", 0},
            {"audio_end_ms", 60}});
    ASSERT_TRUE(r.out->wait_type("conversation.item.truncated"));
    r.send({{"type", "conversation.item.retrieve"}, {"item_id", item["id"]}});
    ASSERT_TRUE(r.out->wait_type("conversation.item.retrieved"));
    EXPECT_EQ(r.out->of_type("conversation.item.retrieved")[0]["item"]["content"][0]["transcript"],
              "Hello");
    r.say("What?");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done", 2));
    std::vector<std::string> p = r.last_prompt();
    ASSERT_EQ(p.size(), 4u);
    EXPECT_EQ(p[2], "assistant: Hello");
}

TEST(realtime, push_to_talk_the_response_waits_for_the_committed_utterances_transcript) {
    rt_rig r;
    r.send({{"type", "session.update"},
            {"session", {{"audio", {{"input", {{"turn_detection", nullptr}}}}}}}});
    ASSERT_TRUE(r.out->wait_type("session.updated"));
    std::vector<int16_t> pcm(24000, 2000); // 1 s
    std::string bytes(reinterpret_cast<const char *>(pcm.data()), pcm.size() * 2);
    r.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode(bytes)}});
    r.send({{"type", "input_audio_buffer.commit"}});
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done"));
    std::vector<std::string> t = types(r.out->all());
    auto at = [&](const std::string &x) { return std::find(t.begin(), t.end(), x) - t.begin(); };
    EXPECT_LT(at("input_audio_buffer.committed"),
              at("conversation.item.input_audio_transcription.completed"));
    EXPECT_LT(at("conversation.item.input_audio_transcription.completed"), at("response.created"));
    json completed = r.out->of_type("conversation.item.input_audio_transcription.completed")[0];
    EXPECT_EQ(completed["transcript"], "turn the lights on");
    EXPECT_EQ(completed["item_id"], r.out->of_type("input_audio_buffer.committed")[0]["item_id"]);
    std::vector<std::string> p = r.last_prompt();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[1], "user: turn the lights on");
}

TEST(realtime, an_update_with_one_bad_field_changes_nothing_and_names_the_field) {
    rt_rig r;
    r.send({{"type", "session.update"},
            {"event_id", "ev1"},
            {"session", {{"instructions", "Be terse."}, {"audio", {{"output", {{"speed", 9}}}}}}}});
    ASSERT_TRUE(r.out->wait_type("error"));
    json e = r.out->of_type("error")[0]["error"];
    EXPECT_EQ(e["param"], "session.audio.output.speed");
    EXPECT_EQ(e["event_id"], "ev1");
    EXPECT_EQ(e["type"], "invalid_request_error");
    r.send({{"type", "session.update"}, {"session", {{"max_output_tokens", 50}}}});
    ASSERT_TRUE(r.out->wait_type("session.updated"));
    json s = r.out->of_type("session.updated")[0]["session"];
    EXPECT_NE(s["instructions"], "Be terse.");
    EXPECT_EQ(s["max_output_tokens"], 50);
    EXPECT_EQ(s["audio"]["output"]["speed"], 1.0);
}

TEST(realtime, a_reply_that_calls_a_tool_becomes_a_function_call_item_and_its_output_goes_back) {
    scripted_llm llm{{"<tool_call>", "{\"name\": \"get_weather\", ",
                      "\"arguments\": {\"city\": ", "\"Oslo\"}}", "</tool_call>"}};
    scripted_tts tts;
    worker tts_worker{"tts"};
    auto out = std::make_shared<recording_output>();
    session_engines e;
    e.llm = &llm;
    e.tts = &tts;
    e.tts_worker = &tts_worker;
    auto c = std::make_shared<realtime_connection>(e, session_config{}, server_info{}, out);
    c->open();
    ASSERT_TRUE(out->wait_type("session.created"));
    auto send = [&](const json &j) { c->on_text(j.dump()); };
    json tools = json::parse(R"([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])");
    send({{"type", "session.update"}, {"session", {{"tools", tools}}}});
    ASSERT_TRUE(out->wait_type("session.updated"));
    EXPECT_EQ(out->of_type("session.updated")[0]["session"]["tools"], tools);
    send({{"type", "conversation.item.create"},
          {"item",
           {{"type", "message"},
            {"role", "user"},
            {"content", json::array({{{"type", "input_text"}, {"text", "Weather?"}}})}}}});
    send({{"type", "response.create"}});
    ASSERT_TRUE(out->wait_type("response.done"));
    json done = out->of_type("response.function_call_arguments.done")[0];
    EXPECT_EQ(done["name"], "get_weather");
    EXPECT_EQ(json::parse(done["arguments"].get<std::string>())["city"], "Oslo");
    std::string call_id = done["call_id"];
    EXPECT_TRUE(call_id.starts_with("call_"));
    // Nothing of the call is spoken or shown as text.
    EXPECT_TRUE(out->of_type("response.output_audio.delta").empty());
    EXPECT_TRUE(out->of_type("response.output_audio_transcript.delta").empty());
    json response = out->of_type("response.done")[0]["response"];
    ASSERT_EQ(response["output"].size(), 1u);
    EXPECT_EQ(response["output"][0]["type"], "function_call");
    EXPECT_EQ(response["output"][0]["call_id"], call_id);
    // The model was offered the tool, free to call it or not (tool_choice auto).
    auto prompts = llm.prompts();
    ASSERT_EQ(prompts.size(), 1u);
    EXPECT_EQ(llm.tools()[0], std::vector<std::string>{"get_weather"});
    EXPECT_EQ(llm.grammars()[0], "");
    // The tool's output, then the next reply: the model reads the call and its result.
    send({{"type", "conversation.item.create"},
          {"item",
           {{"type", "function_call_output"}, {"call_id", call_id}, {"output", "{\"temp\": 3}"}}}});
    send({{"type", "response.create"}, {"response", {{"tool_choice", "none"}}}});
    ASSERT_TRUE(out->wait_type("response.done", 2));
    prompts = llm.prompts();
    ASSERT_EQ(prompts.size(), 2u);
    const auto &p = prompts[1];
    ASSERT_GE(p.size(), 4u);
    EXPECT_EQ(p[p.size() - 2].role, "assistant");
    EXPECT_NE(p[p.size() - 2].content.find("<tool_call>"), std::string::npos);
    EXPECT_EQ(p.back().role, "user");
    EXPECT_EQ(p.back().content, "<tool_response>\n{\"temp\": 3}\n</tool_response>");
    EXPECT_TRUE(llm.tools()[1].empty()) << "tool_choice none offers none";
    // A required choice puts the call's grammar on the reply.
    send({{"type", "session.update"}, {"session", {{"tool_choice", "required"}}}});
    ASSERT_TRUE(out->wait_type("session.updated", 2));
    send({{"type", "response.create"}});
    ASSERT_TRUE(out->wait_type("response.done", 3));
    EXPECT_NE(llm.grammars()[2].find("get_weather"), std::string::npos);
    // A named choice of a tool that is not there is refused, naming the field.
    send({{"type", "response.create"},
          {"event_id", "ev-x"},
          {"response", {{"tool_choice", {{"type", "function"}, {"name", "launch"}}}}}});
    ASSERT_TRUE(out->wait_type("error"));
    EXPECT_EQ(out->of_type("error")[0]["error"]["param"], "response.tool_choice");
    c->close();
}

TEST(realtime, deleted_items_leave_the_models_prompt) {
    rt_rig r;
    r.say("First question");
    ASSERT_TRUE(r.out->wait_type("conversation.item.done"));
    std::string first = r.out->of_type("conversation.item.done")[0]["item"]["id"];
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done"));
    std::string reply = r.out->of_type("response.done")[0]["response"]["output"][0]["id"];
    r.say("Keep this");
    r.say("Drop this");
    ASSERT_TRUE(r.out->wait_type("conversation.item.done", 4));
    std::string drop = r.out->of_type("conversation.item.done")[3]["item"]["id"];
    ASSERT_EQ(r.out->of_type("conversation.item.done")[3]["item"]["content"][0]["text"],
              "Drop this");
    // A waiting message, the first turn's question, and its reply.
    for (const std::string &id : {drop, first, reply})
        r.send({{"type", "conversation.item.delete"}, {"item_id", id}});
    ASSERT_TRUE(r.out->wait_type("conversation.item.deleted", 3));
    r.send({{"type", "conversation.item.retrieve"}, {"item_id", first}, {"event_id", "gone"}});
    ASSERT_TRUE(r.out->wait_type("error"));
    EXPECT_EQ(r.out->of_type("error")[0]["error"]["code"], "item_not_found");
    r.send({{"type", "response.create"}});
    ASSERT_TRUE(r.out->wait_type("response.done", 2));
    std::vector<std::string> p = r.last_prompt();
    ASSERT_EQ(p.size(), 2u) << p.back();
    EXPECT_EQ(p[1], "user: Keep this");
}
