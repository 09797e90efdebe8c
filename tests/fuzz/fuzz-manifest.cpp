// The model manifest (models/model-manifest.h) on any text. Promise: a valid manifest or a
// one-line error naming the problem; never an exception.
#include "fuzz.h"
#include "models/model-manifest.h"

#include <string>

using namespace parley;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    model_manifest m;
    std::string err =
        parse_model_manifest(std::string(reinterpret_cast<const char *>(data), size), &m);
    if (err.empty())
        FUZZ_CHECK(m.validate().empty());
    else
        FUZZ_CHECK(err.find('\n') == std::string::npos);
    return 0;
}
