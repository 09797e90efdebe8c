// Secrets: session ids and resume tokens from the operating system's random source (OpenSSL's
// RAND_bytes), and comparisons that take the same time wherever two secrets differ.
//
//   std::string id = random_hex(16);          // 128 random bits, 32 lowercase hex digits
//   std::string h = secret_hash(token);       // what is stored: SHA-256, hex
//   if (secrets_equal(given, key)) ...        // constant time in the content and the lengths
//
// Any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace parley {

// `bytes` random bytes as lowercase hex. Throws std::runtime_error when the random source fails.
std::string random_hex(size_t bytes);

// SHA-256 of a secret, lowercase hex: kept instead of the secret itself.
std::string secret_hash(std::string_view secret);

// True when a == b. Compares the SHA-256 digests of both with CRYPTO_memcmp, so the time taken
// says nothing about where they differ or how long the expected one is.
bool secrets_equal(std::string_view a, std::string_view b);

} // namespace parley
