// multipart/form-data (RFC 7578), as uploads to /v1/audio/transcriptions arrive: the parts of a
// body, each with its field name, file name, content type and bytes (views into the body).
// Pure functions of the bytes: unit tested and fuzzed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace parley {

constexpr size_t MULTIPART_MAX_PARTS = 64;
constexpr size_t MULTIPART_MAX_HEADER_BYTES = 4096; // one part's headers

struct form_part {
    std::string name;         // Content-Disposition's name
    std::string filename;     // its filename (empty for a plain field)
    std::string content_type; // the part's Content-Type (empty when not given)
    std::string_view data;    // into the body
};

// The boundary of a "multipart/form-data; boundary=..." Content-Type; empty when it is another
// type or has none (or one longer than RFC 2046's 70 characters).
std::string multipart_boundary(std::string_view content_type);

// Splits `body` into its parts. Returns an error line, or empty.
std::string parse_multipart(std::string_view body, std::string_view boundary,
                            std::vector<form_part> *parts);

// The first part named `name`, or nullptr.
const form_part *find_part(const std::vector<form_part> &parts, std::string_view name);

} // namespace parley
