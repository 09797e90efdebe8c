// parley: serve | chat | transcribe | say | models | bench. Exit codes: 0 ok, 1 runtime failure, 2
// bad input (arguments, files, models).
#include "app/config.h"
#include "app/profile.h"
#include "asr/asr-audio-llm.h"
#include "audio/audio-file.h"
#include "audio/resampler.h"
#include "bench/engine-bench.h"
#include "bench/voice-bench.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "llm/conversation.h"
#include "llm/llm-rpc.h"
#include "models/model-command.h"
#include "net/server.h"
#include "pipeline/session-directory.h"
#include "pipeline/slot-queue.h"
#include "store/store.h"

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <unistd.h>

using namespace parley;

namespace {

int fail(const std::string &message, int code = 2) {
    fprintf(stderr, "parley: %s\n", message.c_str());
    return code;
}

void apply_log_level(const std::string &level) {
    log_set_level(level == "debug"   ? LOG_LEVEL_DEBUG
                  : level == "warn"  ? LOG_LEVEL_WARN
                  : level == "error" ? LOG_LEVEL_ERROR
                                     : LOG_LEVEL_INFO);
}

int cmd_serve(app_config &cfg) {
    metrics stats;
    // The ASR is declared after the LLM so that it goes first: an audio-LLM ASR uses it.
    std::unique_ptr<llm_engine> llm;
    std::unique_ptr<asr_engine> asr;
    std::unique_ptr<tts_engine> tts;
    server_info info;
    try {
        if (cfg.asr.engine != "none" && cfg.asr.engine != "audio-llm" &&
            !cfg.session.direct_audio) {
            mono_time t0 = mono_now();
            asr = make_asr_engine(cfg.asr);
            stats.asr_load_ms = ms_between(t0, mono_now());
            info.asr = asr->name();
        }
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    if (!cfg.llm.model_path.empty() || !cfg.llm.urls.empty()) {
        try {
            llm = make_llm_engine(cfg.llm);
            info.llm = llm->name();
            info.llm_load_ms = llm->load_ms();
            stats.llm_load_ms = llm->load_ms();
        } catch (const std::exception &e) {
            return fail(e.what());
        }
    } else {
        log_warn("no language model: transcription only. Give one with --model FILE.gguf "
                 "(make serve MODEL=FILE.gguf)");
    }
    if (cfg.session.direct_audio) {
        info.asr = "audio-llm (direct)";
    } else if (cfg.asr.engine == "audio-llm") {
        // The language model hears the user itself (transcribe-then-reply).
        try {
            if (!llm) throw asr_error("asr audio-llm needs --model and --mmproj");
            asr = make_audio_llm_asr(*llm);
            info.asr = asr->name();
        } catch (const std::exception &e) {
            return fail(e.what());
        }
    }
    try {
        tts = make_tts_engine(cfg.tts);
        if (tts) info.tts = tts->name();
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    std::unique_ptr<store> db;
    try {
        std::string moved;
        db = open_store(cfg.store_where(), cfg.db_recover, &moved);
        if (!moved.empty())
            log_warn("store: %s could not be used; moved aside to %s, starting a new one",
                     cfg.db_path.c_str(), moved.c_str());
    } catch (const std::exception &e) {
        return fail(
            std::string(e.what()) +
            (cfg.store_url.empty() ? " (--db-recover moves it aside and starts a new one)" : ""));
    }
    std::shared_ptr<const vad_model> vad;
    try {
        vad = make_vad_model(cfg.session.vad);
        log_info("vad: %s (hands-free turns end after %d ms of silence)", vad->name().c_str(),
                 cfg.session.vad.min_silence_ms);
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    worker tts_worker("tts");
    if (cfg.server.max_sessions == 0) cfg.server.max_sessions = llm ? 4 * cfg.llm.slots : 32;
    session_directory directory;
    std::unique_ptr<slot_queue> slots;
    if (llm) slots = std::make_unique<slot_queue>(*llm);
    session_engines eng{asr.get(), llm.get(),  tts.get(), &tts_worker,
                        db.get(),  &directory, &stats,    vad};
    eng.slots = slots.get();
    try {
        if (cfg.server.tls_dir.empty())
            cfg.server.tls_dir =
                (std::filesystem::path(cfg.db_path).parent_path() / "tls").string();
        server srv(cfg.server, eng, cfg.session, info);
        log_info("listening on %s (%s)", srv.url().c_str(), cfg.to_string().c_str());
        srv.run();
    } catch (const std::exception &e) {
        return fail(e.what(), 1);
    }
    int64_t stored = -1;
    store_call("count the turns", [&] { stored = db->count_turns(); });
    if (stored >= 0) log_info("stopped; %lld turns stored", (long long)stored);
    return 0;
}

int cmd_transcribe(app_config &cfg, const std::vector<std::string> &pos) {
    if (pos.size() != 1) return fail("usage: parley transcribe AUDIO_FILE");
    pcm_audio audio;
    try {
        audio = read_audio_file(pos[0]);
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    cfg.asr.pool = 1;
    std::unique_ptr<llm_engine> llm; // the audio-LLM's model (declared first: goes last)
    std::unique_ptr<asr_engine> asr;
    try {
        if (cfg.asr.engine == "audio-llm") {
            cfg.llm.slots = 1;
            llm = make_llm_engine(cfg.llm);
            asr = make_audio_llm_asr(*llm);
        } else {
            asr = make_asr_engine(cfg.asr); // a missing or corrupt model is bad input: exit 2
        }
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    try {
        auto stream = asr->open();
        std::vector<int16_t> s16k = resample(audio.samples, audio.sample_rate, ASR_SAMPLE_RATE);
        stream->accept(s16k);
        printf("%s\n", stream->finish().c_str());
    } catch (const std::exception &e) {
        return fail(e.what(), 1);
    }
    return 0;
}

int cmd_say(app_config &cfg, const std::vector<std::string> &pos) {
    if (pos.size() != 1 || cfg.wav_out.empty())
        return fail("usage: parley say \"TEXT\" -o OUT.wav");
    try {
        auto tts = make_tts_engine(cfg.tts);
        if (!tts) return fail("--tts none cannot speak");
        if (std::string err = tts->check(cfg.session.tts); !err.empty()) return fail(err);
        tts_result r = tts->synthesize(pos[0], cfg.session.tts);
        std::vector<int16_t> pcm = resample(r.pcm, r.sample_rate, cfg.session.audio_out_rate);
        write_wav(cfg.wav_out, pcm, cfg.session.audio_out_rate);
        fprintf(stderr, "parley: wrote %.2f s of speech to %s\n",
                double(pcm.size()) / cfg.session.audio_out_rate, cfg.wav_out.c_str());
    } catch (const audio_file_error &e) {
        return fail(e.what());
    } catch (const std::exception &e) {
        return fail(e.what(), 1);
    }
    return 0;
}

int cmd_chat(app_config &cfg) {
    if (cfg.llm.model_path.empty() && cfg.llm.urls.empty())
        return fail("chat needs a model: --model FILE.gguf or --llm-url URL");
    std::unique_ptr<llm_engine> llm;
    std::unique_ptr<tts_engine> tts;
    try {
        cfg.llm.slots = 1;
        llm = make_llm_engine(cfg.llm);
        if (!cfg.wav_out.empty()) {
            tts = make_tts_engine(cfg.tts);
            if (!tts) return fail("--wav needs a TTS engine");
            if (std::string err = tts->check(cfg.session.tts); !err.empty()) return fail(err);
        }
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    int slot = llm->acquire_slot();
    std::vector<turn_record> history;
    std::vector<int16_t> speech;
    std::string line;
    bool tty = isatty(0);
    int64_t turn_id = 1;
    while (true) {
        if (tty) fprintf(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
        llm_result result;
        llm_request req;
        req.slot = slot;
        req.sampling = cfg.session.sampling;
        req.max_tokens = cfg.session.max_tokens;
        req.messages = [&](int budget, const token_counter &count) {
            return fit_history(cfg.session.system_prompt, history, line, budget, count,
                               HISTORY_DROP_STEP);
        };
        req.on_piece = [](std::string_view piece) {
            fwrite(piece.data(), 1, piece.size(), stdout);
            fflush(stdout);
        };
        req.on_done = [&](const llm_result &r) {
            std::lock_guard lock(m);
            result = r;
            done = true;
            cv.notify_one();
        };
        llm->submit(std::move(req));
        {
            std::unique_lock lock(m);
            cv.wait(lock, [&] { return done; });
        }
        printf("\n");
        fflush(stdout);
        if (result.stop_reason == LLM_STOP_ERROR)
            fprintf(stderr, "parley: %s\n", result.error.c_str());
        turn_record rec;
        rec.turn_id = turn_id++;
        rec.user = line;
        rec.assistant = result.text;
        history.push_back(rec);
        if (tts && tts_speakable(result.text)) {
            tts_result r = tts->synthesize(result.text, cfg.session.tts);
            std::vector<int16_t> pcm = resample(r.pcm, r.sample_rate, cfg.session.audio_out_rate);
            speech.insert(speech.end(), pcm.begin(), pcm.end());
        }
    }
    if (tts) {
        try {
            write_wav(cfg.wav_out, speech, cfg.session.audio_out_rate);
        } catch (const std::exception &e) {
            return fail(e.what());
        }
    }
    return 0;
}

// parley models list | show | pull | path | rm: its own flags, not the server's.
int cmd_models(const std::vector<std::string> &args) {
    return models_command(args);
}

// Fills the engines the flags left open from the profile, pulling what is missing.
int use_profile(app_config &cfg) {
    model_settings settings = model_settings_from_env(process_env(), executable_dir());
    settings.progress_bar = isatty(fileno(stderr));
    if (settings.manifest_path.empty())
        return fail(
            "--profile needs the model manifest (models/manifest.json; or PARLEY_MANIFEST)");
    model_manifest manifest;
    if (std::string err = load_model_manifest(settings.manifest_path, &manifest); !err.empty())
        return fail(err);
    try {
        model_cache cache(settings);
        profile_outcome o = apply_profile(cfg, cfg.profile, manifest, cache, true, stderr);
        for (const std::string &line : o.lines)
            log_info("profile %s: %s", cfg.profile.c_str(), line.c_str());
        if (!o.missing.empty())
            log_warn("profile %s: %zu model(s) could not be had; offline engines stand in. Pull "
                     "them later with `parley models pull NAME`",
                     cfg.profile.c_str(), o.missing.size());
    } catch (const model_error &e) {
        return fail(e.what(), e.exit_code);
    }
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        fputs(usage().c_str(), args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
        printf("parley 0.1.0\n");
        return 0;
    }
    std::string cmd = args[0];
    args.erase(args.begin());
    if (cmd == "models") return cmd_models(args);
    if (cmd == "rpc-worker") return rpc_worker_main(args);
    if (cmd == "bench" && !args.empty() && args[0] == "engines")
        return engine_bench_main(std::vector<std::string>(args.begin() + 1, args.end()));
    if (cmd == "bench" && !args.empty() && args[0] == "voice")
        return voice_bench_main(std::vector<std::string>(args.begin() + 1, args.end()));
    if (cmd == "bench") return voice_bench_main(args);
    if (cmd != "serve" && cmd != "chat" && cmd != "transcribe" && cmd != "say")
        return fail("unknown command '" + cmd + "'\n" + usage());
    app_config cfg;
    std::vector<std::string> positional;
    std::string help;
    if (std::string err = parse_args(cfg, args, &positional, cmd, &help); !err.empty())
        return fail(err);
    if (!help.empty()) {
        fputs(help.c_str(), stdout);
        return 0;
    }
    if (std::string err = cfg.validate(); !err.empty()) return fail(err);
    apply_log_level(cfg.log_level);
    if (!cfg.profile.empty() && cmd != "say") {
        if (int code = use_profile(cfg); code != 0) return code;
        if (std::string err = cfg.validate(); !err.empty()) return fail(err);
    }
    if (cmd == "serve")
        return positional.empty() ? cmd_serve(cfg) : fail("serve takes no arguments");
    if (cmd == "transcribe") return cmd_transcribe(cfg, positional);
    if (cmd == "say") return cmd_say(cfg, positional);
    if (cmd == "chat") return cmd_chat(cfg);
    return fail("unknown command '" + cmd + "'\n" + usage());
}
