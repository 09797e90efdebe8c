#include "net/multipart.h"
#include "net/http-request.h"

#include <algorithm>
#include <cctype>

namespace parley {

namespace {

// The value of `key` among "; key=value" parameters (quoted or not, \-escapes in quotes).
std::string param(std::string_view header, std::string_view key) {
    size_t i = header.find(';');
    while (i != std::string_view::npos && i < header.size()) {
        std::string_view rest = header.substr(i + 1);
        size_t eq = rest.find('=');
        if (eq == std::string_view::npos) return {};
        std::string name = ascii_lower(trim_ows(rest.substr(0, eq)));
        rest = rest.substr(eq + 1);
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
            rest.remove_prefix(1);
        std::string value;
        size_t used = 0;
        if (!rest.empty() && rest.front() == '"') {
            size_t k = 1;
            for (; k < rest.size() && rest[k] != '"'; ++k) {
                if (rest[k] == '\\' && k + 1 < rest.size()) ++k;
                value += rest[k];
            }
            used = std::min(k + 1, rest.size());
        } else {
            used = std::min(rest.find(';'), rest.size());
            value = std::string(trim_ows(rest.substr(0, used)));
        }
        if (name == key) return value;
        size_t next = rest.find(';', used);
        if (next == std::string_view::npos) return {};
        i = (rest.data() - header.data()) + next;
    }
    return {};
}

} // namespace

std::string multipart_boundary(std::string_view content_type) {
    std::string type = ascii_lower(trim_ows(content_type.substr(0, content_type.find(';'))));
    if (type != "multipart/form-data") return {};
    std::string b = param(content_type, "boundary");
    return b.size() <= 70 ? b : std::string();
}

std::string parse_multipart(std::string_view body, std::string_view boundary,
                            std::vector<form_part> *parts) {
    parts->clear();
    if (boundary.empty()) return "multipart body without a boundary";
    std::string delim = "--" + std::string(boundary);
    // The first delimiter: at the start, or after a preamble's line end.
    size_t at = body.rfind(delim, 0) == 0 ? 0 : body.find("\r\n" + delim);
    if (at == std::string_view::npos) return "multipart body without its boundary";
    if (at != 0) at += 2;
    size_t pos = at + delim.size();
    for (;;) {
        if (body.substr(pos, 2) == "--") return {}; // the closing delimiter
        // The rest of the delimiter line (transport padding), then the part's headers.
        size_t eol = body.find("\r\n", pos);
        if (eol == std::string_view::npos) return "multipart body ends inside a delimiter line";
        if (parts->size() == MULTIPART_MAX_PARTS)
            return "multipart body has more than " + std::to_string(MULTIPART_MAX_PARTS) + " parts";
        size_t head = eol + 2, head_end = head, data = head + 2; // no headers at all
        if (body.substr(head, 2) != "\r\n") {
            head_end = body.find("\r\n\r\n", head);
            if (head_end == std::string_view::npos || head_end - head > MULTIPART_MAX_HEADER_BYTES)
                return "multipart part without the end of its headers";
            data = head_end + 4;
        }
        form_part part;
        bool disposition = false;
        std::string_view headers = body.substr(head, head_end - head);
        while (!headers.empty()) {
            size_t e = headers.find("\r\n");
            std::string_view line = headers.substr(0, e);
            headers = e == std::string_view::npos ? std::string_view() : headers.substr(e + 2);
            size_t colon = line.find(':');
            if (colon == std::string_view::npos) continue;
            std::string name = ascii_lower(trim_ows(line.substr(0, colon)));
            std::string_view value = trim_ows(line.substr(colon + 1));
            if (name == "content-disposition") {
                if (ascii_lower(trim_ows(value.substr(0, value.find(';')))) != "form-data")
                    return "multipart part is not form-data";
                disposition = true;
                part.name = param(value, "name");
                part.filename = param(value, "filename");
            } else if (name == "content-type") {
                part.content_type = std::string(value);
            }
        }
        if (!disposition || part.name.empty())
            return "multipart part without a Content-Disposition name";
        size_t end = body.find("\r\n" + delim, data);
        if (end == std::string_view::npos) return "multipart body ends inside a part";
        part.data = body.substr(data, end - data);
        parts->push_back(std::move(part));
        pos = end + 2 + delim.size();
    }
}

const form_part *find_part(const std::vector<form_part> &parts, std::string_view name) {
    for (const form_part &p : parts)
        if (p.name == name) return &p;
    return nullptr;
}

} // namespace parley
