#include "models/model-cache.h"

#include "models/model-download.h"
#include "core/sha256.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace parley {

namespace fs = std::filesystem;

namespace {

std::string strip_trailing_slashes(std::string s) {
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    return s;
}

bool is_file(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t file_size(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 ? int64_t(st.st_size) : -1;
}

void say(FILE *log, const std::string &line) {
    if (log) fprintf(log, "parley: models: %s\n", line.c_str());
}

// Copies src to dst (a fresh file), returning "" or why not.
std::string copy_file(const std::string &src, const std::string &dst) {
    std::error_code ec;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) return ec.message();
    return "";
}

} // namespace

env_lookup process_env() {
    return [](const char *name) -> std::optional<std::string> {
        const char *v = getenv(name);
        if (!v || !*v) return std::nullopt;
        return std::string(v);
    };
}

std::string executable_dir() {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) return "";
    buf[n] = 0;
    return fs::path(buf).parent_path().string();
}

model_settings model_settings_from_env(const env_lookup &env, const std::string &exe_dir) {
    model_settings s;
    if (auto v = env("PARLEY_MANIFEST")) {
        s.manifest_path = *v;
    } else if (!exe_dir.empty()) {
        // Next to a build folder (build/parley -> models/manifest.json), or installed.
        for (const char *rel :
             {"/../models/manifest.json", "/../share/parley/models/manifest.json"}) {
            std::string p = fs::path(exe_dir + rel).lexically_normal().string();
            if (is_file(p)) {
                s.manifest_path = p;
                break;
            }
        }
    }
    if (auto v = env("PARLEY_MODELS"))
        s.cache_dir = strip_trailing_slashes(*v);
    else if (auto xdg = env("XDG_CACHE_HOME"); xdg && (*xdg)[0] == '/')
        s.cache_dir = strip_trailing_slashes(*xdg) + "/parley/models";
    else if (auto home = env("HOME"))
        s.cache_dir = strip_trailing_slashes(*home) + "/.cache/parley/models";
    else
        s.cache_dir = ".cache/parley/models";
    if (auto v = env("PARLEY_MODEL_MIRROR")) {
        size_t start = 0;
        while (start <= v->size()) {
            size_t colon = v->find(':', start);
            std::string dir =
                v->substr(start, colon == std::string::npos ? std::string::npos : colon - start);
            if (!dir.empty()) s.mirrors.push_back(strip_trailing_slashes(dir));
            if (colon == std::string::npos) break;
            start = colon + 1;
        }
    }
    if (auto v = env("HF_ENDPOINT")) s.hub = strip_trailing_slashes(*v);
    if (auto v = env("HF_TOKEN")) s.token = *v;
    return s;
}

std::string model_cache::model_dir(const model_entry &m) const {
    return settings_.cache_dir + "/" + m.name;
}

std::string model_cache::file_path(const model_entry &m, const model_file &f) const {
    return model_dir(m) + "/" + f.name;
}

std::string model_cache::resolve_url(const model_file &f) const {
    const std::string hub_prefix = std::string(DEFAULT_MODEL_HUB) + "/";
    if (f.url.rfind(hub_prefix, 0) == 0)
        return settings_.hub + "/" + f.url.substr(hub_prefix.size());
    if (f.url.rfind("http://", 0) == 0 || f.url.rfind("https://", 0) == 0) return f.url;
    return settings_.hub + "/" + f.url;
}

bool model_cache::on_hub(const std::string &url) const {
    return url.rfind(settings_.hub + "/", 0) == 0;
}

model_state model_cache::state(const model_entry &m) const {
    size_t present = 0;
    bool partial = false;
    for (const auto &f : m.files) {
        std::string p = file_path(m, f);
        if (is_file(p))
            present++;
        else if (is_file(p + ".part"))
            partial = true;
    }
    if (present == m.files.size()) return MODEL_STATE_PULLED;
    return present > 0 || partial ? MODEL_STATE_PARTIAL : MODEL_STATE_ABSENT;
}

int64_t model_cache::bytes_on_disk(const model_entry &m) const {
    int64_t total = 0;
    for (const auto &f : m.files) {
        std::string p = file_path(m, f);
        if (int64_t n = file_size(p); n > 0) total += n;
        if (int64_t n = file_size(p + ".part"); n > 0) total += n;
    }
    return total;
}

mirror_result model_cache::from_mirror(const model_entry &m, const model_file &f,
                                       std::string *note) const {
    for (const auto &dir : settings_.mirrors) {
        std::string src = dir + "/" + f.name;
        if (!is_file(src)) continue;
        int64_t size = file_size(src);
        if (f.size >= 0 && size != f.size) {
            *note =
                src + ": " + std::to_string(size) + " bytes, expected " + std::to_string(f.size);
            return MIRROR_MISMATCH;
        }
        std::string got;
        if (!f.sha256.empty()) {
            try {
                got = sha256_file(src);
            } catch (const std::exception &e) {
                *note = e.what();
                return MIRROR_MISMATCH;
            }
            if (got != f.sha256) {
                *note = src + ": sha256 " + got + ", expected " + f.sha256;
                return MIRROR_MISMATCH;
            }
        }
        std::string dst = file_path(m, f);
        std::string tmp = dst + ".mirror";
        std::error_code ec;
        fs::create_directories(model_dir(m), ec);
        if (ec) throw model_error("cannot create " + model_dir(m) + ": " + ec.message(), 1);
        unlink(tmp.c_str());
        // A hard link costs nothing; across file systems it is a copy, checked again.
        bool linked = link(src.c_str(), tmp.c_str()) == 0;
        if (!linked) {
            if (std::string err = copy_file(src, tmp); !err.empty()) {
                unlink(tmp.c_str());
                throw model_error(f.name + ": cannot copy " + src + " into the cache: " + err, 1);
            }
            if (!f.sha256.empty() && sha256_file(tmp) != f.sha256) {
                unlink(tmp.c_str());
                throw model_error(f.name + ": the copy from " + src + " does not match its sha256",
                                  1);
            }
        }
        if (rename(tmp.c_str(), dst.c_str()) != 0) {
            int err = errno;
            unlink(tmp.c_str());
            throw model_error(f.name + ": cannot rename into " + dst + ": " + strerror(err), 1);
        }
        *note = std::string(linked ? "linked" : "copied") + " from the mirror " + src +
                (f.sha256.empty() ? " (no checksum known, not verified)" : " (sha256 ok)");
        return MIRROR_HIT;
    }
    return MIRROR_MISS;
}

void model_cache::pull(const model_entry &m, FILE *log) const {
    std::error_code ec;
    fs::create_directories(model_dir(m), ec);
    if (ec) throw model_error("cannot create " + model_dir(m) + ": " + ec.message(), 1);
    for (const auto &f : m.files) {
        std::string dst = file_path(m, f);
        if (is_file(dst)) {
            int64_t size = file_size(dst);
            if (f.size < 0 || size == f.size) {
                say(log, f.name + ": already in the cache");
                continue;
            }
            say(log, f.name + ": " + std::to_string(size) + " bytes in the cache, expected " +
                         std::to_string(f.size) + "; fetching it again");
            unlink(dst.c_str());
        }
        std::string note;
        mirror_result mr = from_mirror(m, f, &note);
        if (mr == MIRROR_HIT) {
            say(log, f.name + ": " + note);
            continue;
        }
        if (mr == MIRROR_MISMATCH) say(log, f.name + ": ignoring the mirror's copy: " + note);

        download_request req;
        req.url = resolve_url(f);
        req.dest = dst;
        req.label = f.name;
        req.sha256 = f.sha256;
        req.size = f.size;
        if (on_hub(req.url)) req.bearer_token = settings_.token;
        req.progress_bar = settings_.progress_bar;
        req.progress_out = log;
        download_result r = download_file(req);
        if (r.status == DOWNLOAD_OK) continue;
        // Leave no empty model folder behind after a failed first file.
        fs::remove(model_dir(m), ec); // only removes it when empty
        std::string msg = r.error;
        if (r.status == DOWNLOAD_OFFLINE)
            msg += settings_.mirrors.empty()
                       ? "; PARLEY_MODEL_MIRROR=DIR takes files from a local folder"
                       : "; the mirror (PARLEY_MODEL_MIRROR) has no good copy either";
        throw model_error(msg, 1);
    }
}

bool model_cache::remove(const model_entry &m) const {
    std::error_code ec;
    std::string dir = model_dir(m);
    if (!fs::exists(dir, ec)) return false;
    fs::remove_all(dir, ec);
    if (ec) throw model_error("cannot delete " + dir + ": " + ec.message(), 1);
    return true;
}

} // namespace parley
