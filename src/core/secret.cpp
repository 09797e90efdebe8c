#include "core/secret.h"

#include "core/sha256.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

namespace parley {

std::string random_hex(size_t bytes) {
    std::vector<uint8_t> buf(bytes);
    if (bytes > 0 && RAND_bytes(buf.data(), int(bytes)) != 1)
        throw std::runtime_error("no random bytes from the operating system (OpenSSL RAND_bytes)");
    return to_hex(buf.data(), buf.size());
}

std::string secret_hash(std::string_view secret) {
    return sha256_hex(secret);
}

bool secrets_equal(std::string_view a, std::string_view b) {
    sha256 ha, hb;
    ha.update(a);
    hb.update(b);
    auto da = ha.digest(), db = hb.digest();
    return CRYPTO_memcmp(da.data(), db.data(), da.size()) == 0;
}

} // namespace parley
