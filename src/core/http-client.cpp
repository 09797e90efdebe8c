#include "core/http-client.h"

#include "core/secret.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace parley {

namespace {

struct sink {
    std::string *body;
    std::string *content_type;
    size_t max;
};

size_t on_body(char *p, size_t, size_t n, void *self) {
    auto *s = static_cast<sink *>(self);
    if (s->body->size() + n > s->max) return 0; // too large: the call fails
    s->body->append(p, n);
    return n;
}

size_t on_header(char *p, size_t, size_t n, void *self) {
    auto *s = static_cast<sink *>(self);
    std::string line(p, n);
    std::transform(line.begin(), line.end(), line.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    if (line.starts_with("content-type:")) {
        line = line.substr(13);
        size_t b = line.find_first_not_of(" \t"), e = line.find_last_not_of(" \t\r\n");
        *s->content_type = b == std::string::npos ? "" : line.substr(b, e - b + 1);
    }
    return n;
}

} // namespace

http_reply http_call(const std::string &url, const std::string &content_type,
                     const std::string &body, const std::string &bearer, long timeout_ms,
                     size_t max_body) {
    http_reply r;
    static const bool ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    CURL *curl = ready ? curl_easy_init() : nullptr;
    if (!curl) {
        r.error = "libcurl cannot start";
        return r;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_slist *headers = curl_slist_append(nullptr, "Expect:");
    if (!bearer.empty())
        headers = curl_slist_append(headers, ("Authorization: Bearer " + bearer).c_str());
    if (!content_type.empty())
        headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
    sink s{&r.body, &r.content_type, max_body};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 10000L));
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &s);
    if (!content_type.empty()) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    else
        r.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return r;
}

std::string api_base(std::string url) {
    if (!(url.starts_with("http://") || url.starts_with("https://"))) return {};
    while (!url.empty() && url.back() == '/')
        url.pop_back();
    if (url.ends_with("/v1")) url.resize(url.size() - 3);
    return url;
}

std::string http_error_message(const http_reply &r) {
    if (r.status == 0) return r.error;
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    std::string message;
    if (j.is_object() && j.contains("error")) {
        const auto &e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string())
            message = e["message"];
        else if (e.is_string())
            message = e.get<std::string>();
    }
    if (message.empty()) message = r.body.substr(0, 200);
    std::replace(message.begin(), message.end(), '\n', ' ');
    return "HTTP " + std::to_string(r.status) + (message.empty() ? "" : ": " + message);
}

std::string multipart_body(const std::vector<std::pair<std::string, std::string>> &fields,
                           const std::string &file_name, const std::string &file_type,
                           const std::string &file, std::string *content_type) {
    std::string boundary = "parley-" + random_hex(12);
    std::string out;
    for (const auto &[name, value] : fields)
        out += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name +
               "\"\r\n\r\n" + value + "\r\n";
    out += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
           file_name + "\"\r\nContent-Type: " + file_type + "\r\n\r\n" + file + "\r\n";
    out += "--" + boundary + "--\r\n";
    *content_type = "multipart/form-data; boundary=" + boundary;
    return out;
}

} // namespace parley
