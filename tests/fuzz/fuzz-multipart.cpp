// multipart/form-data bodies (net/multipart.h) on any bytes an upload holds. Promises: parts
// or an error line; every part is named and lies inside the body; never more than the limit.
#include "fuzz.h"
#include "net/multipart.h"

#include <string_view>

using namespace parley;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::string_view in(reinterpret_cast<const char *>(data), size);
    // The first line is the Content-Type header, the rest the body.
    size_t eol = in.find('\n');
    std::string_view type = in.substr(0, eol);
    std::string_view body = eol == std::string_view::npos ? std::string_view() : in.substr(eol + 1);
    std::string boundary = multipart_boundary(type);
    FUZZ_CHECK(boundary.size() <= 70);
    std::vector<form_part> parts;
    std::string err = parse_multipart(body, boundary.empty() ? "x" : boundary, &parts);
    if (!err.empty()) {
        FUZZ_CHECK(err.find('\n') == std::string::npos);
        return 0;
    }
    FUZZ_CHECK(parts.size() <= MULTIPART_MAX_PARTS);
    for (const form_part &p : parts) {
        FUZZ_CHECK(!p.name.empty());
        FUZZ_CHECK(p.data.data() >= body.data() &&
                   p.data.data() + p.data.size() <= body.data() + body.size());
    }
    (void)find_part(parts, "file");
    return 0;
}
