// Where models live on disk and how they get there: the cache folder, the local mirror, the hub.
//
//   model_settings s = model_settings_from_env(getenv_lookup(), executable_dir());
//   model_cache cache(s);
//   cache.pull(*manifest.find("whisper-base.en"), stderr);   // throws model_error
//   std::string path = cache.main_path(entry);
//
// Settings come from the environment (flags of `parley models` override them):
//   PARLEY_MANIFEST      the manifest (default <exe dir>/../models/manifest.json)
//   PARLEY_MODELS        the cache (default $XDG_CACHE_HOME/parley/models, ~/.cache/parley/models)
//   PARLEY_MODEL_MIRROR  folders (':'-separated) searched for a file of the same name first;
//                        a hit is checksum-verified, then hard-linked (or copied) into the cache
//   HF_ENDPOINT          the hub's address (default https://huggingface.co)
//   HF_TOKEN             sent as Authorization: Bearer to the hub only
// The cache holds <cache>/<model name>/<file name>; an unfinished download is <file name>.part.
// Blocking, for the CLI's thread; two processes pulling one file are kept apart by a file lock.
#pragma once

#include "models/model-manifest.h"

#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace parley {

inline constexpr const char *DEFAULT_MODEL_HUB = "https://huggingface.co";

struct model_settings {
    std::string manifest_path;        // empty: none found
    std::string cache_dir;            // never empty after model_settings_from_env
    std::vector<std::string> mirrors; // searched in order
    std::string hub = DEFAULT_MODEL_HUB;
    std::string token;
    bool progress_bar = false; // a redrawn bar (stderr is a terminal) instead of quiet lines
};

// Errors for the user: one line. exit_code 2: bad input (unknown model, bad manifest, not
// pulled); 1: the download or the disk failed.
struct model_error : std::runtime_error {
    model_error(const std::string &what, int code) : std::runtime_error(what), exit_code(code) {}
    int exit_code;
};

using env_lookup = std::function<std::optional<std::string>(const char *name)>;

// The process environment (empty values count as unset).
env_lookup process_env();
// The folder of the running executable (from /proc/self/exe), or "" when unknown.
std::string executable_dir();
// Settings from the variables above; exe_dir finds the default manifest.
model_settings model_settings_from_env(const env_lookup &env, const std::string &exe_dir);

enum model_state { MODEL_STATE_ABSENT, MODEL_STATE_PARTIAL, MODEL_STATE_PULLED };

// What the mirror did for one file.
enum mirror_result { MIRROR_MISS, MIRROR_HIT, MIRROR_MISMATCH };

class model_cache {
  public:
    explicit model_cache(model_settings settings) : settings_(std::move(settings)) {}

    const model_settings &settings() const { return settings_; }
    std::string model_dir(const model_entry &m) const;
    std::string file_path(const model_entry &m, const model_file &f) const;
    std::string main_path(const model_entry &m) const { return file_path(m, m.files.at(0)); }

    // The URL to fetch: hub paths and URLs on huggingface.co are rebased onto settings().hub.
    std::string resolve_url(const model_file &f) const;
    // Whether a URL is on the hub (only then is the token sent).
    bool on_hub(const std::string &url) const;

    // PULLED: every file present; PARTIAL: some file or a .part present.
    model_state state(const model_entry &m) const;
    int64_t bytes_on_disk(const model_entry &m) const;

    // Looks for f in the mirrors; on a hit with the right checksum (and size) puts it at
    // file_path. MISMATCH: a file of that name whose bytes are wrong (note says which).
    mirror_result from_mirror(const model_entry &m, const model_file &f, std::string *note) const;

    // Every file of m: present ones are kept, then the mirror, then the network. Progress and
    // notes go to `log` (nullptr: silent). Throws model_error.
    void pull(const model_entry &m, FILE *log) const;
    // Deletes the model's folder; false when there was nothing.
    bool remove(const model_entry &m) const;

  private:
    model_settings settings_;
};

} // namespace parley
