#include "llm/json-grammar.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace parley {

using json = nlohmann::json;

namespace {

constexpr int MAX_DEPTH = 32; // nesting of schemas (not of $refs, which become rules)
// llama.cpp's grammar parser writes a bounded repeat x{m,n} out as n rules: the bounds of all
// the schemas of one grammar together stay under this.
constexpr int64_t MAX_REPEATS = 20000;

// The JSON value rules every grammar may use (added when first used).
const std::map<std::string, std::string> &primitives() {
    static const std::map<std::string, std::string> p = {
        {"ws", "[ ]?"},
        {"char", R"([^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))"},
        {"string", R"("\"" char* "\"")"},
        {"number", R"("-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?)"},
        {"integer", R"("-"? ("0" | [1-9] [0-9]{0,15}))"},
        {"boolean", R"("true" | "false")"},
        {"null", R"("null")"},
        {"value", "object | array | string | number | boolean | null"},
        {"object",
         R"("{" ws (string ws ":" ws value (ws "," ws string ws ":" ws value)*)? ws "}")"},
        {"array", R"("[" ws (value (ws "," ws value)*)? ws "]")"},
    };
    return p;
}

// What each primitive rule refers to.
const std::map<std::string, std::vector<std::string>> &primitive_uses() {
    static const std::map<std::string, std::vector<std::string>> u = {
        {"string", {"char"}},
        {"value", {"object", "array", "string", "number", "boolean", "null"}},
        {"object", {"ws", "string", "value"}},
        {"array", {"ws", "value"}},
    };
    return u;
}

class builder {
  public:
    explicit builder(const json &root, std::string scope = {})
        : root_(&root), scope_(std::move(scope)) {}
    // The schema that $refs point into (each tool's parameters are their own document).
    void set_root(const json &root, std::string scope) {
        root_ = &root;
        scope_ = std::move(scope);
    }

    // The rule (a name) whose sentences are what `schema` accepts.
    std::string rule_for(const json &schema, const std::string &hint, int depth) {
        if (depth > MAX_DEPTH) throw std::invalid_argument("the schema is nested too deeply");
        if (schema.is_boolean()) {
            if (!schema.get<bool>())
                throw std::invalid_argument("a schema of false accepts nothing");
            return use("value");
        }
        if (!schema.is_object()) throw std::invalid_argument("a schema must be an object");
        if (schema.contains("$ref")) return ref(schema["$ref"]);
        if (schema.contains("const")) return add(hint, gbnf_literal(schema["const"].dump()));
        if (schema.contains("enum") && schema["enum"].is_array() && !schema["enum"].empty()) {
            std::string body;
            for (const json &v : schema["enum"])
                body += (body.empty() ? "" : " | ") + gbnf_literal(v.dump());
            return add(hint, body);
        }
        for (const char *key : {"anyOf", "oneOf"})
            if (schema.contains(key) && schema[key].is_array() && !schema[key].empty()) {
                std::string body;
                int i = 0;
                for (const json &s : schema[key])
                    body += (body.empty() ? "" : " | ") +
                            rule_for(s, hint + "-" + std::to_string(i++), depth + 1);
                return add(hint, body);
            }
        if (schema.contains("type") && schema["type"].is_array()) {
            std::string body;
            for (const json &t : schema["type"]) {
                json one = schema;
                one["type"] = t;
                body += (body.empty() ? "" : " | ") +
                        rule_for(one, hint + "-" + t.get<std::string>(), depth + 1);
            }
            if (body.empty()) throw std::invalid_argument("an empty list of types");
            return add(hint, body);
        }
        std::string type = schema.contains("type") && schema["type"].is_string()
                               ? schema["type"].get<std::string>()
                               : "";
        if (type.empty() && schema.contains("properties")) type = "object";
        if (type.empty() && schema.contains("items")) type = "array";
        if (type == "object") return object(schema, hint, depth);
        if (type == "array") return array(schema, hint, depth);
        if (type == "string") return string(schema, hint);
        if (type == "number" || type == "integer" || type == "boolean" || type == "null")
            return use(type);
        if (type.empty()) return use("value");
        throw std::invalid_argument("unknown type '" + type.substr(0, 32) + "'");
    }

    std::string add(const std::string &hint, const std::string &body) {
        std::string name = hint;
        for (int i = 2; rules_.count(name); ++i)
            name = hint + std::to_string(i);
        rules_[name] = body;
        order_.push_back(name);
        return name;
    }

    std::string use(const std::string &primitive) {
        if (!rules_.count(primitive)) {
            rules_[primitive] = primitives().at(primitive);
            order_.push_back(primitive);
            auto u = primitive_uses().find(primitive);
            if (u != primitive_uses().end())
                for (const std::string &p : u->second)
                    use(p);
        }
        return primitive;
    }

    std::string render(const std::string &root_body) const {
        std::string out = "root ::= " + root_body + "\n";
        for (const std::string &name : order_)
            out += name + " ::= " + rules_.at(name) + "\n";
        return out;
    }

  private:
    static std::string key_value(const std::string &key, const std::string &rule) {
        return gbnf_literal(json(key).dump()) + " ws \":\" ws " + rule;
    }

    std::string object(const json &schema, const std::string &hint, int depth) {
        const json props = schema.contains("properties") && schema["properties"].is_object()
                               ? schema["properties"]
                               : json::object();
        if (props.empty()) return use("object");
        std::vector<std::string> required;
        if (schema.contains("required") && schema["required"].is_array())
            for (const json &r : schema["required"])
                if (r.is_string() && props.contains(r.get<std::string>()))
                    required.push_back(r.get<std::string>());
        std::vector<std::string> req_kv, opt_kv;
        use("ws");
        for (auto &[key, sub] : props.items()) {
            std::string rule = rule_for(sub, hint + "-" + safe(key), depth + 1);
            bool is_req = std::find(required.begin(), required.end(), key) != required.end();
            (is_req ? req_kv : opt_kv).push_back(key_value(key, rule));
        }
        std::string body = "\"{\" ws ";
        if (!req_kv.empty()) {
            for (size_t i = 0; i < req_kv.size(); i++)
                body += (i ? " ws \",\" ws " : "") + req_kv[i];
            for (const std::string &kv : opt_kv)
                body += " (ws \",\" ws " + kv + ")?";
        } else {
            // Any subset of the optional keys, in order: chain_i is key i and maybe the
            // chain after it, or the chain after it.
            std::string next;
            for (size_t i = opt_kv.size(); i-- > 0;) {
                std::string b =
                    next.empty() ? opt_kv[i] : opt_kv[i] + " (ws \",\" ws " + next + ")? | " + next;
                next = add(hint + "-from" + std::to_string(i), b);
            }
            body += "(" + next + ")?";
        }
        return add(hint, body + " ws \"}\"");
    }

    std::string array(const json &schema, const std::string &hint, int depth) {
        std::string item = schema.contains("items")
                               ? rule_for(schema["items"], hint + "-item", depth + 1)
                               : use("value");
        use("ws");
        int64_t lo = bound(schema, "minItems", 0), hi = bound(schema, "maxItems", -1);
        lo = std::max<int64_t>(0, std::min<int64_t>(lo, 1000));
        if (hi >= 0 && hi < lo) throw std::invalid_argument("maxItems is below minItems");
        spend(hi < 0 ? lo : std::min<int64_t>(hi, 1000));
        if (hi == 0) return add(hint, "\"[\" ws \"]\"");
        std::string more = "(ws \",\" ws " + item + ")";
        std::string rep = "{" + std::to_string(std::max<int64_t>(0, lo - 1)) + "," +
                          (hi < 0 ? "" : std::to_string(std::min<int64_t>(hi, 1000) - 1)) + "}";
        std::string list = item + " " + more + rep;
        return add(hint, "\"[\" ws " + (lo == 0 ? "(" + list + ")?" : list) + " ws \"]\"");
    }

    std::string string(const json &schema, const std::string &hint) {
        if (!schema.contains("minLength") && !schema.contains("maxLength")) return use("string");
        use("char");
        int64_t lo = std::max<int64_t>(0, bound(schema, "minLength", 0));
        int64_t hi = bound(schema, "maxLength", -1);
        if (hi >= 0 && hi < lo) throw std::invalid_argument("maxLength is below minLength");
        lo = std::min<int64_t>(lo, 10000);
        spend(hi < 0 ? lo : std::min<int64_t>(hi, 10000));
        std::string rep = "{" + std::to_string(lo) + "," +
                          (hi < 0 ? "" : std::to_string(std::min<int64_t>(hi, 10000))) + "}";
        return add(hint, "\"\\\"\" char" + rep + " \"\\\"\"");
    }

    std::string ref(const json &r) {
        if (!r.is_string()) throw std::invalid_argument("$ref must be a string");
        std::string path = r;
        auto known = refs_.find(scope_ + path);
        if (known != refs_.end()) return known->second;
        for (const char *prefix : {"#/$defs/", "#/definitions/"}) {
            std::string p = prefix;
            if (!path.starts_with(p)) continue;
            std::string name = path.substr(p.size());
            const char *section = p == "#/$defs/" ? "$defs" : "definitions";
            if (!root_->contains(section) || !(*root_)[section].contains(name)) break;
            // The rule's name first, so that a schema that refers to itself ends there.
            std::string rule = add(scope_ + "def-" + safe(name), "");
            refs_[scope_ + path] = rule;
            std::string body = rule_for((*root_)[section][name], rule + "-body", 0);
            rules_[rule] = body;
            return rule;
        }
        throw std::invalid_argument("cannot follow $ref '" + path.substr(0, 64) + "'");
    }

    // A length or count bound: a number (a fraction rounded down), kept within +-1e9.
    static int64_t bound(const json &schema, const char *key, int64_t absent) {
        if (!schema.contains(key)) return absent;
        const json &v = schema[key];
        if (!v.is_number()) throw std::invalid_argument(std::string(key) + " must be a number");
        double d = v.get<double>();
        if (std::isnan(d)) throw std::invalid_argument(std::string(key) + " must be a number");
        return int64_t(std::clamp(std::floor(d), -1e9, 1e9));
    }

    void spend(int64_t repeats) {
        repeats_ += repeats;
        if (repeats_ > MAX_REPEATS)
            throw std::invalid_argument("the length and item bounds (maxLength, maxItems, ...) "
                                        "add up to more than " +
                                        std::to_string(MAX_REPEATS) + " repeats");
    }

    // A rule name from any text: letters, digits and dashes.
    static std::string safe(const std::string &s) {
        std::string out;
        for (char c : s.substr(0, 32))
            out += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
        return out.empty() ? "x" : out;
    }

    const json *root_;
    std::string scope_; // $ref paths are the root's: kept apart by it
    std::map<std::string, std::string> rules_;
    std::vector<std::string> order_;
    std::map<std::string, std::string> refs_;
    int64_t repeats_ = 0;
};

} // namespace

std::string gbnf_literal(const std::string &text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20 || c == 0x7F) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02X", c);
                out += buf;
            } else {
                out += char(c);
            }
        }
    }
    return out + "\"";
}

std::string json_schema_grammar(const json &schema) {
    builder b(schema);
    std::string rule = b.rule_for(schema, "schema", 0);
    return b.render(rule);
}

std::string tool_call_grammar(const std::vector<tool_spec> &tools, const std::string &only) {
    const json none = json::object();
    builder b(none);
    std::string calls;
    for (size_t i = 0; i < tools.size(); i++) {
        if (!only.empty() && tools[i].name != only) continue;
        std::string scope = "t" + std::to_string(i) + "-";
        b.set_root(tools[i].parameters, scope);
        std::string args = b.rule_for(tools[i].parameters, scope + "args", 0);
        b.use("ws");
        std::string call = b.add(
            scope + "call",
            "\"{\" ws \"\\\"name\\\"\" ws \":\" ws " + gbnf_literal(json(tools[i].name).dump()) +
                " ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws " + args + " ws \"}\"");
        calls += (calls.empty() ? "" : " | ") + call;
    }
    if (calls.empty())
        throw std::invalid_argument(only.empty() ? "no tools"
                                                 : "no tool named '" + only.substr(0, 64) + "'");
    return b.render("\"<tool_call>\" ws (" + calls + ") ws \"</tool_call>\"");
}

} // namespace parley
