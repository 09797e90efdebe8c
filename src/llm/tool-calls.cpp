#include "llm/tool-calls.h"

#include <algorithm>
#include <set>

namespace parley {

using json = nlohmann::json;

namespace {

constexpr const char *OPEN = "<tool_call>";
constexpr const char *CLOSE = "</tool_call>";

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

bool valid_name(const std::string &n) {
    if (n.empty() || n.size() > 64) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

// {"name": N, "arguments": {...}} naming one of the tools: the call; else nothing.
bool read_call(const std::string &text, const std::vector<tool_spec> &tools, tool_call *out) {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
    std::string name = j["name"];
    if (std::none_of(tools.begin(), tools.end(),
                     [&](const tool_spec &t) { return t.name == name; }))
        return false;
    json args = j.contains("arguments")    ? j["arguments"]
                : j.contains("parameters") ? j["parameters"]
                                           : json::object();
    if (args.is_string()) args = json::parse(args.get<std::string>(), nullptr, false);
    if (!args.is_object()) return false;
    out->name = name;
    out->arguments = args.dump(-1, ' ', false, json::error_handler_t::replace);
    return true;
}

} // namespace

parsed_reply parse_tool_calls(const std::string &text, const std::vector<tool_spec> &tools) {
    parsed_reply r;
    std::string rest;
    size_t pos = 0;
    while (true) {
        size_t open = text.find(OPEN, pos);
        if (open == std::string::npos) {
            rest += text.substr(pos);
            break;
        }
        size_t body = open + std::string(OPEN).size();
        size_t close = text.find(CLOSE, body);
        std::string inside =
            text.substr(body, close == std::string::npos ? std::string::npos : close - body);
        tool_call c;
        if (read_call(trim(inside), tools, &c)) {
            r.calls.push_back(std::move(c));
            rest += text.substr(pos, open - pos);
        } else {
            rest +=
                text.substr(pos, (close == std::string::npos ? text.size()
                                                             : close + std::string(CLOSE).size()) -
                                     pos);
        }
        if (close == std::string::npos) break;
        pos = close + std::string(CLOSE).size();
    }
    if (r.calls.empty()) {
        // A reply that is one bare call.
        tool_call c;
        if (std::string t = trim(text); t.starts_with("{") && read_call(t, tools, &c)) {
            r.calls.push_back(std::move(c));
            rest.clear();
        }
    }
    r.content = trim(rest);
    return r;
}

bool may_be_tool_call(const std::string &text) {
    std::string t = trim(text);
    if (t.empty()) return true;
    if (t.starts_with("{")) return true;
    std::string open = OPEN;
    return open.starts_with(t.substr(0, open.size())) || t.starts_with(open);
}

std::vector<tool_spec> parse_tools(const json &tools, std::string *error) {
    std::vector<tool_spec> out;
    if (!tools.is_array()) {
        *error = "tools must be an array";
        return {};
    }
    std::set<std::string> names;
    for (size_t i = 0; i < tools.size(); i++) {
        const json &t = tools[i];
        std::string where = "tools[" + std::to_string(i) + "]";
        if (!t.is_object() || !t.contains("type") || t["type"] != "function") {
            *error = where + ": only tools of type function are supported";
            return {};
        }
        // Chat completions nest the function; the Realtime API does not.
        const json &f = t.contains("function") ? t["function"] : t;
        if (!f.is_object() || !f.contains("name") || !f["name"].is_string() ||
            !valid_name(f["name"].get<std::string>())) {
            *error = where + ": a name of 1-64 letters, digits, _ or - is required";
            return {};
        }
        tool_spec s;
        s.name = f["name"];
        if (!names.insert(s.name).second) {
            *error = where + ": the name " + s.name + " is given twice";
            return {};
        }
        if (f.contains("description")) {
            if (!f["description"].is_string()) {
                *error = where + ": description must be a string";
                return {};
            }
            s.description = f["description"].get<std::string>().substr(0, 4096);
        }
        if (f.contains("parameters") && !f["parameters"].is_null()) {
            if (!f["parameters"].is_object()) {
                *error = where + ": parameters must be a JSON Schema object";
                return {};
            }
            s.parameters = f["parameters"];
        }
        try {
            (void)json_schema_grammar(s.parameters); // a schema the grammar can follow
        } catch (const std::exception &e) {
            *error = where + ": parameters: " + e.what();
            return {};
        }
        out.push_back(std::move(s));
    }
    if (out.size() > 128) {
        *error = "at most 128 tools";
        return {};
    }
    try {
        if (!out.empty()) (void)tool_call_grammar(out); // all of them in one grammar
    } catch (const std::exception &e) {
        *error = std::string("tools: ") + e.what();
        return {};
    }
    return out;
}

std::string tool_instructions(const std::vector<tool_spec> &tools) {
    std::string s = "\n\nYou can call these functions:\n";
    for (const tool_spec &t : tools) {
        json j = {{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}};
        s += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    s += "To call one, answer with <tool_call>{\"name\": NAME, \"arguments\": {...}}</tool_call> "
         "and nothing else; the result comes back in a message from the tool.";
    return s;
}

std::string tool_call_text(const tool_call &c) {
    json args = json::parse(c.arguments, nullptr, false);
    json j = {{"name", c.name}, {"arguments", args.is_discarded() ? json::object() : args}};
    return std::string(OPEN) + j.dump(-1, ' ', false, json::error_handler_t::replace) + CLOSE;
}

std::vector<chat_message> fold_tools(const std::vector<chat_message> &messages,
                                     const std::vector<tool_spec> &tools) {
    std::vector<chat_message> out;
    std::string offer = tools.empty() ? std::string() : tool_instructions(tools);
    for (const chat_message &m : messages) {
        chat_message f{m.role, m.content, {}, {}};
        if (m.role == "system" && !offer.empty()) {
            f.content += offer;
            offer.clear();
        } else if (m.role == "assistant" && !m.tool_calls.empty()) {
            for (const tool_call &c : m.tool_calls)
                f.content += (f.content.empty() ? "" : "\n") + tool_call_text(c);
        } else if (m.role == "tool") {
            f.role = "user";
            f.content = "<tool_response>\n" + m.content + "\n</tool_response>";
        }
        out.push_back(std::move(f));
    }
    if (!offer.empty()) out.insert(out.begin(), chat_message{"system", offer.substr(2), {}, {}});
    return out;
}

} // namespace parley
