// Who may talk to the server: the API key, the Host a request names and the page Origin a
// browser sends. Pure functions of the request's header values (unit tested); server.cpp asks
// them for every request.
//
// DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 reaches a
// loopback server with "Host: evil.example:PORT" and its own origin. So on a loopback bind the
// Host must be a loopback name or address (or one allowed by --allow-host), and an Origin must
// be the page's own ("http://" + that Host, scheme included) or one allowed by --allow-origin.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace parley {

// A listen address that only this machine reaches: "localhost", 127.0.0.0/8, ::1.
bool is_loopback(std::string_view host);

// The Host header's name, without the port (an IPv6 address without its brackets), lowercase.
std::string host_name(std::string_view host_header);

// May a request naming this Host be served? Empty (an HTTP/1.0 client, not a browser): yes.
// Loopback names and `allowed` ("--allow-host", "*": any) always; nothing else on a loopback
// bind, or when names are allowed; any name on another bind (which needs the API key) that
// allows none.
bool host_allowed(std::string_view host_header, bool loopback_bind,
                  const std::vector<std::string> &allowed);

// May a page from `origin` open a WebSocket? Empty (not a browser): yes; "*" or an exact match
// in `allowed`; else only the page's own origin, http://HOST (https://HOST with `tls`).
bool origin_allowed(std::string_view origin, std::string_view host_header, bool tls,
                    const std::vector<std::string> &allowed);

// The token of "Authorization: Bearer TOKEN" (empty when there is none).
std::string bearer_token(std::string_view authorization);

// Is `name` one of the subprotocols in a Sec-WebSocket-Protocol list?
bool offers_subprotocol(std::string_view offered, std::string_view name);

// Does the request carry `key`: as a bearer token, ?api_key=, or a WebSocket subprotocol
// parley-key.KEY or openai-insecure-api-key.KEY (browsers cannot set headers on a WebSocket)?
// Constant time in the key (secrets_equal). An empty key matches nothing.
bool carries_key(std::string_view key, std::string_view authorization, std::string_view query_key,
                 std::string_view subprotocols);

// Is `addr` an IPv4 or IPv6 address (as --trusted-proxy takes)?
bool valid_ip_address(std::string_view addr);

// The client's address for limits and logs. A connection from a load balancer in `trusted`
// (--trusted-proxy) names the client in X-Forwarded-For: its last entry is the address the
// proxy itself saw (earlier entries come from the client and prove nothing). Anything else, or
// an entry that is no address, leaves the connection's peer.
std::string client_address(const std::string &peer, std::string_view forwarded_for,
                           const std::vector<std::string> &trusted);

} // namespace parley
