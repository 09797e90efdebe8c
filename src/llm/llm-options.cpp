// The language model's settings in the option table.
#include "core/option-table.h"
#include "llm/llm.h"

#include <cctype>

namespace parley {

bool split_host_port(const std::string &e, std::string *host, std::string *port) {
    size_t colon = e.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == e.size()) return false;
    *host = e.substr(0, colon);
    *port = e.substr(colon + 1);
    if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
    for (char c : *port)
        if (c < '0' || c > '9') return false;
    if (port->size() > 5 || std::stoi(*port) < 1 || std::stoi(*port) > 65535) return false;
    for (char c : *host)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':'))
            return false;
    return !host->empty() && host->size() <= 253;
}

std::vector<std::string> parse_rpc_endpoints(const std::string &list, std::string *error) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= list.size()) {
        size_t comma = list.find(',', at);
        std::string e =
            list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        std::string host, port;
        if (!split_host_port(e, &host, &port)) {
            *error = "rpc: '" + e.substr(0, 64) + "' is not HOST:PORT";
            return {};
        }
        out.push_back(e);
        if (comma == std::string::npos) break;
        at = comma + 1;
    }
    if (out.size() > 16) {
        *error = "rpc: at most 16 workers";
        return {};
    }
    return out;
}

void register_llm_options(option_table &t, llm_config &c) {
    t.group("Language model");
    t.add_string("model", c.model_path, "FILE.gguf", "language model (none: transcription only)");
    t.add_int("ctx", c.context, 64, 1 << 20, "N",
              "context tokens per session (capped at the model's)", "64..1048576 tokens");
    t.add_int("slots", c.slots, 1, 64, "N", "sessions with their own KV cache");
    t.add_int("threads", c.threads, 0, 256, "N",
              "LLM generation threads (0: all cores; half for a model under 100M parameters)",
              "0 (auto)..256");
    t.add_int("threads-batch", c.threads_batch, 0, 256, "N", "LLM prompt threads (0: all cores)",
              "0 (auto)..256");
    t.add_enum<llm_flash_attn>(
        "flash-attn", c.flash_attn,
        {{"auto", LLM_FLASH_ATTN_AUTO}, {"on", LLM_FLASH_ATTN_ON}, {"off", LLM_FLASH_ATTN_OFF}},
        "LLM flash attention (auto: llama.cpp's choice, off for attention heads under 32 wide, "
        "where it is slower)");
    t.add_string("mmproj", c.mmproj_path, "FILE.gguf",
                 "the model's audio projector (Voxtral, Ultravox...): with --asr audio-llm the "
                 "language model hears the user itself");
    t.add_string("chat-template", c.chat_template, "NAME",
                 "llama.cpp template name, a Jinja file (FILE.jinja), or \"plain\" (default: the "
                 "model's own)");
    t.add_string("rpc", c.rpc, "HOST:PORT,...",
                 "put the model's layers on these workers (parley rpc-worker on each machine; "
                 "llama.cpp's RPC backend)");
    t.add_list("llm-url", c.urls, "URL",
               "an OpenAI-compatible server for the replies instead of --model (llama-server, "
               "vLLM, another Parley: http://HOST:PORT); repeat for a pool");
    t.add_string("llm-api-key", c.api_key, "KEY",
                 "bearer token for --llm-url (a flag shows in ps: PARLEY_LLM_API_KEY keeps it "
                 "out)");
    t.add_string("llm-model", c.remote_model, "NAME", "model name sent to --llm-url");
    t.add_int("llm-timeout", c.remote_timeout_s, 1, 3600, "S",
              "a --llm-url request that gets nothing for this long fails", "1..3600 seconds");
    t.add_switch("llm-shared", c.remote_shared,
                 "other Parley nodes use the same --llm-url servers: send no slot of the server "
                 "(id_slot) with a request; the server picks the slot that has the conversation "
                 "cached (without it, each session keeps one slot of each llama-server, as only "
                 "one node may)");
    t.add_switch("no-warmup", c.warmup, "skip the model's warm-up run at start", false);
}

} // namespace parley
