// The model manifest: which models Parley knows, where each file comes from and how to check it.
//
//   model_manifest m;
//   if (std::string err = load_model_manifest(path, &m); !err.empty()) { /* one-line error */ }
//   const model_entry *e = m.find("whisper-base.en");
//
// The manifest is a JSON data file (models/manifest.json in the repository):
//   {"version": 1, "models": [{"name", "task", "engine", "description", "upstream", "license",
//     "notes" (optional), "files": [{"name", "url", "size" (optional), "sha256" (optional)}]}],
//    "profiles": [{"name", "description", "asr", "llm", "tts", "audio_llm" (each a name or a
//     list of names, optional), "pull" (optional, default true)}], "default_profile" (optional)}
// The first file of a model is its main file (the one `parley models path` prints). A url is
// absolute (http:// or https://) or a path on the model hub ("org/repo/resolve/rev/file").
// Plain data, no threads: parse once, then read from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parley {

struct model_file {
    std::string name;   // file name in the cache (no folders)
    std::string url;    // absolute, or a hub path
    int64_t size = -1;  // bytes; -1: unknown (the hub's X-Linked-Size is used)
    std::string sha256; // lowercase hex; empty: unknown (the hub's X-Linked-ETag is used)
};

struct model_entry {
    std::string name;        // what the user types: lowercase letters, digits, '.', '_', '-'
    std::string task;        // asr, llm, tts, vad, audio-llm
    std::string engine;      // the engine that loads it (whisper, parakeet, llama, piper, ...)
    std::string description; // one line
    std::string upstream;    // where the model is published
    std::string license;
    std::string notes; // optional: provenance, caveats
    std::vector<model_file> files;

    // Sum of the known file sizes; -1 when any is unknown.
    int64_t total_size() const;
};

// A profile: a whole set of engines chosen by one name (`--profile cpu`). Each role lists
// candidates, best first: a model of the manifest (of the role's task) or a built-in engine
// (asr: pocketsphinx, none; tts: espeak, none). The first one present locally is used; when
// none is, the first is pulled (if `pull`), and when that fails the offline profile's choice
// stands in.
struct model_profile {
    std::string name;
    std::string description;
    std::vector<std::string> asr, llm, tts, audio_llm; // empty: the role is not set
    bool pull = true;
};

struct model_manifest {
    int version = 1;
    std::vector<model_entry> models;
    std::vector<model_profile> profiles;
    std::string default_profile; // empty: none

    const model_entry *find(const std::string &name) const;
    const model_profile *find_profile(const std::string &name) const;
    // "" when valid, otherwise the first problem, naming the entry (models[3].files[0].sha256).
    std::string validate() const;
};

// Parses and validates JSON text; returns "" or a one-line error.
std::string parse_model_manifest(const std::string &json_text, model_manifest *out);
// Reads a file, then parse_model_manifest; errors start with the path.
std::string load_model_manifest(const std::string &path, model_manifest *out);

// Built-in engines a profile role may name instead of a model (asr: pocketsphinx, none;
// tts: espeak, none).
bool is_builtin_engine(const std::string &role, const std::string &name);

// The tasks a manifest may name.
const std::vector<std::string> &model_tasks();

} // namespace parley
