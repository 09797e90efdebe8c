// The settings file (--config FILE, JSON or TOML; app/config.h) on any text. Promise: applied
// or refused with an error line; never an exception or a crash, whatever the file holds.
#include "app/config.h"
#include "fuzz.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace parley;

namespace {

std::string scratch_file() {
    const char *dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/parley-fuzz-config-" +
           std::to_string(getpid()) + ".toml";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const std::string path = scratch_file();
    std::string text(reinterpret_cast<const char *>(data), size);
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << text;
    }
    app_config cfg;
    std::vector<std::string> positional;
    std::string err = parse_args(cfg, {"--config", path}, &positional);
    if (err.empty()) (void)cfg.validate();
    app_config direct;
    (void)apply_config_json(direct, text);
    return 0;
}
