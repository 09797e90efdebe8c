// TLS for the server (HTTPS and WSS on the server's one port): the certificate and key a
// server context is made from, and a self-signed certificate made and kept for this host's
// names (--tls self-signed). OpenSSL; no Beast here, so it is unit tested on its own.
#pragma once

#include <string>
#include <vector>

namespace parley {

struct tls_files {
    std::string cert; // PEM: the certificate (and any chain after it)
    std::string key;  // PEM: its private key
};

// The self-signed certificate in `dir` (cert.pem, key.pem; the key readable by its owner only)
// when it covers every one of `names` (DNS names and IP addresses) and is valid for a week
// more; otherwise a new one (EC P-256, SHA-256, valid 825 days) is made there for them.
// Returns an error line, or empty; *made says a new one was made.
std::string ensure_self_signed(const std::string &dir, const std::vector<std::string> &names,
                               tls_files *out, bool *made = nullptr);

// The SHA-256 fingerprint of a PEM certificate file, "AB:CD:..." (what browsers show);
// empty with *err set when the file holds no certificate.
std::string cert_fingerprint(const std::string &cert_path, std::string *err);

// Does the certificate cover `name` (a DNS name or an IP address)?
bool cert_covers(const std::string &cert_path, const std::string &name);

// The names a self-signed certificate is made for: loopback names and addresses, this host's
// name, the listen address unless it is a wildcard, and `extra` (--allow-host, without "*").
std::vector<std::string> self_signed_names(const std::string &listen_host,
                                           const std::vector<std::string> &extra);

} // namespace parley
