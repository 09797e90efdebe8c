#include "app/config.h"
#include "llm/llm.h"
#include "net/access.h"

#include <gtest/gtest.h>

using namespace parley;

TEST(config, defaults_are_valid_and_loopback) {
    app_config c;
    EXPECT_EQ(c.validate(), "");
    EXPECT_EQ(c.server.host, "127.0.0.1");
    EXPECT_EQ(c.server.port, 8000);
}

TEST(config, flags_override_and_validate) {
    app_config c;
    std::vector<std::string> pos;
    EXPECT_EQ(parse_args(c,
                         {"--port", "9001", "--model=m.gguf", "--temperature", "0.2", "file.wav"},
                         &pos),
              "");
    EXPECT_EQ(c.server.port, 9001);
    EXPECT_EQ(c.llm.model_path, "m.gguf");
    EXPECT_FLOAT_EQ(c.session.sampling.temperature, 0.2f);
    ASSERT_EQ(pos.size(), 1u);
    EXPECT_EQ(pos[0], "file.wav");
}

TEST(config, bad_values_are_reported) {
    app_config c;
    EXPECT_NE(parse_args(c, {"--port", "abc"}, nullptr), "");
    EXPECT_NE(parse_args(c, {"--bogus", "1"}, nullptr), "");
    EXPECT_NE(parse_args(c, {"--port"}, nullptr), "");

    app_config d;
    d.server.host = "0.0.0.0";
    EXPECT_NE(d.validate().find("API key"), std::string::npos);
    d.server.api_key = "k";
    EXPECT_EQ(d.validate(), "");

    app_config e;
    e.server.port = 70000;
    EXPECT_NE(e.validate(), "");
    app_config f;
    f.session.sampling.top_p = 0;
    EXPECT_NE(f.validate(), "");
    app_config g;
    g.tts.engine = "festival";
    EXPECT_NE(g.validate(), "");
    app_config h;
    h.session.max_tokens = 4000;
    h.llm.context = 2048;
    EXPECT_NE(h.validate(), "");
}

TEST(config, json_file_keys_match_flags) {
    app_config c;
    EXPECT_EQ(
        apply_config_json(
            c,
            R"({"port": 8123, "voice": "en-gb", "allow_origin": ["http://a", "http://b"], "verbose": true})"),
        "");
    EXPECT_EQ(c.server.port, 8123);
    EXPECT_EQ(c.session.tts.voice, "en-gb");
    EXPECT_EQ(c.server.allowed_origins.size(), 2u);
    EXPECT_TRUE(c.llm.verbose);
    EXPECT_NE(apply_config_json(c, "[1]"), "");
    EXPECT_NE(apply_config_json(c, R"({"port": "x"})"), "");
}

TEST(config, loopback_detection) {
    EXPECT_TRUE(is_loopback("127.0.0.1"));
    EXPECT_TRUE(is_loopback("localhost"));
    EXPECT_TRUE(is_loopback("::1"));
    EXPECT_FALSE(is_loopback("0.0.0.0"));
    EXPECT_FALSE(is_loopback("192.168.1.2"));
}

// Every thread option the help lists is accepted (--threads-batch once was not).
TEST(config, llm_thread_options_parse) {
    app_config c;
    EXPECT_EQ(parse_args(c, {"--threads", "1", "--threads-batch", "2"}, nullptr), "");
    EXPECT_EQ(c.llm.threads, 1);
    EXPECT_EQ(c.llm.threads_batch, 2);
    EXPECT_EQ(parse_args(c, {"--threads-batch", "-1"}, nullptr), "");
    EXPECT_NE(c.validate().find("threads-batch"), std::string::npos);
}

TEST(config, speed_options_parse_and_refuse_bad_values) {
    app_config c;
    EXPECT_EQ(c.llm.flash_attn, LLM_FLASH_ATTN_AUTO);
    EXPECT_EQ(parse_args(c, {"--flash-attn", "off", "--first-phrase-words", "5"}, nullptr), "");
    EXPECT_EQ(c.llm.flash_attn, LLM_FLASH_ATTN_OFF);
    EXPECT_EQ(c.session.chunker.max_words_first, 5);
    EXPECT_EQ(c.validate(), "");
    EXPECT_NE(parse_args(c, {"--flash-attn", "fast"}, nullptr).find("auto, on or off"),
              std::string::npos);
    EXPECT_EQ(parse_args(c, {"--first-phrase-words", "-2"}, nullptr), "");
    EXPECT_NE(c.validate().find("first-phrase-words"), std::string::npos);
}

TEST(config, io_slice_is_off_or_in_the_kernels_range) {
    app_config c;
    EXPECT_EQ(c.server.io_slice_us, 0);
    for (const char *ok : {"0", "100", "100000"}) {
        EXPECT_EQ(parse_args(c, {"--io-slice-us", ok}, nullptr), "");
        EXPECT_EQ(c.validate(), "") << ok;
    }
    for (const char *bad : {"50", "100001", "-1"}) {
        EXPECT_EQ(parse_args(c, {"--io-slice-us", bad}, nullptr), "");
        EXPECT_NE(c.validate().find("io-slice-us"), std::string::npos) << bad;
    }
}

TEST(config, io_rt_priority_is_auto_off_or_a_fifo_priority) {
    app_config c;
    EXPECT_EQ(c.server.io_rt_priority, -1); // where the kernel allows it
    for (const char *ok : {"-1", "0", "1", "99"}) {
        EXPECT_EQ(parse_args(c, {"--io-rt-priority", ok}, nullptr), "");
        EXPECT_EQ(c.validate(), "") << ok;
    }
    for (const char *bad : {"100", "-2"}) {
        EXPECT_EQ(parse_args(c, {"--io-rt-priority", bad}, nullptr), "");
        EXPECT_NE(c.validate().find("io-rt-priority"), std::string::npos) << bad;
    }
}

TEST(config, model_file_engines_need_their_files) {
    app_config c;
    EXPECT_EQ(parse_args(c, {"--asr", "whisper"}, nullptr), "");
    EXPECT_NE(c.validate().find("--asr-model"), std::string::npos);
    EXPECT_EQ(parse_args(c, {"--asr-model", "m.bin", "--asr-language", "de", "--asr-threads", "2"},
                         nullptr),
              "");
    EXPECT_EQ(c.validate(), "");
    EXPECT_EQ(c.asr.model_path, "m.bin");
    EXPECT_EQ(c.asr.language, "de");
    EXPECT_EQ(c.asr.threads, 2);
    app_config d;
    EXPECT_EQ(parse_args(d, {"--tts", "piper"}, nullptr), "");
    EXPECT_NE(d.validate().find("--tts-model"), std::string::npos);
    EXPECT_EQ(parse_args(d, {"--tts-model", "v.onnx"}, nullptr), "");
    EXPECT_EQ(d.validate(), "");
    app_config e;
    e.asr.engine = "vosk";
    EXPECT_NE(e.validate(), "");
}

TEST(config, remote_language_models_are_a_pool_of_urls_and_take_text) {
    app_config c;
    EXPECT_EQ(parse_args(c,
                         {"--llm-url", "http://127.0.0.1:8081", "--llm-url", "http://b:8081/v1",
                          "--llm-timeout", "5", "--llm-model", "qwen"},
                         nullptr),
              "");
    EXPECT_EQ(c.validate(), "");
    EXPECT_EQ(c.llm.urls.size(), 2u);
    EXPECT_EQ(c.llm.remote_timeout_s, 5);
    EXPECT_EQ(c.llm.remote_model, "qwen");
    app_config both = c;
    both.llm.model_path = "m.gguf";
    EXPECT_NE(both.validate().find("give one"), std::string::npos);
    app_config hear = c;
    hear.asr.engine = "audio-llm";
    EXPECT_NE(hear.validate().find("takes text"), std::string::npos);
    app_config shared = c;
    EXPECT_EQ(parse_args(shared, {"--llm-shared"}, nullptr), "");
    EXPECT_TRUE(shared.llm.remote_shared);
    EXPECT_EQ(shared.validate(), "");
    app_config alone;
    EXPECT_EQ(parse_args(alone, {"--llm-shared"}, nullptr), "");
    EXPECT_NE(alone.validate().find("--llm-shared"), std::string::npos);
    app_config proxy;
    EXPECT_EQ(
        parse_args(proxy, {"--trusted-proxy", "10.0.0.10", "--trusted-proxy", "::1"}, nullptr), "");
    EXPECT_EQ(proxy.validate(), "");
    EXPECT_EQ(parse_args(proxy, {"--trusted-proxy", "lb.local"}, nullptr), "");
    EXPECT_NE(proxy.validate().find("--trusted-proxy takes IP addresses"), std::string::npos);
    app_config store_url;
    EXPECT_EQ(parse_args(store_url, {"--store", "data/x.db"}, nullptr), "");
    EXPECT_NE(store_url.validate().find("--store takes a postgresql:// URL"), std::string::npos);
    app_config bad;
    EXPECT_EQ(parse_args(bad, {"--llm-timeout", "0"}, nullptr), "");
    EXPECT_NE(bad.validate().find("llm-timeout"), std::string::npos);
    // RPC workers: HOST:PORT lists, checked before any library sees them.
    std::string err;
    EXPECT_EQ(parse_rpc_endpoints("127.0.0.1:50052,[::1]:7,gpu-box.lan:1", &err).size(), 3u) << err;
    for (const char *bad : {"", "host", "host:", ":80", "h:0", "h:65536", "h:8x", "a b:1", "h:1,",
                            "h:1,,h:2", "../x:1"}) {
        err.clear();
        EXPECT_TRUE(parse_rpc_endpoints(bad, &err).empty()) << bad;
        EXPECT_FALSE(err.empty()) << bad;
    }
    app_config rpc;
    rpc.llm.rpc = "127.0.0.1:1";
    EXPECT_NE(rpc.validate().find("--model"), std::string::npos);
    rpc.llm.rpc = "nope";
    EXPECT_NE(rpc.validate().find("HOST:PORT"), std::string::npos);
    // Not a web address: refused when the engine is made, naming it.
    llm_config l;
    l.urls = {"ftp://x"};
    try {
        make_llm_engine(l);
        ADD_FAILURE() << "an ftp URL was taken";
    } catch (const llm_error &e) {
        EXPECT_NE(std::string(e.what()).find("ftp://x"), std::string::npos);
    }
}

namespace {

std::string write_temp(const std::string &name, const std::string &text) {
    std::string path = testing::TempDir() + name;
    FILE *f = fopen(path.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return path;
}

} // namespace

// One declaration: a flag, an environment variable and a config key; flags win over the
// environment, which wins over the file.
TEST(config, a_setting_is_a_flag_a_variable_and_a_config_key) {
    std::string toml = write_temp("parley.toml", "port = 9100\nmax_tokens = 50\n"
                                                 "allow_origin = [\"http://a\", \"http://b\"]\n");
    setenv("PARLEY_MAX_TOKENS", "60", 1);
    setenv("PARLEY_SLOTS", "3", 1);
    app_config c;
    EXPECT_EQ(parse_args(c, {"--config", toml, "--port", "9200"}, nullptr), "");
    unsetenv("PARLEY_MAX_TOKENS");
    unsetenv("PARLEY_SLOTS");
    EXPECT_EQ(c.server.port, 9200);      // the flag
    EXPECT_EQ(c.session.max_tokens, 60); // the environment over the file
    EXPECT_EQ(c.llm.slots, 3);           // the environment alone
    EXPECT_EQ(c.server.allowed_origins.size(), 2u);
    EXPECT_TRUE(c.given.count("port") && c.given.count("slots"));
    std::string json = write_temp("parley.json", R"({"asr_fast": true, "voice": "en-us"})");
    app_config d;
    EXPECT_EQ(parse_args(d, {"--config=" + json}, nullptr), "");
    EXPECT_TRUE(d.asr.fast);
    std::string bad = write_temp("bad.toml", "no_such_option = 1\n");
    app_config e;
    EXPECT_NE(parse_args(e, {"--config", bad}, nullptr), "") << "an unknown key is an error";
}

TEST(config, every_command_answers_help_with_its_settings) {
    for (const char *cmd : {"serve", "chat", "transcribe", "say"}) {
        app_config c;
        std::string help;
        EXPECT_EQ(parse_args(c, {"--help"}, nullptr, cmd, &help), "") << cmd;
        EXPECT_NE(help.find(command_description(cmd)), std::string::npos) << cmd;
        for (const char *flag : {"--port", "--model", "--asr", "--tts", "--vad", "--config"})
            EXPECT_NE(help.find(flag), std::string::npos) << cmd << " " << flag;
        EXPECT_NE(help.find("PARLEY_MAX_TOKENS"), std::string::npos) << cmd;
    }
}

TEST(config, enumerations_take_only_their_names) {
    app_config c;
    EXPECT_EQ(parse_args(c, {"--echo", "off", "--flash-attn", "on"}, nullptr), "");
    EXPECT_EQ(c.session.echo, ECHO_MODE_OFF);
    EXPECT_EQ(c.llm.flash_attn, LLM_FLASH_ATTN_ON);
    EXPECT_NE(parse_args(c, {"--echo", "loud"}, nullptr).find("auto, on or off"),
              std::string::npos);
    EXPECT_NE(parse_args(c, {"--asr", "vosk"}, nullptr), "");
}

TEST(config, the_last_of_a_repeated_flag_wins) {
    app_config c;
    EXPECT_EQ(parse_args(c, {"--max-tokens", "160", "--port", "1", "--max-tokens", "60"}, nullptr),
              "");
    EXPECT_EQ(c.session.max_tokens, 60);
}
