// Reading an HTTP request: the parser's limits, the status a malformed request gets, and the
// target's path and query parameters. Pure functions of the bytes (unit tested and fuzzed);
// server.cpp uses them for every request.
#pragma once

#include <boost/beast/http.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace parley {

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

constexpr size_t HTTP_HEADER_MAX = 8 * 1024; // request line and headers together
constexpr size_t HTTP_BODY_MAX = 64 * 1024;  // a request body, chunked or not

// Sets the limits above on a parser for the next request (`body_max` for the body: a server
// with routes that take more sets their largest here, and each route's once its headers are in).
void limit_request_parser(http_request_parser &p, size_t body_max = HTTP_BODY_MAX);

// What a request that could not be read gets before the connection closes: 431 for headers (or
// a request line) over the limit, 413 for a body over its limit (a chunk size included), 400
// for anything else malformed; nothing when the client went away or timed out.
std::optional<boost::beast::http::status> parse_error_status(boost::beast::error_code ec);

// The target's path, without its query.
std::string_view path_of(std::string_view target);

// The query parameter `name` of a target ("/ws?session_id=..&token=.."), percent-decoded ('+'
// is a space); empty when absent or badly encoded. The first of repeated names wins.
std::string query_param(std::string_view target, std::string_view name);

// Header values: ASCII lowercase (names, schemes, tokens compare case-insensitively), and
// without the optional white space (spaces, tabs) around them.
std::string ascii_lower(std::string_view s);
std::string_view trim_ows(std::string_view s);

// Percent-decoding of one query component; nullopt for a bad escape ("%4", "%zz").
std::optional<std::string> percent_decode(std::string_view s);

} // namespace parley
