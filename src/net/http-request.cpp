#include "net/http-request.h"

namespace parley {

namespace http = boost::beast::http;

void limit_request_parser(http_request_parser &p, size_t body_max) {
    p.header_limit(HTTP_HEADER_MAX);
    p.body_limit(body_max);
}

std::optional<http::status> parse_error_status(boost::beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
        return http::status::request_header_fields_too_large;
    if (ec == http::error::body_limit) return http::status::payload_too_large;
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec.category() != boost::beast::error_code(http::error::bad_method).category())
        return std::nullopt;
    return http::status::bad_request;
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
}

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] != '%') {
            out += s[i];
        } else {
            if (i + 2 >= s.size()) return std::nullopt;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += char(hi * 16 + lo);
            i += 2;
        }
    }
    return out;
}

std::string query_param(std::string_view target, std::string_view name) {
    size_t q = target.find('?');
    if (q == std::string_view::npos) return {};
    std::string_view qs = target.substr(q + 1);
    qs = qs.substr(0, qs.find('#'));
    while (!qs.empty()) {
        size_t amp = qs.find('&');
        std::string_view kv = qs.substr(0, amp);
        size_t eq = kv.find('=');
        auto key = percent_decode(kv.substr(0, eq));
        if (key && *key == name) {
            if (eq == std::string_view::npos) return {};
            return percent_decode(kv.substr(eq + 1)).value_or(std::string());
        }
        if (amp == std::string_view::npos) break;
        qs = qs.substr(amp + 1);
    }
    return {};
}

} // namespace parley
