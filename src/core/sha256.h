// SHA-256 (OpenSSL's EVP digest): checking downloaded model files, hashing secrets.
//
//   sha256 h;
//   h.update(data, size);        // any number of times
//   std::string hex = h.hex();   // 64 lowercase hex digits; ends the object's use
//
// or sha256_hex(bytes) / sha256_file(path) in one call. An object is used by one thread at a
// time; there is no shared state, so any thread may hash.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace parley {

class sha256 {
  public:
    sha256();
    void update(const void *data, size_t size);
    void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
    std::array<uint8_t, 32> digest(); // pads and finishes; call once
    std::string hex();                // digest() as lowercase hex

  private:
    struct free_ctx {
        void operator()(evp_md_ctx_st *c) const;
    };
    std::unique_ptr<evp_md_ctx_st, free_ctx> ctx_; // OpenSSL's EVP_MD_CTX
};

std::string sha256_hex(std::string_view bytes);

// Bytes as lowercase hex.
std::string to_hex(const uint8_t *data, size_t size);

// Hashes a file. Throws std::runtime_error (with the path and the reason) when it cannot be read.
std::string sha256_file(const std::string &path);

// True for 64 hex digits (either case).
bool is_sha256_hex(std::string_view s);

} // namespace parley
