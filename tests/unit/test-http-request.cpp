// Reading an HTTP request (net/http-request.h): limits, statuses, the target's parts.
#include "core/base64.h"
#include "net/http-request.h"
#include "net/multipart.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

using namespace parley;
namespace http = boost::beast::http;

namespace {

// Feeds `bytes` to a parser with the server's limits; the error it stops with (none: a request).
boost::beast::error_code parse(const std::string &bytes, http_request *out = nullptr) {
    http_request_parser p;
    limit_request_parser(p);
    p.eager(true);
    boost::beast::error_code ec;
    size_t used = 0;
    while (used < bytes.size() && !p.is_done()) {
        size_t n = p.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
        if (ec == http::error::need_more) ec = {};
        if (ec || n == 0) break;
        used += n;
    }
    if (!ec && !p.is_done() && p.got_some()) p.put_eof(ec);
    if (!ec && out) *out = p.release();
    return ec;
}

} // namespace

TEST(http_request, query_params_are_percent_decoded) {
    EXPECT_EQ(query_param("/ws?session_id=abc&token=d%2Be+f", "token"), "d+e f");
    EXPECT_EQ(query_param("/ws?session_id=abc&token=x", "session_id"), "abc");
    EXPECT_EQ(query_param("/ws?a%5Fb=1", "a_b"), "1");
    EXPECT_EQ(query_param("/ws?t=1&t=2", "t"), "1");
    EXPECT_EQ(query_param("/ws?t=1#t=2", "t"), "1");
    EXPECT_EQ(query_param("/ws?x=1#&t=2", "t"), "");
}

TEST(http_request, absent_or_badly_encoded_params_are_empty) {
    EXPECT_EQ(query_param("/ws", "token"), "");
    EXPECT_EQ(query_param("/ws?", "token"), "");
    EXPECT_EQ(query_param("/ws?token", "token"), "");
    EXPECT_EQ(query_param("/ws?token=%4", "token"), "");
    EXPECT_EQ(query_param("/ws?token=%zz", "token"), "");
    EXPECT_EQ(query_param("/ws?tok=1&&token=2", "token"), "2");
    EXPECT_EQ(percent_decode("%"), std::nullopt);
    EXPECT_EQ(percent_decode("a%0"), std::nullopt);
    EXPECT_EQ(percent_decode("%00"), std::string(1, '\0'));
}

TEST(http_request, path_drops_the_query) {
    EXPECT_EQ(path_of("/sessions/abc?token=1"), "/sessions/abc");
    EXPECT_EQ(path_of("/"), "/");
    EXPECT_EQ(path_of(""), "");
}

TEST(http_request, malformed_requests_get_a_status) {
    http_request req;
    EXPECT_FALSE(parse("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &req));
    EXPECT_EQ(req.target(), "/health");

    auto status = [](const std::string &bytes) { return parse_error_status(parse(bytes)); };
    EXPECT_EQ(status("GET /" + std::string(HTTP_HEADER_MAX, 'a') + " HTTP/1.1\r\n\r\n"),
              http::status::request_header_fields_too_large);
    std::string many = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 2000; ++i)
        many += "X-" + std::to_string(i) + ": 1\r\n";
    EXPECT_EQ(status(many + "\r\n"), http::status::request_header_fields_too_large);
    EXPECT_EQ(status("POST / HTTP/1.1\r\nContent-Length: " + std::to_string(HTTP_BODY_MAX + 1) +
                     "\r\n\r\n"),
              http::status::payload_too_large);
    EXPECT_EQ(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n"),
              http::status::payload_too_large);
    EXPECT_EQ(status("NOT HTTP AT ALL\r\n\r\n"), http::status::bad_request);
    EXPECT_EQ(status("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), http::status::bad_request);
    // A client that went away mid-request gets nothing.
    EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: a"), std::nullopt);
}

TEST(multipart, an_upload_splits_into_its_named_parts) {
    std::string type = "multipart/form-data; boundary=----x";
    ASSERT_EQ(multipart_boundary(type), "----x");
    EXPECT_EQ(multipart_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""), "a b");
    EXPECT_EQ(multipart_boundary("application/json"), "");
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'b')), "");
    std::string body = "------x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1"
                       "\r\n------x\r\nContent-Disposition: form-data; name=\"file\"; "
                       "filename=\"a \\\"b\\\".wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\nAB"
                       "\r\n------x--\r\n";
    body[body.find("RIFF") + 6] = '\0';
    std::vector<form_part> parts;
    ASSERT_EQ(parse_multipart(body, "----x", &parts), "");
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].name, "model");
    EXPECT_EQ(parts[0].data, "whisper-1");
    const form_part *file = find_part(parts, "file");
    ASSERT_NE(file, nullptr);
    EXPECT_EQ(file->filename, "a \"b\".wav");
    EXPECT_EQ(file->content_type, "audio/wav");
    EXPECT_EQ(file->data.size(), 8u); // bytes as sent, CR LF and NUL included
    EXPECT_EQ(find_part(parts, "nope"), nullptr);
}

TEST(multipart, malformed_bodies_get_an_error) {
    std::vector<form_part> parts;
    EXPECT_NE(parse_multipart("no boundary here", "x", &parts), "");
    EXPECT_NE(parse_multipart("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunended",
                              "x", &parts),
              "");
    EXPECT_NE(parse_multipart("--x\r\nContent-Type: text/plain\r\n\r\nv\r\n--x--", "x", &parts),
              "");
    EXPECT_NE(
        parse_multipart("--x\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--x--", "x",
                        &parts),
        "");
    std::string many;
    for (size_t i = 0; i <= MULTIPART_MAX_PARTS; ++i)
        many += "--x\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\nv\r\n";
    EXPECT_NE(parse_multipart(many + "--x--", "x", &parts).find("more than 64 parts"),
              std::string::npos);
}

TEST(base64, round_trips_and_refuses_what_is_not_canonical) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    std::string all;
    for (int i = 0; i < 256; ++i)
        all += char(i);
    for (size_t n = 0; n <= all.size(); n += 37)
        EXPECT_EQ(base64_decode(base64_encode(all.substr(0, n))), all.substr(0, n));
    EXPECT_EQ(base64_decode("Zm9vYmFy"), "foobar");
    EXPECT_EQ(base64_decode("Zg=="), "f");
    EXPECT_EQ(base64_decode("Zg="), std::nullopt);  // length
    EXPECT_EQ(base64_decode("Zh=="), std::nullopt); // bits past the end
    EXPECT_EQ(base64_decode("Z==="), std::nullopt); // too much padding
    EXPECT_EQ(base64_decode("Zm9v\n"), std::nullopt);
    EXPECT_EQ(base64_decode("Zm=v"), std::nullopt);
}
