// Blocking HTTP requests (libcurl) for the remote engines' calls that are not streamed: health
// checks, a transcription, a phrase of speech. Any thread; each call makes its own handle.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace parley {

struct http_reply {
    long status = 0;          // 0: no HTTP answer (error says why)
    std::string body;         // at most max_body bytes
    std::string content_type; // lower case
    std::string error;
};

// GET (empty content_type) or POST of `body`. `bearer`: an Authorization token, if any.
http_reply http_call(const std::string &url, const std::string &content_type,
                     const std::string &body, const std::string &bearer, long timeout_ms,
                     size_t max_body = 64u << 20);

// The base of an OpenAI-compatible server's URL (http:// or https://, without a trailing "/" or
// "/v1"), or "" when `url` is not an http:// or https:// address.
std::string api_base(std::string url);

// The "message" of an OpenAI-shaped error body, else the body's start (one line).
std::string http_error_message(const http_reply &r);

// A multipart/form-data body: the `fields`, then a file part. Sets *content_type.
std::string multipart_body(const std::vector<std::pair<std::string, std::string>> &fields,
                           const std::string &file_name, const std::string &file_type,
                           const std::string &file, std::string *content_type);

} // namespace parley
