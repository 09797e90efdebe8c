#include "net/access.h"

#include "core/secret.h"
#include "net/http-request.h"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>

namespace parley {

bool is_loopback(std::string_view host) {
    std::string h = ascii_lower(host);
    if (h == "localhost" || h == "::1" || h.ends_with(".localhost")) return true;
    // 127.0.0.0/8, written as a dotted quad.
    if (!h.starts_with("127.")) return false;
    int dots = 0;
    for (char c : h) {
        if (c == '.')
            ++dots;
        else if (!std::isdigit(static_cast<unsigned char>(c)))
            return false;
    }
    return dots == 3;
}

std::string host_name(std::string_view host_header) {
    std::string_view h = trim_ows(host_header);
    if (h.starts_with('[')) { // [v6]:port
        size_t end = h.find(']');
        return ascii_lower(end == std::string_view::npos ? h.substr(1) : h.substr(1, end - 1));
    }
    size_t colon = h.rfind(':');
    if (colon != std::string_view::npos && h.find(':') == colon) h = h.substr(0, colon);
    if (h.ends_with('.')) h.remove_suffix(1); // "localhost." is "localhost"
    return ascii_lower(h);
}

bool host_allowed(std::string_view host_header, bool loopback_bind,
                  const std::vector<std::string> &allowed) {
    if (trim_ows(host_header).empty()) return true;
    std::string name = host_name(host_header);
    for (const std::string &a : allowed)
        if (a == "*" || ascii_lower(a) == name) return true;
    if (is_loopback(name)) return true;
    return !loopback_bind && allowed.empty();
}

bool origin_allowed(std::string_view origin, std::string_view host_header, bool tls,
                    const std::vector<std::string> &allowed) {
    if (origin.empty()) return true;
    for (const std::string &a : allowed)
        if (a == "*" || a == origin) return true;
    std::string own =
        std::string(tls ? "https://" : "http://") + ascii_lower(trim_ows(host_header));
    return ascii_lower(origin) == own;
}

std::string bearer_token(std::string_view authorization) {
    std::string_view a = trim_ows(authorization);
    if (a.size() < 7 || ascii_lower(a.substr(0, 7)) != "bearer ") return {};
    return std::string(trim_ows(a.substr(7)));
}

bool offers_subprotocol(std::string_view offered, std::string_view name) {
    while (!offered.empty()) {
        size_t comma = offered.find(',');
        if (trim_ows(offered.substr(0, comma)) == name) return true;
        if (comma == std::string_view::npos) break;
        offered = offered.substr(comma + 1);
    }
    return false;
}

bool carries_key(std::string_view key, std::string_view authorization, std::string_view query_key,
                 std::string_view subprotocols) {
    if (key.empty()) return false;
    bool found = false;
    // Every candidate is compared, so the time does not say which one matched.
    if (std::string b = bearer_token(authorization); !b.empty()) found |= secrets_equal(b, key);
    if (!query_key.empty()) found |= secrets_equal(query_key, key);
    std::string_view rest = subprotocols;
    while (!rest.empty()) {
        size_t comma = rest.find(',');
        std::string_view p = trim_ows(rest.substr(0, comma));
        for (std::string_view prefix : {"parley-key.", "openai-insecure-api-key."})
            if (p.starts_with(prefix)) found |= secrets_equal(p.substr(prefix.size()), key);
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
    }
    return found;
}

bool valid_ip_address(std::string_view addr) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(std::string(addr), ec);
    return !ec;
}

std::string client_address(const std::string &peer, std::string_view forwarded_for,
                           const std::vector<std::string> &trusted) {
    if (forwarded_for.empty() || trusted.empty()) return peer;
    boost::system::error_code ec;
    auto from = boost::asio::ip::make_address(peer, ec);
    if (ec) return peer;
    if (from.is_v6() && from.to_v6().is_v4_mapped())
        from = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, from.to_v6());
    bool proxy = std::any_of(trusted.begin(), trusted.end(), [&](const std::string &t) {
        boost::system::error_code e;
        auto a = boost::asio::ip::make_address(t, e);
        return !e && a == from;
    });
    if (!proxy) return peer;
    size_t comma = forwarded_for.rfind(',');
    std::string_view last =
        comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1);
    while (!last.empty() && (last.front() == ' ' || last.front() == '\t'))
        last.remove_prefix(1);
    while (!last.empty() && (last.back() == ' ' || last.back() == '\t'))
        last.remove_suffix(1);
    auto client = boost::asio::ip::make_address(std::string(last), ec);
    return ec ? peer : client.to_string();
}

} // namespace parley
