#include "app/config.h"

#include "core/option-table.h"
#include "net/access.h"
#include "store/store.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

namespace parley {

using json = nlohmann::json;

namespace {

// Every setting of the serve, chat, transcribe and say commands: the app's own, then each part's.
option_table app_options(app_config &c) {
    option_table t;
    t.group("General");
    t.add_string("profile", c.profile, "NAME",
                 "a set of engines from the model manifest: offline, cpu, voxtral (missing models "
                 "are pulled; offline engines stand in when they can't be; flags override single "
                 "engines)");
    t.add_string("db", c.db_path, "FILE", "conversation store");
    t.add_switch("db-recover", c.db_recover,
                 "when the store cannot be used (not a database, a newer schema), move it aside "
                 "(FILE.corrupt-TIME) and start a new one, saying so; without it the server "
                 "refuses to start");
    t.add_string("store", c.store_url, "URL",
                 "a PostgreSQL store that several Parley nodes share: "
                 "postgresql://USER@HOST[:PORT]/DATABASE (a password in PGPASSWORD or ~/.pgpass, "
                 "not in the URL); without it, the SQLite file of --db");
    t.last().check = [&c]() -> std::string {
        if (c.store_url.empty() || is_postgres_url(c.store_url)) return {};
        return "--store takes a postgresql:// URL (an SQLite file is --db FILE)";
    };
    t.add_choice("log-level", c.log_level, {"debug", "info", "warn", "error"}, "log detail");
    option_spec verbose;
    verbose.name = "verbose";
    verbose.help = "debug log, engine logs too";
    verbose.set = [&c](const std::string &v) -> std::string {
        if (v == "true") {
            c.llm.verbose = true;
            c.log_level = "debug";
        }
        return {};
    };
    t.add(std::move(verbose));
    t.add_string("output", c.wav_out, "FILE.wav",
                 "chat: save the spoken replies here; say: the output file");
    t.last().aliases = "-o,--wav";
    register_server_options(t, c.server);
    register_llm_options(t, c.llm);
    register_session_options(t, c.session);
    register_asr_options(t, c.asr);
    register_tts_options(t, c.tts, c.session.tts);
    return t;
}

// A config file's settings as (name, values): JSON objects (keys as the flags, with dashes or
// underscores; an array gives a repeatable option several values).
std::string json_settings(const std::string &text,
                          std::vector<std::pair<std::string, std::vector<std::string>>> *out) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return "config file is not a JSON object";
    for (auto &[k, v] : j.items()) {
        std::string key = k;
        std::replace(key.begin(), key.end(), '_', '-');
        std::vector<json> values =
            v.is_array() ? std::vector<json>(v.begin(), v.end()) : std::vector<json>{v};
        std::vector<std::string> texts;
        for (const json &x : values) {
            if (x.is_boolean())
                texts.push_back(x.get<bool>() ? "true" : "false");
            else if (x.is_string())
                texts.push_back(x.get<std::string>());
            else if (x.is_number())
                texts.push_back(x.dump());
            else
                return "config key " + k + " has an unsupported value";
        }
        out->emplace_back(key, std::move(texts));
    }
    return {};
}

// CLI11's config reader for Parley's files: JSON (an object) or TOML.
class config_file_format : public CLI::ConfigTOML {
  public:
    std::vector<CLI::ConfigItem> from_config(std::istream &input) const override {
        std::string text((std::istreambuf_iterator<char>(input)), std::istreambuf_iterator<char>());
        size_t first = text.find_first_not_of(" \t\r\n");
        if (first == std::string::npos || text[first] != '{') {
            std::istringstream toml(text);
            std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(toml);
            for (CLI::ConfigItem &item : items) // keys with underscores, as in JSON files
                std::replace(item.name.begin(), item.name.end(), '_', '-');
            return items;
        }
        std::vector<std::pair<std::string, std::vector<std::string>>> settings;
        if (std::string err = json_settings(text, &settings); !err.empty())
            throw CLI::ConversionError(err);
        std::vector<CLI::ConfigItem> items;
        for (auto &[name, values] : settings) {
            CLI::ConfigItem item;
            item.name = name;
            item.inputs = values;
            items.push_back(std::move(item));
        }
        return items;
    }
};

// The table's options on a CLI11 app; `given` collects the names set.
void add_options(CLI::App &app, const option_table &table, std::set<std::string> *given) {
    for (const option_spec &spec : table.options()) {
        std::string flags = "--" + spec.name + (spec.aliases.empty() ? "" : "," + spec.aliases);
        auto apply = [spec, given](const std::string &v) {
            given->insert(spec.name);
            if (std::string err = spec.set(v); !err.empty()) throw CLI::ValidationError(err);
        };
        CLI::Option *o;
        if (spec.value.empty()) {
            o = app.add_flag_function(
                flags, [apply](std::int64_t n) { apply(n > 0 ? "true" : "false"); }, spec.help);
            o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
        } else if (spec.repeatable) {
            o = app.add_option_function<std::vector<std::string>>(
                flags,
                [apply](const std::vector<std::string> &vs) {
                    for (const std::string &v : vs)
                        apply(v);
                },
                spec.help);
            o->type_name(spec.value)
                ->expected(1)
                ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
        } else {
            o = app.add_option_function<std::string>(flags, apply, spec.help);
            o->type_name(spec.value)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
            if (!spec.fallback.empty()) o->default_str(spec.fallback);
        }
        o->group(spec.group)->envname(option_env_name(spec.name));
    }
}

} // namespace

std::string app_config::validate() const {
    // Every option's own limits (the table's checks read a copy: validate() changes nothing).
    app_config copy = *this;
    option_table table = app_options(copy);
    for (const option_spec &spec : table.options())
        if (spec.check)
            if (std::string err = spec.check(); !err.empty()) return err;
    // What depends on more than one setting.
    if (!is_loopback(server.host) && server.api_key.empty())
        return "listening on " + server.host +
               " needs an API key (--api-key KEY); "
               "loopback addresses need none";
    if (session.max_tokens >= llm.context) return "max-tokens must be smaller than ctx";
    if (tts.engine == "piper" && tts.model_path.empty())
        return "tts piper needs a voice: --tts-model VOICE.onnx";
    if (!llm.rpc.empty()) {
        std::string err;
        if (parse_rpc_endpoints(llm.rpc, &err).empty()) return err;
        if (llm.model_path.empty()) return "--rpc needs the model (--model FILE.gguf)";
    }
    if (!store_url.empty() && db_recover)
        return "--db-recover moves an SQLite file aside; a PostgreSQL store (--store) is never "
               "moved";
    if (!asr.url.empty() && (asr.engine == "audio-llm" || session.direct_audio))
        return "--asr-url and the audio-llm recogniser both transcribe: give one";
    if (llm.remote_shared && llm.urls.empty())
        return "--llm-shared is about --llm-url servers: give them";
    if (!llm.urls.empty() && !llm.model_path.empty())
        return "--llm-url and --model both name a language model: give one";
    if (!llm.urls.empty() && (session.direct_audio || asr.engine == "audio-llm"))
        return "a remote language model (--llm-url) takes text: it cannot hear the audio";
    if (session.direct_audio && (llm.model_path.empty() || llm.mmproj_path.empty()))
        return "voice-mode direct needs --model and --mmproj (the model's audio projector)";
    if (asr.engine == "audio-llm" && (llm.model_path.empty() || llm.mmproj_path.empty()))
        return "asr audio-llm needs --model and --mmproj (the model's audio projector)";
    if ((asr.engine == "whisper" || asr.engine == "parakeet") && asr.model_path.empty())
        return "asr " + asr.engine + " needs a model: --asr-model FILE";
    if (std::string err = session.vad.validate(); !err.empty()) return "vad: " + err;
    return {};
}

std::string app_config::to_string() const {
    std::ostringstream o;
    o << "host=" << server.host << " port=" << server.port
      << " model=" << (llm.model_path.empty() ? "-" : llm.model_path) << " ctx=" << llm.context
      << " slots=" << llm.slots << " asr=" << asr.engine << " tts=" << tts.engine
      << " voice=" << session.tts.voice
      << (store_url.empty() ? " db=" + db_path : " store=" + redact_url(store_url));
    return o.str();
}

std::string apply_config_json(app_config &cfg, const std::string &text) {
    std::vector<std::pair<std::string, std::vector<std::string>>> settings;
    if (std::string err = json_settings(text, &settings); !err.empty()) return err;
    option_table table = app_options(cfg);
    for (auto &[name, values] : settings) {
        const option_spec *spec = table.find(name);
        if (!spec) return "config: unknown option --" + name;
        if (values.size() > 1 && !spec->repeatable)
            return "config key " + name + " takes one value";
        for (const std::string &v : values) {
            if (spec->value.empty() && v != "true" && v != "false")
                return "config key " + name + " is a switch (true or false)";
            cfg.given.insert(name);
            if (std::string err = spec->set(v); !err.empty()) return "config: " + err;
        }
    }
    return {};
}

std::string parse_args(app_config &cfg, const std::vector<std::string> &args,
                       std::vector<std::string> *positional, const std::string &command,
                       std::string *help) {
    option_table table = app_options(cfg);
    CLI::App app(command_description(command), command.empty() ? "parley" : "parley " + command);
    app.get_formatter()->column_width(32);
    add_options(app, table, &cfg.given);
    app.config_formatter(std::make_shared<config_file_format>());
    app.set_config("--config", "", "settings file: JSON (an object) or TOML, keys as the flags");
    app.allow_config_extras(CLI::config_extras_mode::error);
    std::vector<std::string> rest;
    app.add_option("args", rest, "the command's arguments")->group("");
    // The environment's settings go in as flags before the command line's, so that a flag wins
    // over a variable (the last of a repeated flag wins) and a variable over the config file
    // (which only fills options no flag gave).
    std::vector<std::string> all;
    for (const option_spec &spec : table.options())
        if (const char *v = std::getenv(option_env_name(spec.name).c_str()))
            all.push_back("--" + spec.name + "=" + v);
    all.insert(all.end(), args.begin(), args.end());
    std::vector<std::string> reversed(all.rbegin(), all.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp &) {
        if (help) *help = app.help();
        return {};
    } catch (const CLI::ParseError &e) {
        return e.what();
    }
    if (positional) positional->insert(positional->end(), rest.begin(), rest.end());
    return {};
}

std::string command_description(const std::string &command) {
    if (command == "serve") return "Start the voice server (http://127.0.0.1:8000 by default).";
    if (command == "chat")
        return "A typed conversation in the terminal (-o FILE saves the speech).";
    if (command == "transcribe")
        return "Print the transcript of an audio file (WAV, FLAC, Ogg, MP3).";
    if (command == "say") return "Speak text into a WAV file: say \"TEXT\" -o OUT.wav";
    return "Parley: a real-time voice assistant server.";
}

std::string usage() {
    return R"(usage: parley COMMAND [options]

commands:
  serve                   start the server (http://127.0.0.1:8000 by default)
  chat                    typed conversation in the terminal (--wav FILE saves the speech)
  transcribe FILE         print the transcript of an audio file (WAV, FLAC, Ogg, MP3)
  say "TEXT" -o OUT.wav   speak text into a WAV file
  models list|show|pull|path|rm   the model manager (parley models --help)
  bench [--help]          simulated voice clients against a real server: latency per stage,
                          CPU, memory, HTML report
  bench engines [--help]  Parley's engines against the bare tools on the same inputs
  rpc-worker [--help]     serve this machine's CPU to a model's layers (serve --rpc)

Every command answers --help with its options. serve, chat, transcribe and say share the
settings: each is a flag (--port 9000), a key of a --config FILE (JSON or TOML), and an
environment variable (PARLEY_PORT=9000); flags win over the environment, which wins over the
file. `parley serve --help` lists them all.
)";
}

} // namespace parley
