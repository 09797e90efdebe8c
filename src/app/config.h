// Parley's settings: one struct with its defaults, filled from a JSON config file and the
// command line (flags win), checked by validate(). Used by main, the server and the tests.
#pragma once

#include "asr/asr.h"
#include "llm/llm.h"
#include "net/server.h"
#include "pipeline/session.h"
#include "tts/tts.h"

#include <set>
#include <string>
#include <vector>

namespace parley {

struct app_config {
    server_options server;
    llm_config llm;
    asr_config asr;
    tts_config tts;
    session_config session;
    std::string db_path = "data/parley.db";
    bool db_recover = false; // a database that cannot be used is moved aside, not refused
    std::string store_url;   // a PostgreSQL URL: the store several nodes share (else db_path)
    std::string log_level = "info";
    std::string wav_out;         // chat: write the spoken replies here; say: output file
    std::string profile;         // a profile of the model manifest (empty: the flags alone decide)
    std::set<std::string> given; // options set by the config file or the command line

    // Where the conversations are kept: store_url, or else db_path.
    const std::string &store_where() const { return store_url.empty() ? db_path : store_url; }
    // Empty when valid; otherwise one readable line.
    std::string validate() const;
    std::string to_string() const;
};

// Applies the settings of a command line ("--port 9000", "--port=9000"), of the environment
// (PARLEY_PORT=9000) and of a "--config FILE" (JSON or TOML), in that order of precedence, each
// declared once in the option table. Arguments that are not flags go to positional. With
// --help, fills *help with the command's help (when help is given) and returns empty. Returns
// an error line, or empty.
std::string parse_args(app_config &cfg, const std::vector<std::string> &args,
                       std::vector<std::string> *positional, const std::string &command = {},
                       std::string *help = nullptr);

// Applies a JSON object of settings (keys as the flags, with dashes or underscores).
std::string apply_config_json(app_config &cfg, const std::string &json_text);

// One line on what a command does (serve, chat, transcribe, say).
std::string command_description(const std::string &command);

std::string usage();

} // namespace parley
