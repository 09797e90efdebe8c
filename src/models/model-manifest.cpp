#include "models/model-manifest.h"

#include "core/sha256.h"
#include "text/utf8.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

namespace parley {

using json = nlohmann::json;

namespace {

// Reads a string member; missing is "" when optional, an error otherwise.
std::string get_string(const json &obj, const char *key, const std::string &where, bool required,
                       std::string *out) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        if (required) return where + "." + key + ": missing";
        out->clear();
        return "";
    }
    if (!it->is_string()) return where + "." + key + ": must be a string";
    *out = it->get<std::string>();
    return "";
}

bool valid_model_name(const std::string &s) {
    if (s.empty() || s.size() > 100 || s[0] == '.' || s[0] == '-') return false;
    for (char c : s)
        if (!(('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

bool valid_file_name(const std::string &s) {
    if (s.empty() || s.size() > 255 || s[0] == '.') return false;
    if (s.find('/') != std::string::npos || s.find('\\') != std::string::npos) return false;
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20) return false;
    // ".part" is what the downloader writes while a file is incomplete.
    return !(s.size() > 5 && s.compare(s.size() - 5, 5, ".part") == 0);
}

bool valid_url(const std::string &s) {
    if (s.empty() || s.find_first_of(" \t\r\n") != std::string::npos) return false;
    if (s.rfind("https://", 0) == 0) return s.size() > 8;
    if (s.rfind("http://", 0) == 0) return s.size() > 7;
    // A hub path: org/repo/resolve/revision/file...
    return s.find("://") == std::string::npos && s[0] != '/' &&
           s.find("/resolve/") != std::string::npos;
}

} // namespace

const std::vector<std::string> &model_tasks() {
    static const std::vector<std::string> tasks = {"asr", "llm", "tts", "vad", "audio-llm"};
    return tasks;
}

int64_t model_entry::total_size() const {
    int64_t total = 0;
    for (const auto &f : files) {
        if (f.size < 0) return -1;
        total += f.size;
    }
    return total;
}

const model_entry *model_manifest::find(const std::string &name) const {
    for (const auto &m : models)
        if (m.name == name) return &m;
    return nullptr;
}

std::string model_manifest::validate() const {
    if (version != 1) return "version: " + std::to_string(version) + " is not supported (1 is)";
    if (models.empty()) return "models: no models";
    std::set<std::string> names;
    for (size_t i = 0; i < models.size(); i++) {
        const model_entry &m = models[i];
        std::string where = "models[" + std::to_string(i) + "]";
        if (!valid_model_name(m.name))
            return where + ".name: " + quote_value(m.name) +
                   " must be lowercase letters, digits, '.', '_' or '-'";
        where += " (" + m.name + ")";
        if (!names.insert(m.name).second) return where + ".name: listed twice";
        const auto &tasks = model_tasks();
        if (std::find(tasks.begin(), tasks.end(), m.task) == tasks.end())
            return where + ".task: " + quote_value(m.task) +
                   " is not one of asr, llm, tts, vad, audio-llm";
        if (m.engine.empty()) return where + ".engine: empty";
        if (m.description.empty()) return where + ".description: empty";
        if (m.description.find('\n') != std::string::npos)
            return where + ".description: must be one line";
        if (m.upstream.empty()) return where + ".upstream: empty";
        if (m.license.empty()) return where + ".license: empty";
        if (m.files.empty()) return where + ".files: no files";
        std::set<std::string> file_names;
        for (size_t j = 0; j < m.files.size(); j++) {
            const model_file &f = m.files[j];
            std::string fw = where + ".files[" + std::to_string(j) + "]";
            if (!valid_file_name(f.name))
                return fw + ".name: " + quote_value(f.name) + " must be a plain file name";
            if (!file_names.insert(f.name).second) return fw + ".name: listed twice";
            if (!valid_url(f.url))
                return fw + ".url: " + quote_value(f.url) +
                       " must be an http(s) URL or a hub path (org/repo/resolve/rev/file)";
            if (!f.sha256.empty() && !is_sha256_hex(f.sha256))
                return fw + ".sha256: must be 64 hex digits (or empty when unknown)";
            if (f.size < -1) return fw + ".size: must not be negative";
        }
    }
    std::set<std::string> profile_names;
    for (size_t i = 0; i < profiles.size(); i++) {
        const model_profile &p = profiles[i];
        std::string where = "profiles[" + std::to_string(i) + "]";
        if (!valid_model_name(p.name))
            return where + ".name: " + quote_value(p.name) + " is not a valid name";
        if (!profile_names.insert(p.name).second) return where + ".name: listed twice";
        for (auto [role, task, names] :
             {std::tuple{"asr", "asr", &p.asr}, std::tuple{"llm", "llm", &p.llm},
              std::tuple{"tts", "tts", &p.tts},
              std::tuple{"audio_llm", "audio-llm", &p.audio_llm}}) {
            for (const std::string &n : *names) {
                if (is_builtin_engine(role, n)) continue;
                const model_entry *e = find(n);
                if (!e) return where + "." + role + ": no model named " + quote_value(n);
                if (e->task != task)
                    return where + "." + role + ": " + quote_value(n) + " is a " + e->task +
                           " model";
            }
        }
    }
    if (!default_profile.empty() && !find_profile(default_profile))
        return "default_profile: no profile named " + quote_value(default_profile);
    return "";
}

const model_profile *model_manifest::find_profile(const std::string &name) const {
    for (const model_profile &p : profiles)
        if (p.name == name) return &p;
    return nullptr;
}

bool is_builtin_engine(const std::string &role, const std::string &name) {
    if (role == "asr") return name == "pocketsphinx" || name == "none";
    if (role == "tts") return name == "espeak" || name == "none";
    return false;
}

std::string parse_model_manifest(const std::string &json_text, model_manifest *out) {
    json doc;
    try {
        doc = json::parse(json_text);
    } catch (const json::exception &e) {
        // nlohmann's message carries the byte position; keep it on one line.
        std::string msg = e.what();
        std::replace(msg.begin(), msg.end(), '\n', ' ');
        return "invalid JSON: " + msg;
    }
    if (!doc.is_object()) return "must be a JSON object";
    model_manifest m;
    if (auto v = doc.find("version"); v != doc.end()) {
        if (!v->is_number_integer()) return "version: must be an integer";
        m.version = v->get<int>();
    }
    auto models = doc.find("models");
    if (models == doc.end() || !models->is_array()) return "models: must be an array";
    for (size_t i = 0; i < models->size(); i++) {
        const json &jm = (*models)[i];
        std::string where = "models[" + std::to_string(i) + "]";
        if (!jm.is_object()) return where + ": must be an object";
        model_entry e;
        for (auto [key, dest, required] :
             {std::tuple{"name", &e.name, true}, std::tuple{"task", &e.task, true},
              std::tuple{"engine", &e.engine, true},
              std::tuple{"description", &e.description, true},
              std::tuple{"upstream", &e.upstream, true}, std::tuple{"license", &e.license, true},
              std::tuple{"notes", &e.notes, false}})
            if (std::string err = get_string(jm, key, where, required, dest); !err.empty())
                return err;
        auto files = jm.find("files");
        if (files == jm.end() || !files->is_array()) return where + ".files: must be an array";
        for (size_t j = 0; j < files->size(); j++) {
            const json &jf = (*files)[j];
            std::string fw = where + ".files[" + std::to_string(j) + "]";
            if (!jf.is_object()) return fw + ": must be an object";
            model_file f;
            if (std::string err = get_string(jf, "name", fw, true, &f.name); !err.empty())
                return err;
            if (std::string err = get_string(jf, "url", fw, true, &f.url); !err.empty()) return err;
            if (std::string err = get_string(jf, "sha256", fw, false, &f.sha256); !err.empty())
                return err;
            std::transform(f.sha256.begin(), f.sha256.end(), f.sha256.begin(),
                           [](unsigned char c) { return char(std::tolower(c)); });
            if (auto s = jf.find("size"); s != jf.end() && !s->is_null()) {
                if (!s->is_number_integer() || s->get<int64_t>() < 0)
                    return fw + ".size: must be a whole number of bytes";
                f.size = s->get<int64_t>();
            }
            e.files.push_back(std::move(f));
        }
        m.models.push_back(std::move(e));
    }
    if (auto profiles = doc.find("profiles"); profiles != doc.end()) {
        if (!profiles->is_array()) return "profiles: must be an array";
        for (size_t i = 0; i < profiles->size(); i++) {
            const json &jp = (*profiles)[i];
            std::string where = "profiles[" + std::to_string(i) + "]";
            if (!jp.is_object()) return where + ": must be an object";
            model_profile p;
            if (std::string err = get_string(jp, "name", where, true, &p.name); !err.empty())
                return err;
            if (std::string err = get_string(jp, "description", where, true, &p.description);
                !err.empty())
                return err;
            for (auto [key, dest] :
                 {std::pair{"asr", &p.asr}, std::pair{"llm", &p.llm}, std::pair{"tts", &p.tts},
                  std::pair{"audio_llm", &p.audio_llm}}) {
                auto v = jp.find(key);
                if (v == jp.end()) continue;
                if (v->is_string()) {
                    dest->push_back(v->get<std::string>());
                } else if (v->is_array() && !v->empty() &&
                           std::all_of(v->begin(), v->end(),
                                       [](const json &x) { return x.is_string(); })) {
                    for (const json &x : *v)
                        dest->push_back(x.get<std::string>());
                } else {
                    return where + "." + key + ": must be a name or a non-empty list of names";
                }
            }
            if (auto v = jp.find("pull"); v != jp.end()) {
                if (!v->is_boolean()) return where + ".pull: must be true or false";
                p.pull = v->get<bool>();
            }
            m.profiles.push_back(std::move(p));
        }
    }
    if (std::string err = get_string(doc, "default_profile", "manifest", false, &m.default_profile);
        !err.empty())
        return err;
    if (std::string err = m.validate(); !err.empty()) return err;
    *out = std::move(m);
    return "";
}

std::string load_model_manifest(const std::string &path, model_manifest *out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "manifest " + path + ": cannot be read";
    std::stringstream ss;
    ss << in.rdbuf();
    if (std::string err = parse_model_manifest(ss.str(), out); !err.empty())
        return "manifest " + path + ": " + err;
    return "";
}

} // namespace parley
