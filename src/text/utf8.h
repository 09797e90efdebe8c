// UTF-8 helpers for streaming text.
//
// utf8_stream joins token pieces that may split a multi-byte character: push() returns only
// whole characters and keeps an incomplete tail for the next piece. Not thread-safe; one per
// stream.
#pragma once

#include <string>
#include <string_view>

namespace parley {

// Length of the longest prefix of s that ends on a character boundary (no cut sequence).
size_t utf8_complete_prefix(std::string_view s);

// True when s is valid UTF-8.
bool utf8_valid(std::string_view s);

// Replaces invalid sequences with U+FFFD.
std::string utf8_sanitize(std::string_view s);

// A value from outside (a file, a client) for an error message or a log line: in single quotes,
// cut to `max` bytes on a character boundary ("..." after it), control characters and invalid
// bytes escaped (\n, \x7f), so that what follows the message cannot be forged and a message
// stays one line.
std::string quote_value(std::string_view s, size_t max = 64);

class utf8_stream {
  public:
    // Appends bytes; returns the newly completed characters.
    std::string push(std::string_view bytes);
    // Returns whatever is left (sanitized) and clears the stream.
    std::string flush();

  private:
    std::string pending_;
};

} // namespace parley
