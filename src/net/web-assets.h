// The browser page's files, embedded into the binary at build time (cmake/embed-web.cmake).
#pragma once

#include <cstddef>
#include <string_view>

namespace parley {

struct web_asset {
    const char *path; // "/index.html"
    const char *mime;
    const unsigned char *data;
    size_t size;
};

const web_asset *find_web_asset(std::string_view path);

} // namespace parley
