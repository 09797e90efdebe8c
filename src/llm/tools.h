// The tools a language model may call, and a call it made (see tool-calls.h).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace parley {

struct tool_spec {
    std::string name;
    std::string description;
    nlohmann::json parameters = nlohmann::json::object(); // a JSON Schema (an object)
};

struct tool_call {
    std::string id;        // given by the server (call_...)
    std::string name;      // one of the tools offered
    std::string arguments; // a JSON object, as text
};

} // namespace parley
