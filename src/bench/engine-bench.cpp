// Engine benchmark (see engine-bench.h). Bare tools run as child processes through the shell;
// their output is parsed for the timings they print themselves where they print any.
#include "bench/engine-bench.h"

#include "asr/asr.h"
#include "audio/audio-file.h"
#include "bench/bench-util.h"
#include "llm/llm.h"
#include "tts/tts.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

namespace parley {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = bench_clock;

struct bench_options {
    std::vector<std::string> parts = {"asr", "llm", "tts"}; // also "server" (llama-server)
    int threads = 0;                                        // 0: all cores
    int repeats = 5; // timed runs per measurement, after warmup runs
    int warmup = 1;
    std::string audio_dir = "/usr/share/pocketsphinx/test/data/librivox";
    int max_clips = 5;
    std::string whisper_model;
    std::vector<std::string> llm_models = {"../shared/models/stories260K.gguf"};
    int prompt_tokens = 128;
    int gen_tokens = 32;
    int batch = 512;
    std::string piper_model;
    std::string voice = "en-us";
    std::string text = "Sure. The weather today is mild, with a light breeze from the west and "
                       "a few clouds in the afternoon.";
    std::string out = "bench/out/engines.json";
    int server_port = 18931;

    bool has(const std::string &part) const {
        return std::find(parts.begin(), parts.end(), part) != parts.end();
    }
};

const char *USAGE = R"(usage: parley bench engines [options]
  --parts LIST          asr,llm,tts (default) and/or server (llama-server first token)
  --threads N           threads for both sides (default: all cores)
  --repeats N           timed runs per measurement, median reported (default 5)
  --warmup N            untimed runs first (default 1)
  --audio-dir DIR       WAV clips, 16 kHz mono (default the LibriVox clips of pocketsphinx)
  --clips N             at most N clips (default 5)
  --whisper-model F     ggml Whisper model (tests/gen/make-tiny-whisper.py --preset base.en)
  --llm-model F         GGUF; repeat or comma-separate for several (default stories260K)
  --prompt-tokens N     prompt length for the LLM (default 128, at least 8)
  --gen-tokens N        generated tokens (default 32, at least 2)
  --batch N             llama.cpp batch size, both sides (default 512, at least 32)
  --piper-model F       Piper voice .onnx (tests/gen/make-tiny-piper.py --preset medium)
  --voice V             espeak-ng voice (default en-us)
  --text T              text to speak
  --out F               JSON output (default bench/out/engines.json)
  --server-port N       port for llama-server (default 18931)
)";

std::vector<std::string> split_list(const std::string &s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

// Empty on success, else why not.
std::string parse_options(const std::vector<std::string> &args, bench_options &o, bool &help) {
    bool models_given = false;
    using value = const std::string &;
    bench_cli cli;
    cli.valued = {
        {"--parts", [&](value v) { o.parts = split_list(v); }},
        {"--threads", [&](value v) { o.threads = parse_int(v, 0, 1024); }},
        {"--repeats", [&](value v) { o.repeats = parse_int(v, 1); }},
        {"--warmup", [&](value v) { o.warmup = parse_int(v, 0); }},
        {"--audio-dir", [&](value v) { o.audio_dir = v; }},
        {"--clips", [&](value v) { o.max_clips = parse_int(v, 1); }},
        {"--whisper-model", [&](value v) { o.whisper_model = v; }},
        {"--llm-model",
         [&](value v) {
             if (!models_given) o.llm_models.clear();
             models_given = true;
             for (auto &m : split_list(v))
                 o.llm_models.push_back(m);
         }},
        {"--prompt-tokens", [&](value v) { o.prompt_tokens = parse_int(v, 8); }},
        {"--gen-tokens", [&](value v) { o.gen_tokens = parse_int(v, 2); }},
        {"--batch", [&](value v) { o.batch = parse_int(v, 32); }},
        {"--piper-model", [&](value v) { o.piper_model = v; }},
        {"--voice", [&](value v) { o.voice = v; }},
        {"--text", [&](value v) { o.text = v; }},
        {"--out", [&](value v) { o.out = v; }},
        {"--server-port", [&](value v) { o.server_port = parse_int(v, 1, 65535); }},
    };
    if (std::string err = parse_bench_cli(args, cli, help); !err.empty() || help) return err;
    for (const std::string &p : o.parts)
        if (p != "asr" && p != "llm" && p != "tts" && p != "server")
            return "unknown part '" + p + "' (parts: asr, llm, tts, server)";
    if (o.threads <= 0) o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
    return {};
}

// --- results ---

struct bench_row {
    std::string part, stage;
    double parley_ms = NO_VALUE, bare_ms = NO_VALUE;
    std::string note;
};

struct bench_report {
    std::vector<bench_row> rows;
    std::vector<std::string> skipped;
    json details = json::object();

    void add(bench_row r) {
        std::printf("  %-34s parley %9.2f ms   bare %9.2f ms   ratio %5.2f  %s\n", r.stage.c_str(),
                    r.parley_ms, r.bare_ms, r.parley_ms / r.bare_ms, r.note.c_str());
        std::fflush(stdout);
        rows.push_back(std::move(r));
    }
    void skip(const std::string &what, const std::string &why) {
        std::printf("  skipped %s: %s\n", what.c_str(), why.c_str());
        std::fflush(stdout);
        skipped.push_back(what + ": " + why);
    }
};

json num(double v) {
    return json_number(v);
}

// --- ASR ---

struct clip {
    std::string path;
    std::vector<int16_t> pcm;
    double seconds = 0;
};

std::vector<clip> load_clips(const bench_options &o, bench_report &rep) {
    std::vector<clip> clips;
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto &e : fs::directory_iterator(o.audio_dir, ec))
        if (e.path().extension() == ".wav") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto &f : files) {
        if (int(clips.size()) >= o.max_clips) break;
        try {
            pcm_audio a = read_audio_file(f.string());
            if (a.sample_rate != ASR_SAMPLE_RATE) {
                rep.skip(f.filename().string(), "not 16 kHz");
                continue;
            }
            double seconds = a.seconds();
            clips.push_back({f.string(), std::move(a.samples), seconds});
        } catch (const std::exception &e) {
            rep.skip(f.filename().string(), e.what());
        }
    }
    return clips;
}

// Parley's time for one utterance: accept() of the whole clip, then finish().
double time_parley_asr(asr_engine &engine, const clip &c) {
    auto stream = engine.open();
    auto t0 = clock_type::now();
    stream->accept(c.pcm);
    stream->finish();
    return ms_since(t0);
}

std::vector<double> parley_asr_times(asr_engine &engine, const clip &c, const bench_options &o) {
    for (int i = 0; i < o.warmup; ++i)
        time_parley_asr(engine, c);
    std::vector<double> v;
    for (int i = 0; i < o.repeats; ++i)
        v.push_back(time_parley_asr(engine, c));
    return v;
}

// whisper-cli prints "whisper_print_timings:   encode time =  3128.25 ms / ..." lines.
std::map<std::string, double> whisper_cli_timings(const std::string &out) {
    std::map<std::string, double> t;
    static const std::regex re(R"(whisper_print_timings:\s+(\w+) time =\s*([0-9.]+) ms)");
    for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
         ++it)
        t[(*it)[1]] = std::stod((*it)[2]);
    return t;
}

// Parley's Whisper against whisper-cli doing the same work: by default both with whisper-cli's
// own settings; with fast, one greedy pass on an encoder context cut to the clip.
void bench_whisper(const bench_options &o, const std::vector<clip> &clips, bench_report &rep,
                   bool fast) {
    if (o.whisper_model.empty()) {
        rep.skip("whisper", "no --whisper-model (make one: python3 tests/gen/make-tiny-whisper.py "
                            "--preset base.en build/bench-models/whisper-base.en-random.bin)");
        return;
    }
    if (!fs::exists(o.whisper_model)) {
        rep.skip("whisper", "no file " + o.whisper_model);
        return;
    }
    std::string cli = find_tool("whisper-cli");
    std::unique_ptr<asr_engine> engine;
    try {
        asr_config c;
        c.engine = "whisper";
        c.model_path = o.whisper_model;
        c.threads = o.threads;
        c.pool = 1;
        c.fast = fast;
        engine = make_asr_engine(c);
    } catch (const std::exception &e) {
        rep.skip("whisper", std::string("engine: ") + e.what());
        return;
    }
    double parley_total = 0, bare_total = 0, seconds = 0;
    json per_clip = json::array();
    for (const auto &c : clips) {
        double p = NO_VALUE, b = NO_VALUE, b_total_minus_load = NO_VALUE;
        int decode_runs = -1;
        if (cli.empty()) {
            p = median(parley_asr_times(*engine, c, o));
        } else {
            std::vector<std::string> argv = {cli,    "-m", o.whisper_model,          "-f",
                                             c.path, "-t", std::to_string(o.threads)};
            if (fast) {
                // Greedy, no temperature fallback, no timestamps, the encoder cut to the
                // clip's length (Parley's audio_ctx: one frame per 320 samples).
                int audio_ctx = int((c.pcm.size() + 319) / 320);
                for (std::string a : {"-nt", "-nf", "-bs", "1", "-ac"})
                    argv.push_back(a);
                argv.push_back(std::to_string(audio_ctx));
            }
            // Parley and whisper-cli take turns, so that both see the same load.
            std::vector<double> parley, comp, tml;
            for (int i = 0; i < o.warmup + o.repeats; ++i) {
                double t_parley = time_parley_asr(*engine, c);
                if (i >= o.warmup) parley.push_back(t_parley);
                command_result r = run_command(argv);
                auto t = whisper_cli_timings(r.output);
                if (r.rc != 0 || !t.count("encode")) {
                    rep.skip("whisper-cli", "failed: " + first_line(r.output));
                    break;
                }
                if (i < o.warmup) continue;
                // The work itself: mel + encoder + decoder + sampling (its load and its state
                // allocation are outside).
                comp.push_back(t["mel"] + t["sample"] + t["encode"] + t["decode"] + t["batchd"] +
                               t["prompt"]);
                tml.push_back(t["total"] - t["load"]);
                static const std::regex runs(R"(decode time =\s*[0-9.]+ ms /\s*(\d+) runs)");
                std::smatch m;
                if (std::regex_search(r.output, m, runs)) decode_runs = std::stoi(m[1]);
            }
            p = median(parley);
            b = median(comp);
            b_total_minus_load = median(tml);
        }
        parley_total += p;
        bare_total += b;
        seconds += c.seconds;
        per_clip.push_back({{"file", fs::path(c.path).filename().string()},
                            {"seconds", num(c.seconds)},
                            {"parley_ms", num(p)},
                            {"whisper_cli_compute_ms", num(b)},
                            {"whisper_cli_total_minus_load_ms", num(b_total_minus_load)},
                            {"whisper_cli_decode_runs", decode_runs}});
    }
    rep.details[fast ? "whisper_fast" : "whisper"] = {{"model", o.whisper_model},
                                                      {"clips", per_clip}};
    if (cli.empty()) rep.skip("whisper-cli", "not on PATH");
    rep.add({"asr", fast ? "whisper ms per s of audio, --asr-fast" : "whisper ms per s of audio",
             parley_total / seconds, bare_total / seconds,
             "bare: whisper-cli mel+encode+decode (its printed timings)"});
}

json pocketsphinx_wer(asr_engine &engine, const std::string &cli, const std::vector<clip> &clips);

void bench_pocketsphinx(const bench_options &o, const std::vector<clip> &clips, bench_report &rep) {
    std::unique_ptr<asr_engine> engine;
    try {
        asr_config c;
        c.engine = "pocketsphinx";
        c.pool = 1;
        engine = make_asr_engine(c);
    } catch (const std::exception &e) {
        rep.skip("pocketsphinx", std::string("engine: ") + e.what());
        return;
    }
    std::string cli = find_tool("pocketsphinx");
    if (cli.empty()) rep.skip("pocketsphinx CLI", "not on PATH");
    // The CLI's time per clip without its start-up and model loading (cli_ms_per_copy).
    auto bare_ms = [&](const std::string &file, std::vector<double> &one_wall) {
        auto make = [&](int copies) {
            std::vector<std::string> argv = pocketsphinx_cli_command(cli);
            for (int k = 0; k < copies; ++k)
                argv.push_back(file);
            return argv;
        };
        return cli_ms_per_copy(make, o.warmup, o.repeats, &one_wall);
    };
    double parley_total = 0, bare_total = 0, seconds = 0;
    json per_clip = json::array();
    for (const auto &c : clips) {
        double p = median(parley_asr_times(*engine, c, o));
        std::vector<double> one_wall;
        double b = cli.empty() ? NO_VALUE : bare_ms(c.path, one_wall);
        parley_total += p;
        bare_total += b;
        seconds += c.seconds;
        per_clip.push_back({{"file", fs::path(c.path).filename().string()},
                            {"seconds", num(c.seconds)},
                            {"parley_ms", num(p)},
                            {"cli_wall_one_ms", num(median(one_wall))},
                            {"cli_ms", num(b)}});
    }
    rep.details["pocketsphinx"] = {{"clips", per_clip}};
    rep.add({"asr", "pocketsphinx ms per s of audio", parley_total / seconds, bare_total / seconds,
             "bare: CLI, (wall of 5 copies - wall of 1) / 4"});
    if (!cli.empty()) rep.details["pocketsphinx"]["wer"] = pocketsphinx_wer(*engine, cli, clips);
}

// Word error rates of Parley's engine and of the bare CLI on every clip with a transcript
// beside it, side by side, and their means.
json pocketsphinx_wer(asr_engine &engine, const std::string &cli, const std::vector<clip> &clips) {
    json rows = json::array();
    double parley_sum = 0, bare_sum = 0;
    int n = 0;
    std::printf("\n  %-44s %10s %10s\n", "pocketsphinx WER (clip)", "Parley", "bare CLI");
    for (const auto &c : clips) {
        std::string ref = reference_transcript(c.path);
        if (ref.empty()) continue;
        auto stream = engine.open();
        stream->accept(c.pcm);
        std::string hyp = stream->finish();
        double p = word_error_rate(ref, hyp);
        double b = word_error_rate(ref, pocketsphinx_cli_transcript(cli, c.path));
        std::string name = fs::path(c.path).filename().string();
        std::printf("  %-44s %10.2f %10.2f\n", name.c_str(), p, b);
        rows.push_back({{"file", name}, {"parley_wer", num(p)}, {"bare_wer", num(b)}});
        parley_sum += p;
        bare_sum += b;
        ++n;
    }
    if (n == 0) return rows;
    std::printf("  %-44s %10.3f %10.3f\n", "mean", parley_sum / n, bare_sum / n);
    std::fflush(stdout);
    return {
        {"clips", rows}, {"parley_mean", num(parley_sum / n)}, {"bare_mean", num(bare_sum / n)}};
}

// --- LLM ---

struct llm_run {
    llm_result result;
    double submit_to_first_piece_ms = NO_VALUE;
};

llm_run run_request(llm_engine &engine, llm_request req) {
    std::promise<llm_result> done;
    auto fut = done.get_future();
    auto first = std::make_shared<std::atomic<bool>>(false);
    auto first_at = std::make_shared<clock_type::time_point>();
    req.on_piece = [first, first_at](std::string_view) {
        if (!first->exchange(true)) *first_at = clock_type::now();
    };
    req.on_done = [&done](const llm_result &r) { done.set_value(r); };
    auto t0 = clock_type::now();
    engine.submit(std::move(req));
    llm_run run;
    run.result = fut.get();
    if (first->load())
        run.submit_to_first_piece_ms =
            std::chrono::duration<double, std::milli>(*first_at - t0).count();
    return run;
}

sampling_params greedy() {
    sampling_params s;
    s.temperature = 0;
    s.repeat_penalty = 1.0f;
    s.seed = 1;
    return s;
}

// A user message whose formatted prompt is as close to n tokens as words allow (at most n).
std::string prompt_of(llm_engine &engine, int n) {
    static const char *words[] = {"the", "little", "dog", "ran",  "to",   "a",  "big",  "tree",
                                  "and", "saw",    "one", "bird", "sing", "in", "warm", "sun"};
    auto text = [](int k) {
        std::string s;
        for (int i = 0; i < k; ++i)
            s += std::string(i ? " " : "") + words[i % 16];
        return s;
    };
    std::string best;
    llm_request req;
    req.max_tokens = 0;
    req.sampling = greedy();
    req.messages = [&](int, const std::function<int(const std::vector<chat_message> &)> &count) {
        int lo = 1, hi = 4 * n;
        while (lo < hi) { // largest k with count <= n
            int mid = (lo + hi + 1) / 2;
            if (count({{"user", text(mid)}}) <= n)
                lo = mid;
            else
                hi = mid - 1;
        }
        best = text(lo);
        return std::vector<chat_message>{{"user", best}};
    };
    run_request(engine, std::move(req));
    return best;
}

struct llama_bench_result {
    double pp_ms = NO_VALUE;       // n_prompt tokens
    double tg_ms_token = NO_VALUE; // per generated token
    std::string error;
};

// One llama-bench run of -r repeats; its samples are appended to pp_ms and tg_ms_token.
// Prompt processing and generation are separate invocations so that each matches what the
// engine does: the prompt is evaluated into an empty cache (depth 0), and the reply's tokens
// are generated after it (depth n_prompt; llama-bench's tg alone would start empty, which is
// a few per cent cheaper per token).
std::string run_llama_bench(const bench_options &o, const std::string &model, int n_prompt,
                            int repeats, std::vector<double> &pp_ms,
                            std::vector<double> &tg_ms_token) {
    std::string tool = find_tool("llama-bench");
    if (tool.empty()) return "llama-bench not on PATH";
    // Same threads, batch and micro-batch as the engine; flash attention "auto" on both sides
    // (the engine keeps llama.cpp's default). llama-bench does its own warm-up run.
    auto run = [&](int prompt, int gen, int depth) -> std::string {
        std::vector<std::string> argv = {tool,
                                         "-m",
                                         model,
                                         "-p",
                                         std::to_string(prompt),
                                         "-n",
                                         std::to_string(gen),
                                         "-d",
                                         std::to_string(depth),
                                         "-t",
                                         std::to_string(o.threads),
                                         "-b",
                                         std::to_string(o.batch),
                                         "-ub",
                                         std::to_string(o.batch),
                                         "-r",
                                         std::to_string(repeats),
                                         "-o",
                                         "jsonl"};
        command_result r = run_command(argv);
        if (r.rc != 0) return "llama-bench failed: " + first_line(r.output);
        std::istringstream lines(r.output);
        std::string line;
        bool any = false;
        while (std::getline(lines, line)) {
            if (line.empty() || line[0] != '{') continue;
            json j = json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.contains("samples_ns")) continue;
            for (auto &s : j["samples_ns"]) {
                double ms = s.get<double>() / 1e6;
                if (j.value("n_prompt", 0) > 0)
                    pp_ms.push_back(ms);
                else if (j.value("n_gen", 0) > 0)
                    tg_ms_token.push_back(ms / j["n_gen"].get<double>());
                any = true;
            }
        }
        return any ? "" : "no results in llama-bench's output";
    };
    std::string error = run(n_prompt, 0, 0);
    if (error.empty()) error = run(0, o.gen_tokens, n_prompt);
    return error;
}

void bench_llm_model(const bench_options &o, const std::string &model, bench_report &rep) {
    std::string tag = fs::path(model).stem().string();
    if (!fs::exists(model)) {
        rep.skip("llm " + tag, "no file " + model);
        return;
    }
    std::unique_ptr<llm_engine> engine;
    try {
        llm_config c;
        c.model_path = model;
        c.context = o.prompt_tokens + o.gen_tokens + 64;
        c.slots = 1;
        c.threads = o.threads;
        c.threads_batch = o.threads;
        c.batch = o.batch;
        engine = make_llm_engine(c);
    } catch (const std::exception &e) {
        rep.skip("llm " + tag, std::string("engine: ") + e.what());
        return;
    }
    std::string user = prompt_of(*engine, o.prompt_tokens); // also warms up this shape
    auto parley_run = [&](llm_result &out) {
        llm_request req;
        req.slot = -1; // no KV reuse: every run evaluates the whole prompt
        req.max_tokens = o.gen_tokens;
        req.sampling = greedy();
        req.messages = [&](int, const auto &) { return std::vector<chat_message>{{"user", user}}; };
        out = run_request(*engine, std::move(req)).result;
        return out.stop_reason != LLM_STOP_ERROR;
    };
    llm_result r;
    for (int i = 0; i < o.warmup; ++i)
        if (!parley_run(r)) {
            rep.skip("llm " + tag, "request failed: " + r.error);
            return;
        }
    int prompt_tokens = r.prompt_tokens, generated = 0;
    // Parley and llama-bench take turns, one run each, so that both see the same load on a
    // shared machine.
    std::vector<double> prompt_ms, first_ms, tg_ms, bare_pp, bare_tg;
    std::string bare_error;
    for (int i = 0; i < o.repeats; ++i) {
        if (!parley_run(r)) {
            rep.skip("llm " + tag, "request failed: " + r.error);
            return;
        }
        generated = r.generated_tokens;
        prompt_ms.push_back(r.prompt_ms);
        first_ms.push_back(r.first_token_ms);
        if (r.generated_tokens > 1) tg_ms.push_back(r.generate_ms / (r.generated_tokens - 1));
        if (bare_error.empty())
            bare_error = run_llama_bench(o, model, prompt_tokens, 1, bare_pp, bare_tg);
    }
    engine.reset();
    if (!bare_error.empty()) rep.skip("llama-bench " + tag, bare_error);
    std::string p = std::to_string(prompt_tokens);
    rep.add({"llm", tag + " prompt eval (" + p + " tok)", median(prompt_ms), median(bare_pp),
             "bare: llama-bench pp" + p});
    rep.add({"llm", tag + " first token", median(first_ms), median(bare_pp),
             "bare: llama-bench pp" + p + " (its logits are the first token)"});
    rep.add(
        {"llm", tag + " ms per generated token", median(tg_ms), median(bare_tg),
         "bare: llama-bench tg" + std::to_string(o.gen_tokens) + " at depth " + p +
             (generated < o.gen_tokens ? "; parley stopped at " + std::to_string(generated) : "")});
    rep.details["llm"][tag] = {{"model", model},
                               {"prompt_tokens", prompt_tokens},
                               {"generated_tokens_last_run", generated},
                               {"parley_prompt_ms", prompt_ms},
                               {"parley_first_token_ms", first_ms},
                               {"parley_ms_per_token", tg_ms},
                               {"parley_tokens_per_s", num(1000 / median(tg_ms))},
                               {"llama_bench_pp_ms", bare_pp},
                               {"llama_bench_ms_per_token", bare_tg},
                               {"llama_bench_tokens_per_s", num(1000 / median(bare_tg))}};
}

// --- llama-server: first streamed token of the same conversation ---

void bench_llama_server(const bench_options &o, const std::string &model, bench_report &rep) {
    std::string tag = fs::path(model).stem().string();
    std::string tool = find_tool("llama-server");
    if (tool.empty() || !fs::exists(model)) {
        rep.skip("llama-server " + tag, tool.empty() ? "not on PATH" : "no file " + model);
        return;
    }
    // The conversation: a first turn (prefilled into the cache on both sides), then the
    // measured second turn, which reuses the first turn's tokens.
    std::vector<chat_message> turn1 = {{"system", "You are a helpful voice assistant."},
                                       {"user", "Tell me a short story about a dog."}};
    std::vector<chat_message> turn2 = turn1;
    turn2.push_back({"assistant", "Once upon a time a little dog ran to a big tree."});
    turn2.push_back({"user", "What did the dog see there?"});
    int ctx = o.prompt_tokens + o.gen_tokens + 512;

    // Parley: one slot, so the second turn reuses the first turn's KV cache.
    std::vector<double> parley_ms;
    int parley_cached = 0, parley_prompt = 0;
    try {
        llm_config c;
        c.model_path = model;
        c.context = ctx;
        c.slots = 1;
        c.threads = o.threads;
        c.threads_batch = o.threads;
        c.batch = o.batch;
        auto engine = make_llm_engine(c);
        int slot = engine->acquire_slot();
        for (int i = 0; i < o.warmup + o.repeats; ++i) {
            for (int turn = 0; turn < 2; ++turn) {
                llm_request req;
                req.slot = slot;
                req.max_tokens = turn == 0 ? 0 : o.gen_tokens;
                req.sampling = greedy();
                auto msgs = turn == 0 ? turn1 : turn2;
                req.messages = [msgs](int, const auto &) { return msgs; };
                llm_run run = run_request(*engine, std::move(req));
                if (turn == 1 && i >= o.warmup) {
                    parley_ms.push_back(run.submit_to_first_piece_ms);
                    parley_cached = run.result.cached_tokens;
                    parley_prompt = run.result.prompt_tokens;
                }
            }
        }
        engine->release_slot(slot);
    } catch (const std::exception &e) {
        rep.skip("llama-server " + tag, std::string("engine: ") + e.what());
        return;
    }

    llama_server_options so;
    so.tool = tool;
    so.model = model;
    so.threads = so.threads_batch = o.threads;
    so.context = ctx;
    so.batch = o.batch;
    so.port = o.server_port;
    std::string why;
    int pid = start_llama_server(so, &why);
    if (pid <= 0) {
        rep.skip("llama-server " + tag, why);
        return;
    }
    auto body = [&](const std::vector<chat_message> &msgs, int max_tokens) {
        json m = json::array();
        for (const auto &x : msgs)
            m.push_back({{"role", x.role}, {"content", x.content}});
        return chat_request_body(m, max_tokens);
    };
    std::vector<double> server_ms;
    for (int i = 0; i < o.warmup + o.repeats; ++i) {
        double first = NO_VALUE;
        http_request(o.server_port, "POST", "/v1/chat/completions", body(turn1, 1));
        http_request(o.server_port, "POST", "/v1/chat/completions", body(turn2, o.gen_tokens),
                     &first);
        if (i >= o.warmup) server_ms.push_back(first);
    }
    // Parley's remote engine (--llm-url) on the same server and conversation, its requests
    // interleaved with the bare ones: the cost of the client, not of the server.
    std::vector<double> remote_ms, bare_ms;
    std::string remote_error;
    try {
        llm_config c;
        c.urls = {"http://127.0.0.1:" + std::to_string(o.server_port)};
        c.context = ctx;
        c.slots = 1;
        auto engine = make_llm_engine(c);
        int slot = engine->acquire_slot();
        for (int i = 0; i < o.warmup + o.repeats; ++i) {
            double first = NO_VALUE;
            // Read to its end: a request dropped at its first token would keep the server busy
            // with its next one while Parley's arrives.
            http_request(o.server_port, "POST", "/v1/chat/completions", body(turn2, o.gen_tokens),
                         &first, false);
            llm_request req;
            req.slot = slot;
            req.max_tokens = o.gen_tokens;
            req.sampling = greedy();
            req.messages = [turn2](int, const auto &) { return turn2; };
            llm_run run = run_request(*engine, std::move(req));
            if (!run.result.error.empty()) throw std::runtime_error(run.result.error);
            if (i >= o.warmup) {
                remote_ms.push_back(run.submit_to_first_piece_ms);
                bare_ms.push_back(first);
            }
        }
        engine->release_slot(slot);
    } catch (const std::exception &e) {
        remote_error = e.what();
    }
    stop_process(pid);
    rep.add({"llm", tag + " 2nd turn first token (server)", median(parley_ms), median(server_ms),
             "bare: llama-server, prompt cache on, request to first streamed token"});
    if (remote_error.empty())
        rep.add({"llm", tag + " first token over --llm-url", median(remote_ms), median(bare_ms),
                 "Parley's remote engine against a bare streamed request, same server and "
                 "conversation, alternating"});
    else
        rep.skip(tag + " over --llm-url", remote_error);
    rep.details["llama_server"][tag] = {{"parley_prompt_tokens", parley_prompt},
                                        {"parley_cached_tokens", parley_cached},
                                        {"parley_ms", num(median(parley_ms))},
                                        {"server_ms", num(median(server_ms))}};
}

// --- TTS ---

double seconds_of(const tts_result &r) {
    return r.sample_rate ? double(r.pcm.size()) / r.sample_rate : 0.0;
}

void bench_tts_engine(const bench_options &o, const std::string &engine_name,
                      const std::string &model, const std::string &tmp, bench_report &rep) {
    tts_config c;
    c.engine = engine_name;
    c.model_path = model;
    c.defaults.voice = o.voice;
    std::unique_ptr<tts_engine> engine;
    std::string why;
    try {
        engine = make_tts_engine(c);
        why = engine ? engine->check(c.defaults) : "no engine";
    } catch (const std::exception &e) {
        why = e.what();
    }
    if (!why.empty()) {
        rep.skip(engine_name, why);
        return;
    }
    std::vector<double> ms;
    double audio_s = 0;
    for (int i = 0; i < o.warmup + o.repeats; ++i) {
        auto t0 = clock_type::now();
        tts_result r = engine->synthesize(o.text, c.defaults);
        double t = ms_since(t0);
        audio_s = seconds_of(r);
        if (i >= o.warmup) ms.push_back(t);
    }
    double parley = median(ms);
    if (engine_name == "piper") {
        rep.add({"tts", "piper first audio (1 phrase)", parley, NO_VALUE,
                 "no bare Piper tool here; audio " + std::to_string(audio_s).substr(0, 4) + " s"});
        rep.details["piper"] = {{"model", model}, {"ms", num(parley)}, {"audio_s", num(audio_s)}};
        return;
    }
    // espeak-ng CLI: wall time on the text minus wall time on "a" (start-up, voice loading).
    std::string cli = find_tool("espeak-ng");
    double bare = NO_VALUE, wall_text = NO_VALUE, wall_min = NO_VALUE;
    if (cli.empty()) {
        rep.skip("espeak-ng CLI", "not on PATH");
    } else {
        // As for pocketsphinx: the text once, then REPEAT_COPIES times in one process.
        std::string many;
        for (int k = 0; k < REPEAT_COPIES; ++k)
            many += (k ? " " : "") + o.text;
        auto wall = [&](const std::string &text) {
            command_result r =
                run_command({cli, "-v", o.voice, "-s", std::to_string(c.defaults.rate_wpm), "-w",
                             tmp + "/espeak.wav", text});
            return r.rc == 0 ? r.wall_ms : NO_VALUE;
        };
        std::vector<double> v, ones, manys;
        for (int i = 0; i < o.warmup + o.repeats; ++i) {
            double w1 = wall(o.text), wn = wall(many);
            if (i < o.warmup) continue;
            ones.push_back(w1);
            manys.push_back(wn);
            v.push_back((wn - w1) / (REPEAT_COPIES - 1));
        }
        wall_text = median(ones);
        wall_min = median(manys);
        bare = median(v);
    }
    rep.add({"tts", "espeak-ng time to audio (1 phrase)", parley, bare,
             "bare: CLI -w, (wall of 5 copies - wall of 1) / 4"});
    rep.details["espeak"] = {{"parley_ms", num(parley)},
                             {"audio_s", num(audio_s)},
                             {"cli_wall_ms", num(wall_text)},
                             {"cli_wall_5_copies_ms", num(wall_min)},
                             {"cli_ms", num(bare)}};
}

// --- output ---

void print_table(const bench_report &rep) {
    std::printf("\n%-6s %-38s %12s %12s %7s\n", "part", "stage", "parley ms", "bare ms", "ratio");
    for (const auto &r : rep.rows) {
        double ratio = r.parley_ms / r.bare_ms;
        std::printf("%-6s %-38s %12.2f %12.2f %7s\n", r.part.c_str(), r.stage.c_str(), r.parley_ms,
                    r.bare_ms,
                    std::isfinite(ratio) ? std::to_string(ratio).substr(0, 5).c_str() : "-");
    }
    std::printf("(ratio: Parley's time over the bare tool's; at most 1.1 is the aim)\n");
}

bool write_json(const bench_options &o, const bench_report &rep) {
    json rows = json::array();
    for (const auto &r : rep.rows)
        rows.push_back({{"part", r.part},
                        {"stage", r.stage},
                        {"parley_ms", num(r.parley_ms)},
                        {"bare_ms", num(r.bare_ms)},
                        {"ratio", num(r.parley_ms / r.bare_ms)},
                        {"note", r.note}});
    json j = {{"threads", o.threads},       {"repeats", o.repeats},
              {"warmup", o.warmup},         {"prompt_tokens", o.prompt_tokens},
              {"gen_tokens", o.gen_tokens}, {"rows", rows},
              {"skipped", rep.skipped},     {"details", rep.details}};
    std::error_code ec;
    if (fs::path(o.out).has_parent_path())
        fs::create_directories(fs::path(o.out).parent_path(), ec);
    std::ofstream f(o.out);
    f << j.dump(2) << "\n";
    if (!f) {
        std::fprintf(stderr, "cannot write %s\n", o.out.c_str());
        return false;
    }
    std::printf("wrote %s\n", o.out.c_str());
    return true;
}

} // namespace

int engine_bench_main(const std::vector<std::string> &args) {
    bench_options o;
    bool help = false;
    std::string err = parse_options(args, o, help);
    if (int rc = bench_cli_exit(help, err, USAGE); rc >= 0) return rc;
    char tmpl[] = "/tmp/parley-bench-XXXXXX";
    std::string tmp = mkdtemp(tmpl) ? tmpl : "/tmp";
    std::printf("engine benchmark: %d threads, %d warm-up + %d timed runs, median\n", o.threads,
                o.warmup, o.repeats);
    bench_report rep;

    if (o.has("asr")) {
        std::printf("ASR\n");
        std::vector<clip> clips = load_clips(o, rep);
        if (clips.empty()) {
            rep.skip("asr", "no 16 kHz WAV clips in " + o.audio_dir);
        } else {
            bench_whisper(o, clips, rep, false);
            bench_whisper(o, clips, rep, true);
            bench_pocketsphinx(o, clips, rep);
        }
    }
    if (o.has("llm")) {
        std::printf("LLM (%d prompt tokens, %d generated)\n", o.prompt_tokens, o.gen_tokens);
        for (const auto &m : o.llm_models)
            bench_llm_model(o, m, rep);
    }
    if (o.has("server")) {
        std::printf("LLM against llama-server\n");
        for (const auto &m : o.llm_models)
            bench_llama_server(o, m, rep);
    }
    if (o.has("tts")) {
        std::printf("TTS\n");
        bench_tts_engine(o, "espeak", "", tmp, rep);
        if (o.piper_model.empty())
            rep.skip("piper", "no --piper-model (make one: python3 tests/gen/make-tiny-piper.py "
                              "--preset medium build/bench-models)");
        else if (!fs::exists(o.piper_model))
            rep.skip("piper", "no file " + o.piper_model);
        else
            bench_tts_engine(o, "piper", o.piper_model, tmp, rep);
    }
    std::error_code ec;
    if (tmp != "/tmp") fs::remove_all(tmp, ec);
    print_table(rep);
    return write_json(o, rep) ? 0 : 1;
}

} // namespace parley
