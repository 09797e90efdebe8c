// The table of settings: every option is declared once, by the part of Parley it belongs to
// (each engine family registers its own), with its name, value, default, help and check.
//
// From one declaration come the command-line flag (--name VALUE), the key of a config file
// (the name with underscores or dashes), the environment variable (PARLEY_NAME, upper case,
// underscores) and its lines in --help. The command line's parser (src/app/config.cpp, CLI11)
// reads the table; nothing here knows CLI11.
//
//   option_table t;
//   t.group("Server");
//   t.add_int("port", cfg.port, 0, 65535, "N", "listen port");
//
// A setter parses a value ("--port needs an integer, got 'x'"); a check validates the current
// value ("port must be 0..65535"): app_config::validate() runs every check, so a config built in
// code is held to the same limits as one read from flags. Both return an error line or empty.
// Single-threaded: the table is built and applied before anything starts.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace parley {

struct option_spec {
    std::string name;     // the flag without dashes: "port"
    std::string aliases;  // more flag names, comma-separated: "-o,--wav"
    std::string value;    // the value's placeholder in help ("N", "FILE"); empty: a switch
    std::string help;     // one or more sentences
    std::string group;    // the heading it is listed under in --help
    std::string fallback; // the default, as shown in --help (empty: none shown)
    bool repeatable = false;
    std::function<std::string(const std::string &value)> set; // switches get "true"/"false"
    std::function<std::string()> check;                       // null: any value it set is fine
};

class option_table {
  public:
    // Options added after this are listed under `name`.
    void group(std::string name) { group_ = std::move(name); }

    // `limits`: the check's message when the value is outside lo..hi (default "lo..hi").
    void add_int(const std::string &name, int &dest, int lo, int hi, const std::string &value,
                 const std::string &help, const std::string &limits = {});
    void add_float(const std::string &name, float &dest, float lo, float hi,
                   const std::string &value, const std::string &help,
                   const std::string &limits = {});
    void add_string(const std::string &name, std::string &dest, const std::string &value,
                    const std::string &help);
    // Repeatable: each occurrence adds a value.
    void add_list(const std::string &name, std::vector<std::string> &dest,
                  const std::string &value, const std::string &help);
    // One of `choices` (shown as the value).
    void add_choice(const std::string &name, std::string &dest,
                    const std::vector<std::string> &choices, const std::string &help);
    // An enumeration: the names map to values of E.
    template <class E>
    void add_enum(const std::string &name, E &dest,
                  const std::vector<std::pair<std::string, E>> &names, const std::string &help);
    void add_switch(const std::string &name, bool &dest, const std::string &help,
                    bool value_when_on = true);
    // Anything else: the setter parses and applies the value itself.
    void add(option_spec spec);

    // The option added last, to adjust (an alias, a check of its own).
    option_spec &last() { return options_.back(); }
    const std::vector<option_spec> &options() const { return options_; }
    const option_spec *find(const std::string &name) const;

  private:
    std::string group_;
    std::vector<option_spec> options_;
};

std::string option_env_name(const std::string &name); // "asr-model" -> "PARLEY_ASR_MODEL"
std::string option_choices_text(const std::vector<std::string> &names); // "a, b or c"

template <class E>
void option_table::add_enum(const std::string &name, E &dest,
                            const std::vector<std::pair<std::string, E>> &names,
                            const std::string &help) {
    std::string value, fallback;
    std::vector<std::string> all;
    for (const auto &[n, e] : names) {
        value += (value.empty() ? "" : "|") + n;
        all.push_back(n);
        if (e == dest) fallback = n;
    }
    std::string choices = option_choices_text(all);
    option_spec s;
    s.name = name;
    s.value = value;
    s.help = help;
    s.fallback = fallback;
    s.set = [name, choices, names, &dest](const std::string &v) -> std::string {
        for (const auto &[n, e] : names)
            if (n == v) {
                dest = e;
                return {};
            }
        return "--" + name + " must be " + choices + ", got '" + v + "'";
    };
    s.check = [name, choices, names, &dest]() -> std::string {
        for (const auto &[n, e] : names)
            if (e == dest) return {};
        return name + " must be " + choices;
    };
    add(std::move(s));
}

} // namespace parley
