// An HTTP request's bytes (net/http-request.h, net/access.h) as the server reads them, with its
// limits. Promises: a request within the limits, or a status for a malformed one; the target's
// parameters and the access checks take any header values.
#include "fuzz.h"
#include "net/access.h"
#include "net/http-request.h"

#include <string>

using namespace parley;
namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    http_request_parser p;
    limit_request_parser(p);
    p.eager(true);
    boost::beast::error_code ec;
    size_t used = 0;
    while (used < size && !p.is_done()) {
        size_t n = p.put(boost::asio::buffer(data + used, size - used), ec);
        if (ec == http::error::need_more) ec = {};
        if (ec || n == 0) break;
        used += n;
    }
    if (!ec && !p.is_done() && p.got_some()) p.put_eof(ec); // (nothing read: no message at all)
    if (ec) {
        (void)parse_error_status(ec);
        return 0;
    }
    if (!p.is_done()) return 0;
    http_request req = p.release();
    FUZZ_CHECK(req.body().size() <= HTTP_BODY_MAX);
    std::string_view target = req.target();
    FUZZ_CHECK(path_of(target).size() <= target.size());
    for (const char *name : {"session_id", "token", "api_key"})
        (void)query_param(target, name);
    std::string_view host = req[http::field::host], origin = req[http::field::origin];
    std::string_view auth = req[http::field::authorization];
    (void)host_allowed(host, true, {});
    (void)host_allowed(host, false, {"example.com"});
    (void)origin_allowed(origin, host, false, {});
    (void)bearer_token(auth);
    (void)carries_key("k", auth, query_param(target, "api_key"),
                      req[http::field::sec_websocket_protocol]);
    return 0;
}
