#include "core/option-table.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>

namespace parley {

namespace {

bool to_int(const std::string &s, int &out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool to_float(const std::string &s, float &out) {
    try {
        size_t n = 0;
        out = std::stof(s, &n);
        return n == s.size() && std::isfinite(out);
    } catch (...) {
        return false;
    }
}

std::string shown(float x) {
    std::ostringstream o;
    o << x;
    return o.str();
}

} // namespace

std::string option_env_name(const std::string &name) {
    std::string env = "PARLEY_";
    for (char c : name)
        env += c == '-' ? '_' : char(std::toupper(static_cast<unsigned char>(c)));
    return env;
}

std::string option_choices_text(const std::vector<std::string> &names) {
    std::string out;
    for (size_t i = 0; i < names.size(); i++)
        out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return out;
}

void option_table::add(option_spec spec) {
    if (spec.group.empty()) spec.group = group_;
    options_.push_back(std::move(spec));
}

const option_spec *option_table::find(const std::string &name) const {
    for (const option_spec &s : options_)
        if (s.name == name) return &s;
    return nullptr;
}

namespace {

// A number option: parsed by `parse`, checked against lo..hi (or `limits`' words).
template <class T, class Parse, class Show>
option_spec number_option(const std::string &name, T &dest, T lo, T hi, const std::string &value,
                          const std::string &help, const std::string &limits, const char *kind,
                          Parse parse, Show show) {
    option_spec s;
    s.name = name;
    s.value = value;
    s.help = help;
    s.fallback = show(dest);
    s.set = [name, kind, parse, &dest](const std::string &v) -> std::string {
        T x{};
        if (!parse(v, x)) return "--" + name + " needs " + kind + ", got '" + v + "'";
        dest = x;
        return {};
    };
    std::string why = limits.empty() ? show(lo) + ".." + show(hi) : limits;
    s.check = [name, lo, hi, why, &dest]() -> std::string {
        return dest < lo || dest > hi ? name + " must be " + why : "";
    };
    return s;
}

} // namespace

void option_table::add_int(const std::string &name, int &dest, int lo, int hi,
                           const std::string &value, const std::string &help,
                           const std::string &limits) {
    add(number_option(name, dest, lo, hi, value, help, limits, "an integer", to_int,
                      [](int x) { return std::to_string(x); }));
}

void option_table::add_float(const std::string &name, float &dest, float lo, float hi,
                             const std::string &value, const std::string &help,
                             const std::string &limits) {
    add(number_option(name, dest, lo, hi, value, help, limits, "a number", to_float, shown));
}

void option_table::add_string(const std::string &name, std::string &dest,
                              const std::string &value, const std::string &help) {
    add({name, {}, value, help, {}, dest, false,
         [&dest](const std::string &v) -> std::string {
             dest = v;
             return {};
         },
         {}});
}

void option_table::add_list(const std::string &name, std::vector<std::string> &dest,
                            const std::string &value, const std::string &help) {
    add({name, {}, value, help, {}, {}, true,
         [&dest](const std::string &v) -> std::string {
             dest.push_back(v);
             return {};
         },
         {}});
}

void option_table::add_choice(const std::string &name, std::string &dest,
                              const std::vector<std::string> &choices, const std::string &help) {
    std::vector<std::pair<std::string, std::string>> names;
    for (const std::string &c : choices)
        names.emplace_back(c, c);
    add_enum<std::string>(name, dest, names, help);
}

void option_table::add_switch(const std::string &name, bool &dest, const std::string &help,
                              bool value_when_on) {
    option_spec s;
    s.name = name;
    s.help = help;
    s.set = [name, value_when_on, &dest](const std::string &v) -> std::string {
        if (v == "true" || v == "1" || v == "on" || v == "yes")
            dest = value_when_on;
        else if (v == "false" || v == "0" || v == "off" || v == "no")
            dest = !value_when_on;
        else
            return "--" + name + " is a switch (true or false), got '" + v + "'";
        return {};
    };
    add(std::move(s));
}

} // namespace parley
