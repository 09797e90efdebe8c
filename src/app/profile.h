// Profiles: one name selects a whole set of engines (`--profile cpu`), from the model manifest.
//
// For each role (asr, llm, tts, audio_llm) the user did not set with a flag, the profile's first
// candidate that is already on disk (cache or mirror) is used; when none is, the first one is
// pulled (with progress on `log`); when that fails (offline, 404, disk full) the reason is
// reported and the offline profile's choice for that role stands in, so a server always comes
// up with what this machine has. Blocking: call before the engines load.
#pragma once

#include "app/config.h"
#include "models/model-cache.h"
#include "models/model-manifest.h"

#include <cstdio>
#include <string>
#include <vector>

namespace parley {

struct profile_outcome {
    std::vector<std::string> lines;   // what was chosen for each role, and why (for the log)
    std::vector<std::string> missing; // models that could not be had
};

// Throws model_error (exit code 2) for an unknown profile.
profile_outcome apply_profile(app_config &cfg, const std::string &name,
                              const model_manifest &manifest, const model_cache &cache,
                              bool allow_pull, FILE *log);

} // namespace parley
