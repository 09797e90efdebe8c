#include "app/profile.h"

#include <filesystem>

namespace parley {

namespace {

// A flag names the engine of this role: the profile leaves it alone.
bool role_given(const app_config &cfg, const std::string &role) {
    auto g = [&](const char *key) { return cfg.given.count(key) > 0; };
    if (role == "asr") return g("asr") || g("asr-model") || g("asr-model-dir") || g("asr-url");
    if (role == "llm") return g("model") || g("llm-url");
    if (role == "tts") return g("tts") || g("tts-model") || g("tts-url");
    if (role == "audio_llm") return g("model") || g("asr") || g("llm-url");
    return false;
}

// Every file of the model is in the cache, or is linked in from a mirror now.
bool on_disk(const model_entry &e, const model_cache &cache) {
    if (cache.state(e) == MODEL_STATE_PULLED) return true;
    for (const model_file &f : e.files) {
        if (std::filesystem::exists(cache.file_path(e, f))) continue;
        std::string note;
        if (cache.from_mirror(e, f, &note) != MIRROR_HIT) return false;
    }
    return cache.state(e) == MODEL_STATE_PULLED;
}

void use(app_config &cfg, const std::string &role, const std::string &name, const model_entry *e,
         const model_cache &cache) {
    if (role == "asr") {
        cfg.asr.engine = e ? e->engine : name;
        cfg.asr.model_path = e ? cache.main_path(*e) : "";
    } else if (role == "llm") {
        cfg.llm.model_path = cache.main_path(*e);
    } else if (role == "tts") {
        cfg.tts.engine = e ? e->engine : name;
        cfg.tts.model_path = e ? cache.main_path(*e) : "";
    } else if (role == "audio_llm") {
        // The model's first file is the language model, the second its audio projector.
        cfg.llm.model_path = cache.file_path(*e, e->files.at(0));
        cfg.llm.mmproj_path = e->files.size() > 1 ? cache.file_path(*e, e->files[1]) : "";
        cfg.asr.engine = "audio-llm";
        cfg.asr.model_path.clear();
    }
}

struct resolver {
    app_config &cfg;
    const model_manifest &manifest;
    const model_cache &cache;
    FILE *log;
    profile_outcome out;

    // The first candidate on disk (or pulled, when allowed); "" when none could be had.
    std::string pick(const std::string &role, const std::vector<std::string> &candidates, bool pull,
                     const char **how) {
        for (const std::string &c : candidates) {
            if (is_builtin_engine(role, c)) {
                *how = "built in";
                return c;
            }
            const model_entry *e = manifest.find(c);
            if (e && on_disk(*e, cache)) {
                *how = "on disk";
                return c;
            }
        }
        if (!pull || candidates.empty()) return "";
        const model_entry *e = manifest.find(candidates.front());
        if (!e) return "";
        try {
            if (log) fprintf(log, "parley: pulling %s for the %s\n", e->name.c_str(), role.c_str());
            cache.pull(*e, log);
            *how = "pulled";
            return e->name;
        } catch (const model_error &x) {
            out.missing.push_back(e->name + ": " + x.what());
            out.lines.push_back(role + ": " + e->name + " is missing (" + x.what() + ")");
            return "";
        }
    }
};

} // namespace

profile_outcome apply_profile(app_config &cfg, const std::string &name,
                              const model_manifest &manifest, const model_cache &cache,
                              bool allow_pull, FILE *log) {
    const model_profile *p =
        manifest.find_profile(name == "default" ? manifest.default_profile : name);
    if (!p) {
        std::string known;
        for (const model_profile &x : manifest.profiles)
            known += (known.empty() ? "" : ", ") + x.name;
        throw model_error("no profile named '" + name + "' (known: " + known + ")", 2);
    }
    const model_profile *offline = manifest.find_profile("offline");
    resolver r{cfg, manifest, cache, log, {}};
    bool audio_llm_used = false;
    for (const char *role : {"audio_llm", "asr", "llm", "tts"}) {
        const std::vector<std::string> &want = role == std::string("audio_llm") ? p->audio_llm
                                               : role == std::string("asr")     ? p->asr
                                               : role == std::string("llm")     ? p->llm
                                                                                : p->tts;
        std::vector<std::string> stand_in;
        if (offline && offline != p) {
            stand_in = role == std::string("asr")   ? offline->asr
                       : role == std::string("llm") ? offline->llm
                       : role == std::string("tts") ? offline->tts
                                                    : std::vector<std::string>{};
        }
        // A profile whose audio-LLM both hears and answers needs no separate ASR or LLM;
        // when that model is missing, the offline engines take both roles.
        bool covered = audio_llm_used && (role == std::string("asr") || role == std::string("llm"));
        if (covered || role_given(cfg, role)) continue;
        bool fallback_only = want.empty();
        if (fallback_only && (p->audio_llm.empty() || audio_llm_used || stand_in.empty())) continue;
        const char *how = "";
        std::string chosen;
        if (!fallback_only) chosen = r.pick(role, want, allow_pull && p->pull, &how);
        bool stood_in = false;
        if (chosen.empty() && !stand_in.empty()) {
            chosen = r.pick(role, stand_in, false, &how);
            stood_in = !chosen.empty();
        }
        if (chosen.empty()) {
            if (!want.empty())
                r.out.lines.push_back(std::string(role) + ": nothing on disk; left as configured");
            continue;
        }
        use(cfg, role, chosen, is_builtin_engine(role, chosen) ? nullptr : manifest.find(chosen),
            cache);
        if (role == std::string("audio_llm")) audio_llm_used = true;
        r.out.lines.push_back(std::string(role) + ": " + chosen + " (" + how +
                              (stood_in ? ", offline stand-in" : "") + ")");
    }
    return r.out;
}

} // namespace parley
