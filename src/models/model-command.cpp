#include "models/model-command.h"

#include "models/model-cache.h"
#include "models/model-download.h"
#include "models/model-manifest.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

namespace parley {

namespace {

const char *USAGE =
    R"(usage: parley models COMMAND [options]
  list              every model of the manifest: name, task, size, pulled or not, description
  show NAME         all of a model's details: files, URLs, checksums, licence, notes
  pull NAME...      fetch a model's files into the cache (resumes; checks sha256)
  path NAME         print the local path of the model's main file (exit 2 if not pulled)
  path              print the cache folder
  rm NAME...        delete a model from the cache
options (each also an environment variable):
  --manifest FILE   PARLEY_MANIFEST      (default <exe dir>/../models/manifest.json)
  --dir DIR         PARLEY_MODELS        the cache (default $XDG_CACHE_HOME/parley/models)
  --mirror DIR      PARLEY_MODEL_MIRROR  local folders searched first (':'-separated)
                    HF_ENDPOINT          the hub (default https://huggingface.co)
                    HF_TOKEN             a Hugging Face token for gated models
)";

int fail(const std::string &message, int code = 2) {
    fprintf(stderr, "parley: models: %s\n", message.c_str());
    return code;
}

const char *state_name(model_state s) {
    return s == MODEL_STATE_PULLED ? "pulled" : s == MODEL_STATE_PARTIAL ? "partial" : "-";
}

int cmd_list(const model_manifest &manifest, const model_cache &cache) {
    struct row {
        std::string name, task, size, state, description;
    };
    std::vector<row> rows = {{"NAME", "TASK", "SIZE", "STATE", "DESCRIPTION"}};
    for (const auto &m : manifest.models) {
        int64_t size = m.total_size();
        model_state st = cache.state(m);
        std::string size_text = size >= 0                  ? format_bytes(size)
                                : st == MODEL_STATE_PULLED ? format_bytes(cache.bytes_on_disk(m))
                                                           : "?";
        rows.push_back({m.name, m.task, size_text, state_name(st), m.description});
    }
    size_t w[4] = {0, 0, 0, 0};
    for (const auto &r : rows) {
        w[0] = std::max(w[0], r.name.size());
        w[1] = std::max(w[1], r.task.size());
        w[2] = std::max(w[2], r.size.size());
        w[3] = std::max(w[3], r.state.size());
    }
    for (const auto &r : rows)
        printf("%-*s  %-*s  %*s  %-*s  %s\n", int(w[0]), r.name.c_str(), int(w[1]), r.task.c_str(),
               int(w[2]), r.size.c_str(), int(w[3]), r.state.c_str(), r.description.c_str());
    return 0;
}

int cmd_show(const model_entry &m, const model_cache &cache) {
    printf("name:        %s\n", m.name.c_str());
    printf("task:        %s\n", m.task.c_str());
    printf("engine:      %s\n", m.engine.c_str());
    printf("description: %s\n", m.description.c_str());
    printf("upstream:    %s\n", m.upstream.c_str());
    printf("license:     %s\n", m.license.c_str());
    if (!m.notes.empty()) printf("notes:       %s\n", m.notes.c_str());
    printf("state:       %s\n", state_name(cache.state(m)));
    for (const auto &f : m.files) {
        printf("file:        %s\n", cache.file_path(m, f).c_str());
        printf("  url:       %s\n", cache.resolve_url(f).c_str());
        printf("  size:      %s\n", f.size >= 0 ? std::to_string(f.size).c_str() : "from the hub");
        printf("  sha256:    %s\n", f.sha256.empty() ? "from the hub" : f.sha256.c_str());
    }
    return 0;
}

} // namespace

int models_command(const std::vector<std::string> &args) {
    model_settings settings = model_settings_from_env(process_env(), executable_dir());
    std::vector<std::string> pos;
    for (size_t i = 0; i < args.size(); i++) {
        std::string a = args[i], value;
        if (a == "-h" || a == "--help" || a == "help") {
            fputs(USAGE, stdout);
            return 0;
        }
        if (a.rfind("--", 0) != 0) {
            pos.push_back(a);
            continue;
        }
        size_t eq = a.find('=');
        if (eq != std::string::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
        } else if (a == "--manifest" || a == "--dir" || a == "--mirror") {
            if (i + 1 >= args.size()) return fail(a + " needs a value");
            value = args[++i];
        }
        if (a == "--manifest")
            settings.manifest_path = value;
        else if (a == "--dir")
            settings.cache_dir = value;
        else if (a == "--mirror")
            settings.mirrors = {value};
        else
            return fail("unknown option " + a + "\n" + USAGE);
        if (value.empty()) return fail(a + " needs a value");
    }
    if (pos.empty()) {
        fputs(USAGE, stderr);
        return 2;
    }
    std::string cmd = pos[0];
    pos.erase(pos.begin());
    if (cmd != "list" && cmd != "show" && cmd != "pull" && cmd != "path" && cmd != "rm")
        return fail("unknown command '" + cmd + "'\n" + USAGE);

    if (settings.manifest_path.empty())
        return fail("no manifest found: set PARLEY_MANIFEST=FILE or give --manifest FILE");
    model_manifest manifest;
    if (std::string err = load_model_manifest(settings.manifest_path, &manifest); !err.empty())
        return fail(err);
    settings.progress_bar = isatty(fileno(stderr));
    // Paths printed by `path` and `pull` work from any folder.
    settings.cache_dir = std::filesystem::absolute(settings.cache_dir).lexically_normal().string();
    while (settings.cache_dir.size() > 1 && settings.cache_dir.back() == '/')
        settings.cache_dir.pop_back();
    model_cache cache(settings);

    if (cmd == "list") return pos.empty() ? cmd_list(manifest, cache) : fail("list takes no names");
    if (cmd == "path" && pos.empty()) {
        printf("%s\n", settings.cache_dir.c_str());
        return 0;
    }
    if (pos.empty()) return fail(cmd + " needs a model name (parley models list shows them)");
    if ((cmd == "show" || cmd == "path") && pos.size() != 1)
        return fail(cmd + " takes one model name");

    // Every name first, so that a typo fails before anything is fetched or deleted.
    std::vector<const model_entry *> entries;
    for (const auto &name : pos) {
        const model_entry *m = manifest.find(name);
        if (!m) return fail("unknown model '" + name + "' (parley models list shows them)");
        entries.push_back(m);
    }
    try {
        if (cmd == "show") return cmd_show(*entries[0], cache);
        if (cmd == "path") {
            const model_entry &m = *entries[0];
            if (cache.state(m) != MODEL_STATE_PULLED)
                return fail(m.name + " is not pulled: parley models pull " + m.name);
            printf("%s\n", cache.main_path(m).c_str());
            return 0;
        }
        if (cmd == "pull") {
            for (const model_entry *m : entries) {
                cache.pull(*m, stderr);
                printf("%s\n", cache.main_path(*m).c_str());
                fflush(stdout);
            }
            return 0;
        }
        for (const model_entry *m : entries) // rm
            fprintf(stderr, "parley: models: %s: %s\n", m->name.c_str(),
                    cache.remove(*m) ? ("deleted " + cache.model_dir(*m)).c_str()
                                     : "not in the cache");
        return 0;
    } catch (const model_error &e) {
        return fail(e.what(), e.exit_code);
    } catch (const std::exception &e) {
        return fail(e.what(), 1);
    }
}

} // namespace parley
