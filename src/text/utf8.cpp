#include "text/utf8.h"

namespace parley {

namespace {

// Expected length of a sequence from its lead byte; 0 for a continuation or invalid byte.
int seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return c >= 0xC2 ? 2 : 0;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return c <= 0xF4 ? 4 : 0;
    return 0;
}

bool is_cont(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

} // namespace

size_t utf8_complete_prefix(std::string_view s) {
    // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
    size_t n = s.size();
    for (size_t back = 1; back <= 4 && back <= n; ++back) {
        unsigned char c = static_cast<unsigned char>(s[n - back]);
        if (is_cont(c)) continue;
        int len = seq_len(c);
        if (len > static_cast<int>(back)) return n - back;
        return n;
    }
    return n;
}

bool utf8_valid(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        int len = seq_len(static_cast<unsigned char>(s[i]));
        if (len == 0 || i + len > s.size()) return false;
        for (int k = 1; k < len; ++k)
            if (!is_cont(static_cast<unsigned char>(s[i + k]))) return false;
        i += len;
    }
    return true;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        int len = seq_len(static_cast<unsigned char>(s[i]));
        bool ok = len > 0 && i + len <= s.size();
        for (int k = 1; ok && k < len; ++k)
            ok = is_cont(static_cast<unsigned char>(s[i + k]));
        if (ok) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            out.append("\xEF\xBF\xBD");
            i += 1;
        }
    }
    return out;
}

std::string quote_value(std::string_view s, size_t max) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "'";
    size_t i = 0;
    while (i < s.size() && i < max) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        int len = seq_len(c);
        bool ok = len > 0 && i + len <= s.size();
        for (int k = 1; ok && k < len; ++k)
            ok = is_cont(static_cast<unsigned char>(s[i + k]));
        if (ok && len > 1) {
            if (i + len > max) break;
            out.append(s.substr(i, len));
            i += len;
            continue;
        }
        if (c == '\n')
            out += "\\n";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\\')
            out += "\\\\";
        else if (c == '\'')
            out += "\\'";
        else if (c < 0x20 || c >= 0x7f)
            out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
        else
            out += char(c);
        i += 1;
    }
    if (i < s.size()) out += "...";
    return out + "'";
}

std::string utf8_stream::push(std::string_view bytes) {
    pending_.append(bytes);
    size_t keep = utf8_complete_prefix(pending_);
    std::string out = pending_.substr(0, keep);
    pending_.erase(0, keep);
    return utf8_sanitize(out);
}

std::string utf8_stream::flush() {
    std::string out = utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

} // namespace parley
