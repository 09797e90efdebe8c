// SHA-256 through OpenSSL's EVP digest interface.
#include "core/sha256.h"

#include <openssl/evp.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>
#include <vector>

namespace parley {

void sha256::free_ctx::operator()(evp_md_ctx_st *c) const {
    EVP_MD_CTX_free(c);
}

sha256::sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("sha256: OpenSSL cannot start a SHA-256 digest");
}

void sha256::update(const void *data, size_t size) {
    if (EVP_DigestUpdate(ctx_.get(), data, size) != 1)
        throw std::runtime_error("sha256: OpenSSL digest update failed");
}

std::array<uint8_t, 32> sha256::digest() {
    std::array<uint8_t, 32> out{};
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &n) != 1 || n != out.size())
        throw std::runtime_error("sha256: OpenSSL digest failed");
    return out;
}

std::string to_hex(const uint8_t *data, size_t size) {
    static const char digits[] = "0123456789abcdef";
    std::string s(size * 2, '0');
    for (size_t i = 0; i < size; ++i) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 15];
    }
    return s;
}

std::string sha256::hex() {
    auto d = digest();
    return to_hex(d.data(), d.size());
}

std::string sha256_hex(std::string_view bytes) {
    sha256 h;
    h.update(bytes);
    return h.hex();
}

std::string sha256_file(const std::string &path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": " + strerror(errno));
    sha256 h;
    std::vector<char> buf(1 << 20);
    while (true) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            throw std::runtime_error(path + ": " + strerror(err));
        }
        if (n == 0) break;
        h.update(buf.data(), size_t(n));
    }
    close(fd);
    return h.hex();
}

bool is_sha256_hex(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!isxdigit(static_cast<unsigned char>(c))) return false;
    return true;
}

} // namespace parley
