// Function calling: JSON Schema to GBNF, reading the model's calls, folding tools into a
// prompt; and llama.cpp's grammar sampler with stories260K writing a call that the grammar of
// a tool's schema allows (a 260K-parameter story model cannot call tools on its own).
#include "llm/json-grammar.h"
#include "llm/llm.h"
#include "llm/tool-calls.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

using namespace parley;
using json = nlohmann::json;

namespace {

std::vector<tool_spec> weather_tools() {
    std::string err;
    auto tools = parse_tools(json::parse(R"([
      {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {
          "city": {"type": "string", "maxLength": 12},
          "unit": {"enum": ["celsius", "fahrenheit"]}},
          "required": ["city", "unit"]}}},
      {"type": "function", "function": {"name": "set_timer",
        "parameters": {"type": "object", "properties": {"minutes": {"type": "integer"}},
          "required": ["minutes"]}}}])"),
                             &err);
    EXPECT_EQ(err, "");
    return tools;
}

std::string model_path() {
    const char *src = std::getenv("PARLEY_SOURCE_DIR");
    return std::string(src ? src : ".") + "/../shared/models/stories260K.gguf";
}

} // namespace

TEST(json_grammar, rules_for_each_kind_of_schema) {
    std::string g = json_schema_grammar(json::parse(R"({"type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
                       "c": {"const": "x\"y"}, "d": {"anyOf": [{"type": "null"}, {"type": "number"}]}},
        "required": ["a"]})"));
    EXPECT_NE(g.find("root ::= schema\n"), std::string::npos) << g;
    // a is required; the others optional, each after a comma.
    EXPECT_NE(g.find("\"\\\"a\\\"\" ws \":\" ws integer (ws \",\" ws \"\\\"b\\\"\""),
              std::string::npos)
        << g;
    EXPECT_NE(g.find("\"[\" ws boolean (ws \",\" ws boolean){0,2} ws \"]\""), std::string::npos)
        << g;
    EXPECT_NE(g.find("\"\\\"x\\\\\\\"y\\\"\""), std::string::npos) << g; // the const, escaped twice
    EXPECT_NE(g.find("null | number"), std::string::npos) << g;
    EXPECT_NE(g.find("integer ::= "), std::string::npos);
    EXPECT_EQ(g.find("value ::="), std::string::npos) << "no generic values needed: " << g;
}

TEST(json_grammar, refs_recursion_and_bad_schemas) {
    std::string g = json_schema_grammar(json::parse(R"({"$ref": "#/$defs/node",
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}})"));
    EXPECT_NE(g.find("def-node ::= "), std::string::npos) << g;
    EXPECT_THROW(json_schema_grammar(json::parse(R"({"$ref": "#/nowhere"})")),
                 std::invalid_argument);
    EXPECT_THROW(json_schema_grammar(json::parse(R"({"type": "spaceship"})")),
                 std::invalid_argument);
    EXPECT_THROW(json_schema_grammar(json::parse("false")), std::invalid_argument);
    EXPECT_THROW(
        json_schema_grammar(json::parse(R"({"type": "array", "minItems": 3, "maxItems": 1})")),
        std::invalid_argument);
    json deep = json::object();
    for (int i = 0; i < 40; i++)
        deep = {{"type", "array"}, {"items", deep}};
    EXPECT_THROW(json_schema_grammar(deep), std::invalid_argument);
}

// llama.cpp writes a bounded repeat out rule by rule: the bounds of one grammar add up to at
// most 20000, per schema and for all the tools of a request together.
TEST(json_grammar, length_and_item_bounds_have_a_total) {
    json big = json::parse(R"({"type": "string", "maxLength": 9000})");
    EXPECT_NO_THROW(json_schema_grammar(big));
    json three = {{"anyOf", {big, big, big}}};
    EXPECT_THROW(json_schema_grammar(three), std::invalid_argument);
    json unbounded = json::parse(R"({"type": "array", "items": {"type": "string"}})");
    EXPECT_NO_THROW(json_schema_grammar(unbounded)) << "a star is one rule";
    json tools = json::array();
    for (const char *name : {"a", "b", "c"})
        tools.push_back({{"type", "function"},
                         {"name", name},
                         {"parameters", {{"type", "object"}, {"properties", {{"s", big}}}}}});
    std::string err;
    EXPECT_TRUE(parse_tools(tools, &err).empty());
    EXPECT_NE(err.find("20000"), std::string::npos) << err;
    tools.erase(2);
    err.clear();
    EXPECT_EQ(parse_tools(tools, &err).size(), 2u) << err;
}

TEST(tool_calls, parse_tools_checks_names_and_schemas) {
    EXPECT_EQ(weather_tools().size(), 2u);
    std::string err;
    EXPECT_TRUE(
        parse_tools(json::parse(R"([{"type": "function", "function": {"name": "a b"}}])"), &err)
            .empty());
    EXPECT_NE(err.find("name"), std::string::npos);
    err.clear();
    EXPECT_TRUE(
        parse_tools(
            json::parse(
                R"([{"type": "function", "name": "f"}, {"type": "function", "name": "f"}])"),
            &err)
            .empty());
    EXPECT_NE(err.find("twice"), std::string::npos);
    err.clear();
    EXPECT_TRUE(parse_tools(json::parse(R"([{"type": "code_interpreter"}])"), &err).empty());
    err.clear();
    auto flat = parse_tools(
        json::parse(R"([{"type": "function", "name": "f", "parameters": {"type": "object"}}])"),
        &err);
    ASSERT_EQ(flat.size(), 1u) << err; // the Realtime API's flat form
}

TEST(tool_calls, reads_tagged_and_bare_calls_and_leaves_the_rest) {
    auto tools = weather_tools();
    parsed_reply r = parse_tool_calls(
        "Let me see. <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", "
        "\"unit\": \"celsius\"}}</tool_call>\n<tool_call>{\"name\": \"set_timer\", \"arguments\": "
        "\"{\\\"minutes\\\": 5}\"}</tool_call>",
        tools);
    ASSERT_EQ(r.calls.size(), 2u);
    EXPECT_EQ(r.calls[0].name, "get_weather");
    EXPECT_EQ(json::parse(r.calls[0].arguments)["city"], "Oslo");
    EXPECT_EQ(json::parse(r.calls[1].arguments)["minutes"], 5);
    EXPECT_EQ(r.content, "Let me see.");
    parsed_reply bare =
        parse_tool_calls(" {\"name\": \"set_timer\", \"arguments\": {\"minutes\": 2}}", tools);
    ASSERT_EQ(bare.calls.size(), 1u);
    EXPECT_EQ(bare.content, "");
    // Unknown tools and malformed JSON stay text.
    parsed_reply none = parse_tool_calls("<tool_call>{\"name\": \"launch\", \"arguments\": "
                                         "{}}</tool_call> and <tool_call>{oops</tool_call>",
                                         tools);
    EXPECT_TRUE(none.calls.empty());
    EXPECT_NE(none.content.find("launch"), std::string::npos);
    EXPECT_TRUE(may_be_tool_call("<tool"));
    EXPECT_TRUE(may_be_tool_call("  {\"na"));
    EXPECT_FALSE(may_be_tool_call("Once upon"));
}

TEST(tool_calls, fold_tools_writes_them_into_the_messages) {
    std::vector<chat_message> msgs = {
        {"system", "Be brief.", {}, {}},
        {"user", "Weather in Oslo?", {}, {}},
        {"assistant", "", {{"call_1", "get_weather", R"({"city":"Oslo","unit":"celsius"})"}}, {}},
        {"tool", R"({"temp": 3})", {}, "call_1"}};
    auto f = fold_tools(msgs, weather_tools());
    ASSERT_EQ(f.size(), 4u);
    EXPECT_NE(f[0].content.find("Be brief."), std::string::npos);
    EXPECT_NE(f[0].content.find("\"name\":\"get_weather\""), std::string::npos) << f[0].content;
    EXPECT_EQ(f[2].content, "<tool_call>{\"arguments\":{\"city\":\"Oslo\",\"unit\":\"celsius\"},"
                            "\"name\":\"get_weather\"}</tool_call>");
    EXPECT_EQ(f[3].role, "user");
    EXPECT_EQ(f[3].content, "<tool_response>\n{\"temp\": 3}\n</tool_response>");
    // No system message: the tools get one of their own.
    auto g = fold_tools({{"user", "hi", {}, {}}}, weather_tools());
    ASSERT_EQ(g.size(), 2u);
    EXPECT_EQ(g[0].role, "system");
}

TEST(tool_calls, the_grammar_makes_the_story_model_write_a_valid_call) {
    if (!std::filesystem::exists(model_path())) GTEST_SKIP() << "no test model";
    llm_config cfg;
    cfg.model_path = model_path();
    cfg.slots = 1;
    auto llm = make_llm_engine(cfg);
    auto tools = weather_tools();
    for (const std::string only : {"", "get_weather", "set_timer"}) {
        for (float temperature : {0.0f, 0.8f}) {
            llm_request req;
            req.slot = -1;
            req.max_tokens = 120;
            req.sampling.temperature = temperature;
            req.sampling.seed = 7;
            req.tools = tools;
            req.grammar = tool_call_grammar(tools, only);
            req.messages = [](int, const auto &) {
                return std::vector<chat_message>{{"user", "What is the weather in Oslo?", {}, {}}};
            };
            std::mutex m;
            std::condition_variable cv;
            bool done = false;
            llm_result result;
            req.on_piece = [](std::string_view) {};
            req.on_done = [&](const llm_result &r) {
                std::lock_guard lock(m);
                result = r;
                done = true;
                cv.notify_all();
            };
            llm->submit(std::move(req));
            std::unique_lock lock(m);
            ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; }));
            SCOPED_TRACE("only '" + only + "', temperature " + std::to_string(temperature) + ": " +
                         result.text);
            EXPECT_EQ(result.stop_reason, LLM_STOP_EOG) << result.error;
            parsed_reply p = parse_tool_calls(result.text, tools);
            ASSERT_EQ(p.calls.size(), 1u);
            EXPECT_EQ(p.content, "");
            json args = json::parse(p.calls[0].arguments);
            if (!only.empty()) EXPECT_EQ(p.calls[0].name, only);
            if (p.calls[0].name == "get_weather") {
                EXPECT_TRUE(args["city"].is_string());
                EXPECT_LE(args["city"].get<std::string>().size(), 12u);
                EXPECT_TRUE(args["unit"] == "celsius" || args["unit"] == "fahrenheit");
            } else {
                EXPECT_TRUE(args["minutes"].is_number_integer());
            }
        }
    }
}

TEST(tool_calls, a_jinja_template_renders_the_tools_and_the_calls) {
    if (!std::filesystem::exists(model_path())) GTEST_SKIP() << "no test model";
    const char *src = std::getenv("PARLEY_SOURCE_DIR");
    llm_config cfg;
    cfg.model_path = model_path();
    cfg.slots = 1;
    cfg.chat_template = std::string(src ? src : ".") + "/tests/templates/chatml-tools.jinja";
    auto llm = make_llm_engine(cfg);
    std::vector<chat_message> msgs = {
        {"system", "Be brief.", {}, {}},
        {"user", "Weather in Oslo?", {}, {}},
        {"assistant", "", {{"call_1", "get_weather", R"({"city":"Oslo","unit":"celsius"})"}}, {}},
        {"tool", R"({"temp": 3})", {}, "call_1"}};
    std::string p = llm->format(msgs, weather_tools());
    EXPECT_TRUE(p.starts_with("<|im_start|>system\nBe brief.\n\nFunctions you may call:\n{")) << p;
    EXPECT_NE(p.find("\"name\": \"get_weather\""), std::string::npos) << p;
    EXPECT_NE(p.find("<|im_start|>assistant\n<tool_call>{\"name\": \"get_weather\", \"arguments\": "
                     "{\"city\": \"Oslo\", \"unit\": \"celsius\"}}</tool_call><|im_end|>\n"),
              std::string::npos)
        << p;
    EXPECT_NE(
        p.find("<|im_start|>user\n<tool_response>\n{\"temp\": 3}\n</tool_response><|im_end|>\n"),
        std::string::npos)
        << p;
    EXPECT_TRUE(p.ends_with("<|im_start|>assistant\n")) << p;
    // Without tools the file is still the template.
    EXPECT_EQ(llm->format({{"user", "hi", {}, {}}}),
              "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    // A template that does not parse is named.
    cfg.chat_template = "/nonexistent/t.jinja";
    EXPECT_THROW(make_llm_engine(cfg), llm_error);
}
