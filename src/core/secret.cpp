#include "core/secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>
#include <vector>

namespace parley {

namespace {

std::string to_hex(const unsigned char *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string out(n * 2, '0');
    for (size_t i = 0; i < n; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    return out;
}

std::array<unsigned char, 32> digest(std::string_view s) {
    std::array<unsigned char, 32> out{};
    unsigned int n = 0;
    if (EVP_Digest(s.data(), s.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 ||
        n != out.size())
        throw std::runtime_error("SHA-256 failed (OpenSSL)");
    return out;
}

} // namespace

std::string random_hex(size_t bytes) {
    std::vector<unsigned char> buf(bytes);
    if (bytes > 0 && RAND_bytes(buf.data(), int(bytes)) != 1)
        throw std::runtime_error("no random bytes from the operating system (OpenSSL RAND_bytes)");
    return to_hex(buf.data(), buf.size());
}

std::string secret_hash(std::string_view secret) {
    auto d = digest(secret);
    return to_hex(d.data(), d.size());
}

bool secrets_equal(std::string_view a, std::string_view b) {
    auto da = digest(a), db = digest(b);
    return CRYPTO_memcmp(da.data(), db.data(), da.size()) == 0;
}

} // namespace parley
