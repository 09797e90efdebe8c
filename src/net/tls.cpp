#include "net/tls.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace parley {

namespace fs = std::filesystem;

namespace {

constexpr int VALID_DAYS = 825; // the longest a client (Apple's) takes for a server certificate
constexpr int RENEW_DAYS = 7;   // a certificate that ends sooner than this is made again

template <class T, void (*F)(T *)> struct deleter {
    void operator()(T *p) const { F(p); }
};
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION, X509_EXTENSION_free>>;

bool is_ip(const std::string &s) {
    ASN1_OCTET_STRING *a = a2i_IPADDRESS(s.c_str());
    if (!a) return false;
    ASN1_OCTET_STRING_free(a);
    return true;
}

x509_ptr read_cert(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return nullptr;
    X509 *x = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return x509_ptr(x);
}

bool covers(X509 *x, const std::string &name) {
    if (is_ip(name)) return X509_check_ip_asc(x, name.c_str(), 0) == 1;
    return X509_check_host(x, name.c_str(), name.size(), 0, nullptr) == 1;
}

bool add_ext(X509 *x, int nid, const std::string &value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    ext_ptr e(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    return e && X509_add_ext(x, e.get(), -1) == 1;
}

// Writes `data` with PEM_write_* through a FILE opened with `mode` bits; true when all went.
template <class F> bool write_pem(const std::string &path, mode_t mode, F write) {
    std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) return false;
    FILE *f = ::fdopen(fd, "wb");
    if (!f) {
        ::close(fd);
        return false;
    }
    bool ok = write(f) == 1;
    ok = (std::fflush(f) == 0) && ok && ::fsync(fd) == 0;
    ok = (std::fclose(f) == 0) && ok;
    if (ok) ok = std::rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok) ::unlink(tmp.c_str());
    return ok;
}

std::string make_self_signed(const tls_files &f, const std::vector<std::string> &names) {
    pkey_ptr key(EVP_EC_gen("P-256"));
    if (!key) return "could not make a key";
    x509_ptr x(X509_new());
    if (!x || X509_set_version(x.get(), X509_VERSION_3) != 1) return "could not make a certificate";
    // A random 127-bit serial: two certificates made here never share one.
    std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>> serial(BN_new());
    if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get())))
        return "could not make a serial number";
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), long(VALID_DAYS) * 86400);
    X509_set_pubkey(x.get(), key.get());
    X509_NAME *subject = X509_get_subject_name(x.get());
    std::string cn = "Parley " + (names.empty() ? std::string("localhost") : names.front());
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char *>(cn.c_str()), -1, -1, 0);
    X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char *>("Parley self-signed"), -1,
                               -1, 0);
    X509_set_issuer_name(x.get(), subject);
    std::string san;
    for (const std::string &n : names)
        san += (san.empty() ? "" : ",") + std::string(is_ip(n) ? "IP:" : "DNS:") + n;
    // Its own authority (clients are told to trust this one certificate), for a server only.
    if (!add_ext(x.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x.get(), NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        !add_ext(x.get(), NID_ext_key_usage, "serverAuth") ||
        !add_ext(x.get(), NID_subject_key_identifier, "hash") ||
        !add_ext(x.get(), NID_authority_key_identifier, "keyid:always") ||
        (!san.empty() && !add_ext(x.get(), NID_subject_alt_name, san)))
        return "could not add the certificate's extensions (names: " + san + ")";
    if (X509_sign(x.get(), key.get(), EVP_sha256()) <= 0) return "could not sign the certificate";
    if (!write_pem(f.key, 0600, [&](FILE *out) {
            return PEM_write_PrivateKey(out, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        }))
        return "cannot write " + f.key;
    if (!write_pem(f.cert, 0644, [&](FILE *out) { return PEM_write_X509(out, x.get()); }))
        return "cannot write " + f.cert;
    return {};
}

} // namespace

bool cert_covers(const std::string &cert_path, const std::string &name) {
    x509_ptr x = read_cert(cert_path);
    return x && covers(x.get(), name);
}

std::string cert_fingerprint(const std::string &cert_path, std::string *err) {
    x509_ptr x = read_cert(cert_path);
    if (!x) {
        if (err) *err = cert_path + " holds no PEM certificate";
        return {};
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x.get(), EVP_sha256(), md, &n) != 1) {
        if (err) *err = "cannot digest " + cert_path;
        return {};
    }
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
        if (i) out += ':';
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

std::vector<std::string> self_signed_names(const std::string &listen_host,
                                           const std::vector<std::string> &extra) {
    std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"};
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0]) names.push_back(host);
    if (!listen_host.empty() && listen_host != "0.0.0.0" && listen_host != "::" &&
        listen_host != "[::]")
        names.push_back(listen_host);
    for (const std::string &e : extra)
        if (!e.empty() && e != "*") names.push_back(e);
    std::vector<std::string> unique;
    for (const std::string &n : names)
        if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
    return unique;
}

std::string ensure_self_signed(const std::string &dir, const std::vector<std::string> &names,
                               tls_files *out, bool *made) {
    if (made) *made = false;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return "tls: cannot make " + dir + ": " + ec.message();
    tls_files f{(fs::path(dir) / "cert.pem").string(), (fs::path(dir) / "key.pem").string()};
    x509_ptr x = read_cert(f.cert);
    bool fresh = x && fs::exists(f.key);
    if (fresh) {
        time_t soon = std::time(nullptr) + time_t(RENEW_DAYS) * 86400;
        fresh = X509_cmp_time(X509_get0_notAfter(x.get()), &soon) > 0;
    }
    for (const std::string &n : names)
        fresh = fresh && covers(x.get(), n);
    if (!fresh) {
        if (std::string err = make_self_signed(f, names); !err.empty()) return "tls: " + err;
        if (made) *made = true;
    }
    *out = f;
    return {};
}

} // namespace parley
