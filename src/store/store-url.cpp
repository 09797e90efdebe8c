// Store locations: which are PostgreSQL URLs, and how to show one without its password. No
// database library here: the option checks use it too.
#include "store/store.h"

namespace parley {

bool is_postgres_url(const std::string &where) {
    return where.starts_with("postgresql://") || where.starts_with("postgres://");
}

std::string redact_url(const std::string &url) {
    std::string out = url;
    if (size_t scheme = out.find("://"); scheme != std::string::npos) {
        size_t start = scheme + 3;
        size_t end = out.find_first_of("/?#", start);
        size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
        size_t colon = out.find(':', start);
        if (at != std::string::npos && at >= start && colon != std::string::npos && colon < at)
            out = out.substr(0, colon + 1) + "***" + out.substr(at);
    }
    // A password can also be a query parameter.
    for (size_t p = out.find("password="); p != std::string::npos;
         p = out.find("password=", p + 1)) {
        size_t v = p + 9;
        size_t e = out.find('&', v);
        out.replace(v, (e == std::string::npos ? out.size() : e) - v, "***");
    }
    return out;
}

} // namespace parley
