// The model manager without a network: SHA-256 (FIPS 180-4 vectors), the manifest's parsing and
// validation, cache paths from the environment, and pulls served by a local mirror.
#include "models/model-cache.h"
#include "models/model-download.h"
#include "models/model-manifest.h"
#include "core/sha256.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

using namespace parley;
namespace fs = std::filesystem;

namespace {

std::string source_dir() {
    const char *src = getenv("PARLEY_SOURCE_DIR");
    return src ? src : ".";
}

env_lookup env_of(std::map<std::string, std::string> vars) {
    return [vars](const char *name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end() || it->second.empty()) return std::nullopt;
        return it->second;
    };
}

struct temp_dir {
    std::string path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "parley-models-XXXXXX").string();
        path = mkdtemp(tmpl.data());
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_file(const std::string &path, const std::string &bytes) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A manifest with one model; fields can be overridden as raw JSON.
std::string manifest_json(const std::string &file_fields,
                          const std::string &model_fields = R"("name": "m1", "task": "llm")") {
    return R"({"version": 1, "models": [{)" + model_fields +
           R"(, "engine": "llama", "description": "d", "upstream": "u", "license": "MIT",
              "files": [{)" +
           file_fields + R"(}]}]})";
}

} // namespace

// FIPS 180-4 examples (NIST CSRC "Examples with intermediate values", SHA-256).
TEST(sha256, fips_test_vectors) {
    EXPECT_EQ(sha256_hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // The 896-bit message (two blocks of padding).
    EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                         "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(sha256, pieces_of_any_size_give_the_same_digest) {
    std::string data;
    for (int i = 0; i < 3000; i++)
        data += char(i * 131 % 251);
    // Every length around the padding boundaries (55, 56, 63, 64 mod 64), fed in odd pieces.
    for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 3000}) {
        std::string whole = sha256_hex(std::string_view(data).substr(0, len));
        for (size_t piece : {1, 3, 7, 63, 64, 65, 500}) {
            sha256 h;
            for (size_t i = 0; i < len; i += piece)
                h.update(data.data() + i, std::min(piece, len - i));
            EXPECT_EQ(h.hex(), whole) << "len " << len << " piece " << piece;
        }
    }
}

TEST(sha256, files_and_hex_check) {
    temp_dir tmp;
    write_file(tmp.path + "/a", "abc");
    EXPECT_EQ(sha256_file(tmp.path + "/a"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_THROW(sha256_file(tmp.path + "/missing"), std::runtime_error);
    EXPECT_TRUE(is_sha256_hex(std::string(64, 'A')));
    EXPECT_FALSE(is_sha256_hex(std::string(63, 'a')));
    EXPECT_FALSE(is_sha256_hex(std::string(63, 'a') + "g"));
}

TEST(sha256, the_shared_test_model) {
    std::string path = source_dir() + "/../shared/models/stories260K.gguf";
    if (access(path.c_str(), R_OK) != 0) GTEST_SKIP() << "no " << path;
    EXPECT_EQ(sha256_file(path),
              "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
}

// Found by fuzzing (tests/fuzz/corpus/manifest): each was an exception or a two-line error.
TEST(model_manifest, hostile_values_get_a_one_line_error) {
    model_manifest m;
    std::string err = parse_model_manifest(R"({"version": 2.33e333333333})", &m);
    EXPECT_EQ(err.rfind("invalid JSON", 0), 0u) << err;
    err = parse_model_manifest(
        manifest_json(R"("name": "a", "url": "https://x/a\n.bin\u0007", "sha256": "")"), &m);
    EXPECT_NE(err.find(".url: 'https://x/a\\n.bin\\x07'"), std::string::npos) << err;
    EXPECT_EQ(err.find('\n'), std::string::npos);
}

TEST(model_manifest, parses_a_valid_manifest) {
    model_manifest m;
    ASSERT_EQ(parse_model_manifest(
                  manifest_json(R"("name": "a.gguf", "url": "org/repo/resolve/main/a.gguf",
        "size": 12, "sha256": ")" +
                                std::string(64, 'A') + "\""),
                  &m),
              "");
    ASSERT_EQ(m.models.size(), 1u);
    const model_entry *e = m.find("m1");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->task, "llm");
    ASSERT_EQ(e->files.size(), 1u);
    EXPECT_EQ(e->files[0].size, 12);
    EXPECT_EQ(e->files[0].sha256, std::string(64, 'a')); // lowercased
    EXPECT_EQ(e->total_size(), 12);
    EXPECT_EQ(m.find("nope"), nullptr);

    ASSERT_EQ(parse_model_manifest(
                  manifest_json(R"("name": "a", "url": "http://x/a", "sha256": "")"), &m),
              "");
    EXPECT_EQ(m.models[0].files[0].size, -1);
    EXPECT_EQ(m.models[0].total_size(), -1);
}

TEST(model_manifest, errors_name_the_entry_and_the_field) {
    struct bad_case {
        std::string json;
        std::string expect; // a piece of the error
    };
    const std::string url = R"("url": "https://h/a")";
    std::vector<bad_case> cases = {
        {"{", "invalid JSON"},
        {"[]", "must be a JSON object"},
        {R"({"models": {}})", "models: must be an array"},
        {R"({"models": []})", "models: no models"},
        {R"({"version": 2, "models": []})", "version: 2 is not supported"},
        {manifest_json(R"("name": "a", "url": "https://h/a")", R"("task": "llm")"),
         "models[0].name: missing"},
        {manifest_json(R"("name": "a", "url": "https://h/a")",
                       R"("name": "Big Name", "task": "llm")"),
         "models[0].name: 'Big Name' must be lowercase"},
        {manifest_json(R"("name": "a", "url": "https://h/a")", R"("name": "m", "task": "chat")"),
         "models[0] (m).task: 'chat' is not one of"},
        {manifest_json(R"("name": "a", "url": "https://h/a")", R"("name": "m", "task": 3)"),
         "models[0].task: must be a string"},
        {manifest_json(R"("name": "../a", "url": "https://h/a")"),
         "files[0].name: '../a' must be a plain file name"},
        {manifest_json(R"("name": ".a", "url": "https://h/a")"), "must be a plain file name"},
        {manifest_json(R"("name": "a.part", "url": "https://h/a")"), "must be a plain file name"},
        {manifest_json(R"("name": "a", "url": "ftp://h/a")"), "files[0].url: 'ftp://h/a' must be"},
        {manifest_json(R"("name": "a", "url": "just-a-name")"), "files[0].url"},
        {manifest_json(R"("name": "a", "url": "https://h/a", "sha256": "abc")"),
         "files[0].sha256: must be 64 hex"},
        {manifest_json(R"("name": "a", "url": "https://h/a", "size": -5)"),
         "files[0].size: must be a whole number"},
        {manifest_json(R"("name": "a", "url": "https://h/a", "size": "12")"), "files[0].size"},
        {R"({"models": [{"name": "m", "task": "llm", "engine": "e", "description": "d", "upstream": "u",
            "license": "l", "files": []}]})",
         "models[0] (m).files: no files"},
        {R"({"models": [{"name": "m", "task": "llm", "engine": "e", "description": "d", "upstream": "u",
            "license": "l", "files": [{"name": "a", "url": "https://h/a"}, {"name": "a", "url": "https://h/b"}]}]})",
         "files[1].name: listed twice"},
        {R"({"models": [{"name": "m", "task": "llm", "engine": "e", "description": "d", "upstream": "u",
            "license": "l", "files": [{"name": "a", "url": "https://h/a"}]},
           {"name": "m", "task": "llm", "engine": "e", "description": "d", "upstream": "u",
            "license": "l", "files": [{"name": "a", "url": "https://h/a"}]}]})",
         "models[1] (m).name: listed twice"},
        {R"({"models": [{"name": "m", "task": "llm", "engine": "", "description": "d", "upstream": "u",
            "license": "l", "files": [{"name": "a", "url": "https://h/a"}]}]})",
         "engine: empty"},
    };
    for (const auto &c : cases) {
        model_manifest m;
        std::string err = parse_model_manifest(c.json, &m);
        EXPECT_NE(err.find(c.expect), std::string::npos)
            << "json: " << c.json << "\nerror: " << err;
        EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    }
    model_manifest m;
    EXPECT_NE(load_model_manifest("/nonexistent/manifest.json", &m).find("cannot be read"),
              std::string::npos);
}

TEST(model_manifest, the_repository_manifest_is_valid_and_complete) {
    model_manifest m;
    ASSERT_EQ(load_model_manifest(source_dir() + "/models/manifest.json", &m), "");
    for (const char *name :
         {"whisper-tiny.en", "whisper-base.en", "whisper-small.en", "parakeet-tdt-0.6b-v3",
          "silero-vad-v5", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct",
          "llama-3.2-1b-instruct", "voxtral-mini-3b", "piper-en_us-lessac-medium",
          "piper-en_us-amy-low", "piper-en_gb-alan-medium", "stories260k"})
        EXPECT_NE(m.find(name), nullptr) << name;
    const model_entry *s = m.find("stories260k");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->files[0].size, 1185376);
    EXPECT_EQ(s->files[0].sha256,
              "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
    const model_entry *v = m.find("voxtral-mini-3b");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->files.size(), 2u); // the model and its audio projector
    for (const auto &e : m.models)
        if (e.engine == "piper") EXPECT_EQ(e.files.at(1).name, e.files.at(0).name + ".json");
}

TEST(model_manifest, profiles_name_models_of_their_role_or_builtin_engines) {
    auto with = [](const std::string &profiles) {
        std::string j = manifest_json(R"("name": "f.gguf", "url": "https://example.com/f.gguf")");
        j.pop_back(); // the closing brace
        return j + ", " + profiles + "}";
    };
    model_manifest m;
    ASSERT_EQ(parse_model_manifest(
                  with(R"("default_profile": "p", "profiles": [{"name": "p", "description": "d",
                      "asr": "pocketsphinx", "llm": ["m1"], "tts": ["espeak", "none"]}])"),
                  &m),
              "");
    ASSERT_NE(m.find_profile("p"), nullptr);
    EXPECT_EQ(m.default_profile, "p");
    EXPECT_EQ(m.find_profile("p")->llm, std::vector<std::string>{"m1"});
    EXPECT_EQ(m.find_profile("p")->tts.size(), 2u);
    EXPECT_TRUE(m.find_profile("p")->pull);
    EXPECT_EQ(m.find_profile("q"), nullptr);

    EXPECT_EQ(parse_model_manifest(with(R"("profiles": [{"name": "p", "description": "d",
                  "llm": "nope"}])"),
                                   &m),
              "profiles[0].llm: no model named 'nope'");
    EXPECT_EQ(parse_model_manifest(with(R"("profiles": [{"name": "p", "description": "d",
                  "asr": "m1"}])"),
                                   &m),
              "profiles[0].asr: 'm1' is a llm model");
    EXPECT_EQ(parse_model_manifest(with(R"("profiles": [{"name": "p", "description": "d",
                  "tts": "pocketsphinx"}])"),
                                   &m),
              "profiles[0].tts: no model named 'pocketsphinx'");
    EXPECT_EQ(parse_model_manifest(with(R"("profiles": [{"name": "p", "description": "d",
                  "llm": []}])"),
                                   &m),
              "profiles[0].llm: must be a name or a non-empty list of names");
    EXPECT_EQ(parse_model_manifest(with(R"("default_profile": "x", "profiles": [])"), &m),
              "default_profile: no profile named 'x'");
    EXPECT_EQ(parse_model_manifest(with(R"("profiles": [{"name": "p", "description": "d"},
                  {"name": "p", "description": "d"}])"),
                                   &m),
              "profiles[1].name: listed twice");
}

TEST(model_manifest, the_repository_profiles) {
    model_manifest m;
    ASSERT_EQ(load_model_manifest(source_dir() + "/models/manifest.json", &m), "");
    EXPECT_EQ(m.default_profile, "cpu");
    const model_profile *off = m.find_profile("offline");
    ASSERT_NE(off, nullptr);
    EXPECT_FALSE(off->pull); // the offline profile never downloads
    EXPECT_EQ(off->asr, std::vector<std::string>{"pocketsphinx"});
    EXPECT_EQ(off->llm.back(), "stories260k");
    const model_profile *cpu = m.find_profile("cpu");
    ASSERT_NE(cpu, nullptr);
    EXPECT_EQ(cpu->asr, std::vector<std::string>{"whisper-base.en"});
    const model_profile *vox = m.find_profile("voxtral");
    ASSERT_NE(vox, nullptr);
    EXPECT_EQ(vox->audio_llm, std::vector<std::string>{"voxtral-mini-3b"});
    EXPECT_TRUE(vox->asr.empty() && vox->llm.empty());
}

TEST(model_cache, settings_from_the_environment) {
    model_settings s = model_settings_from_env(env_of({{"HOME", "/home/u"}}), "");
    EXPECT_EQ(s.cache_dir, "/home/u/.cache/parley/models");
    EXPECT_EQ(s.hub, "https://huggingface.co");
    EXPECT_TRUE(s.mirrors.empty());
    EXPECT_EQ(s.manifest_path, "");

    s = model_settings_from_env(env_of({{"HOME", "/home/u"}, {"XDG_CACHE_HOME", "/xdg/"}}), "");
    EXPECT_EQ(s.cache_dir, "/xdg/parley/models");
    // A relative XDG_CACHE_HOME is invalid by the spec and ignored.
    s = model_settings_from_env(env_of({{"HOME", "/home/u"}, {"XDG_CACHE_HOME", "rel"}}), "");
    EXPECT_EQ(s.cache_dir, "/home/u/.cache/parley/models");

    s = model_settings_from_env(env_of({{"HOME", "/home/u"},
                                        {"XDG_CACHE_HOME", "/xdg"},
                                        {"PARLEY_MODELS", "/models/"},
                                        {"PARLEY_MODEL_MIRROR", "/m1/:/m2::"},
                                        {"PARLEY_MANIFEST", "/etc/m.json"},
                                        {"HF_ENDPOINT", "http://127.0.0.1:9/"},
                                        {"HF_TOKEN", "hf_x"}}),
                                "");
    EXPECT_EQ(s.cache_dir, "/models");
    EXPECT_EQ(s.mirrors, (std::vector<std::string>{"/m1", "/m2"}));
    EXPECT_EQ(s.manifest_path, "/etc/m.json");
    EXPECT_EQ(s.hub, "http://127.0.0.1:9");
    EXPECT_EQ(s.token, "hf_x");

    // The default manifest sits at <exe dir>/../models/manifest.json (build-x/parley).
    s = model_settings_from_env(env_of({{"HOME", "/h"}}), source_dir() + "/build-x");
    EXPECT_EQ(fs::path(s.manifest_path),
              (fs::path(source_dir()) / "models/manifest.json").lexically_normal());
}

TEST(model_cache, paths_and_hub_urls) {
    model_settings s;
    s.cache_dir = "/c";
    s.hub = "http://127.0.0.1:8080";
    model_cache cache(s);
    model_entry m;
    m.name = "m1";
    model_file f{"a.gguf", "https://huggingface.co/org/repo/resolve/main/a.gguf", -1, ""};
    m.files = {f};
    EXPECT_EQ(cache.model_dir(m), "/c/m1");
    EXPECT_EQ(cache.main_path(m), "/c/m1/a.gguf");
    EXPECT_EQ(cache.resolve_url(f), "http://127.0.0.1:8080/org/repo/resolve/main/a.gguf");
    f.url = "org/repo/resolve/main/a.gguf";
    EXPECT_EQ(cache.resolve_url(f), "http://127.0.0.1:8080/org/repo/resolve/main/a.gguf");
    f.url = "https://cdn.example.org/a.gguf";
    EXPECT_EQ(cache.resolve_url(f), "https://cdn.example.org/a.gguf");
    EXPECT_TRUE(cache.on_hub("http://127.0.0.1:8080/org/x"));
    EXPECT_FALSE(cache.on_hub("https://cdn.example.org/a.gguf"));
    EXPECT_FALSE(cache.on_hub("http://127.0.0.1:8080.evil/x"));
}

TEST(model_cache, mirror_hit_is_verified_and_pulled_without_network) {
    temp_dir tmp;
    std::string bytes = "model bytes\n";
    write_file(tmp.path + "/mirror/a.gguf", bytes);
    write_file(tmp.path + "/mirror/b.json", "{}");
    model_settings s;
    s.cache_dir = tmp.path + "/cache";
    s.mirrors = {tmp.path + "/empty", tmp.path + "/mirror"};
    s.hub = "http://127.0.0.1:1"; // nothing listens: a network attempt would fail the pull
    model_cache cache(s);
    model_entry m;
    m.name = "m1";
    m.files = {{"a.gguf", "org/r/resolve/main/a.gguf", int64_t(bytes.size()), sha256_hex(bytes)},
               {"b.json", "org/r/resolve/main/b.json", -1, ""}};
    EXPECT_EQ(cache.state(m), MODEL_STATE_ABSENT);

    std::string note;
    EXPECT_EQ(cache.from_mirror(m, m.files[0], &note), MIRROR_HIT);
    EXPECT_NE(note.find("sha256 ok"), std::string::npos) << note;
    EXPECT_EQ(read_file(cache.main_path(m)), bytes);
    EXPECT_EQ(cache.state(m), MODEL_STATE_PARTIAL);

    cache.pull(m, nullptr); // b.json from the mirror too (no checksum known)
    EXPECT_EQ(cache.state(m), MODEL_STATE_PULLED);
    EXPECT_EQ(read_file(cache.file_path(m, m.files[1])), "{}");
    EXPECT_EQ(cache.bytes_on_disk(m), int64_t(bytes.size() + 2));
    EXPECT_FALSE(fs::exists(cache.main_path(m) + ".mirror"));

    EXPECT_TRUE(cache.remove(m));
    EXPECT_EQ(cache.state(m), MODEL_STATE_ABSENT);
    EXPECT_FALSE(fs::exists(cache.model_dir(m)));
    EXPECT_FALSE(cache.remove(m));
}

TEST(model_cache, mirror_mismatch_is_refused) {
    temp_dir tmp;
    write_file(tmp.path + "/mirror/a.gguf", "tampered");
    model_settings s;
    s.cache_dir = tmp.path + "/cache";
    s.mirrors = {tmp.path + "/mirror"};
    s.hub = "http://127.0.0.1:1";
    model_cache cache(s);
    model_entry m;
    m.name = "m1";
    m.files = {{"a.gguf", "org/r/resolve/main/a.gguf", -1, sha256_hex("the real bytes")}};

    std::string note;
    EXPECT_EQ(cache.from_mirror(m, m.files[0], &note), MIRROR_MISMATCH);
    EXPECT_NE(note.find("sha256 " + sha256_hex("tampered")), std::string::npos) << note;
    EXPECT_FALSE(fs::exists(cache.main_path(m)));

    // A wrong size is refused without hashing.
    m.files[0].size = 3;
    EXPECT_EQ(cache.from_mirror(m, m.files[0], &note), MIRROR_MISMATCH);
    EXPECT_NE(note.find("expected 3"), std::string::npos) << note;

    // pull then goes to the network, which is not there: a one-line offline error, exit code 1,
    // and nothing left in the cache.
    m.files[0].size = -1;
    try {
        cache.pull(m, nullptr);
        FAIL() << "pull should have failed";
    } catch (const model_error &e) {
        EXPECT_EQ(e.exit_code, 1);
        std::string what = e.what();
        EXPECT_NE(what.find("cannot reach"), std::string::npos) << what;
        EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
    EXPECT_EQ(cache.state(m), MODEL_STATE_ABSENT);
    EXPECT_FALSE(fs::exists(cache.model_dir(m)));
}

TEST(model_download, byte_counts_read_well) {
    EXPECT_EQ(format_bytes(12), "12 B");
    EXPECT_EQ(format_bytes(1536), "1.50 KiB");
    EXPECT_EQ(format_bytes(1185376), "1.13 MiB");
    EXPECT_EQ(format_bytes(487614201), "465 MiB");
}
