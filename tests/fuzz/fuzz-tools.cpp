// Function calling on any text: a client's tools (their JSON Schemas) into GBNF grammars, and a
// model's reply read for tool calls. Promises: a bad schema is refused with a std::exception
// (the servers turn it into a 400), never another throw or a crash; a grammar that is made is
// well formed (every rule it refers to is defined, a root, names llama.cpp's parser takes) and
// bounded in size; reading a reply for calls never throws.
#include "fuzz.h"
#include "llm/json-grammar.h"
#include "llm/tool-calls.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <exception>
#include <set>
#include <string>

using namespace parley;
using json = nlohmann::json;

namespace {

constexpr size_t MAX_GRAMMAR = 16u << 20; // what the caps on lengths and repeats allow

bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
}

// Each line "NAME ::= BODY"; the identifiers in each body (outside literals and character
// classes) are defined; "root" is.
void check_grammar(const std::string &g) {
    FUZZ_CHECK(!g.empty() && g.size() < MAX_GRAMMAR);
    std::set<std::string> defined, used;
    size_t at = 0;
    while (at < g.size()) {
        size_t end = g.find('\n', at);
        FUZZ_CHECK(end != std::string::npos); // every rule ends its line
        std::string line = g.substr(at, end - at);
        at = end + 1;
        size_t sep = line.find(" ::= ");
        FUZZ_CHECK(sep != std::string::npos && sep > 0);
        std::string name = line.substr(0, sep);
        for (char c : name)
            FUZZ_CHECK(name_char(c));
        FUZZ_CHECK(defined.insert(name).second); // no rule twice
        std::string body = line.substr(sep + 5);
        for (size_t i = 0; i < body.size();) {
            char c = body[i];
            if (c == '"' || c == '[') {
                char close = c == '"' ? '"' : ']';
                ++i;
                while (i < body.size() && body[i] != close)
                    i += body[i] == '\\' ? 2 : 1;
                FUZZ_CHECK(i < body.size()); // a literal or class is closed
                ++i;
            } else if (c == '{') {
                while (i < body.size() && body[i] != '}') {
                    FUZZ_CHECK(body[i] == '{' || body[i] == ',' ||
                               std::isdigit(static_cast<unsigned char>(body[i])));
                    ++i;
                }
                FUZZ_CHECK(i < body.size());
                ++i;
            } else if (name_char(c)) {
                size_t b = i;
                while (i < body.size() && name_char(body[i]))
                    ++i;
                used.insert(body.substr(b, i - b));
            } else {
                FUZZ_CHECK(c == ' ' || c == '|' || c == '(' || c == ')' || c == '?' || c == '*' ||
                           c == '+');
                ++i;
            }
        }
    }
    FUZZ_CHECK(defined.count("root"));
    for (const std::string &u : used)
        FUZZ_CHECK(defined.count(u));
}

// The schema's grammar, or a refusal as a std::exception.
void schema(const json &s) {
    try {
        check_grammar(json_schema_grammar(s));
    } catch (const std::exception &) {
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::string text(reinterpret_cast<const char *>(data), size);
    json j = json::parse(text, nullptr, false);
    std::vector<tool_spec> tools;
    if (!j.is_discarded()) {
        schema(j);
        // As the "tools" of a request: a list of functions, or one.
        std::string error;
        tools = parse_tools(j.is_array() ? j : json::array({j}), &error);
        FUZZ_CHECK(tools.empty() || error.empty());
        if (!tools.empty()) {
            try {
                check_grammar(tool_call_grammar(tools));
                check_grammar(tool_call_grammar(tools, tools.back().name));
            } catch (const std::exception &) {
                FUZZ_CHECK(false); // parse_tools accepted the schemas: their grammar is made
            }
            (void)tool_instructions(tools);
        }
    }
    // The same text as a model's reply.
    parsed_reply r = parse_tool_calls(text, tools);
    for (const tool_call &c : r.calls)
        (void)tool_call_text(c);
    (void)may_be_tool_call(text);
    return 0;
}
