// Base64 (RFC 4648, with padding), as OpenAI's APIs carry audio in JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace parley {

std::string base64_encode(std::string_view bytes);
// nullopt for anything but canonical base64 (whitespace is not skipped).
std::optional<std::string> base64_decode(std::string_view text);

} // namespace parley
