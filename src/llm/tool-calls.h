// Function calling: the tools a model is offered, the calls it writes, and what it is told.
//
// Models write calls in the form their chat template teaches; Parley reads the form most
// open models use (Hermes, Qwen, and Parley's own template for models without one):
//
//   <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
//
// and a reply that is nothing but one such JSON object. Pure functions; any thread.
#pragma once

#include "llm/json-grammar.h"
#include "llm/llm.h"
#include "llm/tools.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace parley {

struct parsed_reply {
    std::string content; // the text outside the calls (trimmed)
    std::vector<tool_call> calls;
};

// The calls in a model's reply to `tools` (calls to other names, or with arguments that are
// not a JSON object, stay in the content as text).
parsed_reply parse_tool_calls(const std::string &text, const std::vector<tool_spec> &tools);

// True while `text` (a reply so far) may still be the beginning of a call: what a stream
// holds back until it knows.
bool may_be_tool_call(const std::string &text);

// Reads OpenAI's `tools` array ([{"type":"function","function":{"name","description",
// "parameters"}}], or the Realtime API's flat [{"type":"function","name",...}]). Empty with
// *error set when it is malformed (names: 1-64 of [A-Za-z0-9_-], unique).
std::vector<tool_spec> parse_tools(const nlohmann::json &tools, std::string *error);

// The instructions that teach a model without a template of its own to call the tools:
// appended to the system prompt.
std::string tool_instructions(const std::vector<tool_spec> &tools);

// A call as the model writes it: <tool_call>{"name": ..., "arguments": ...}</tool_call>.
std::string tool_call_text(const tool_call &c);

} // namespace parley
