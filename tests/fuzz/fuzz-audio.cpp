// Audio files (audio/audio-file.h) on any bytes an upload or a file holds. Promise: samples at
// a plausible rate, or audio_file_error; no other exception, no crash, no runaway memory.
#include "audio/audio-file.h"
#include "fuzz.h"

#include <string_view>

using namespace parley;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try {
        pcm_audio a =
            parse_audio_file(std::string_view(reinterpret_cast<const char *>(data), size));
        FUZZ_CHECK(a.sample_rate > 0);
    } catch (const audio_file_error &e) {
        FUZZ_CHECK(*e.what() != '\0');
    }
    return 0;
}
