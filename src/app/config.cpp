#include "app/config.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

namespace parley {

using json = nlohmann::json;

namespace {

bool to_int(const std::string &s, int &out) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool to_float(const std::string &s, float &out) {
    try {
        size_t n = 0;
        out = std::stof(s, &n);
        return n == s.size();
    } catch (...) {
        return false;
    }
}

// Sets one setting by flag name (without dashes). Returns an error line or empty.
std::string set(app_config &c, const std::string &key, const std::string &v) {
    c.given.insert(key);
    auto need_int = [&](int &dst) -> std::string {
        return to_int(v, dst) ? "" : "--" + key + " needs an integer, got '" + v + "'";
    };
    auto need_float = [&](float &dst) -> std::string {
        return to_float(v, dst) ? "" : "--" + key + " needs a number, got '" + v + "'";
    };
    if (key == "host")
        c.server.host = v;
    else if (key == "port")
        return need_int(c.server.port);
    else if (key == "api-key")
        c.server.api_key = v;
    else if (key == "allow-origin")
        c.server.allowed_origins.push_back(v);
    else if (key == "io-threads")
        return need_int(c.server.io_threads);
    else if (key == "io-slice-us")
        return need_int(c.server.io_slice_us);
    else if (key == "io-rt-priority")
        return need_int(c.server.io_rt_priority);
    else if (key == "model")
        c.llm.model_path = v;
    else if (key == "ctx")
        return need_int(c.llm.context);
    else if (key == "slots")
        return need_int(c.llm.slots);
    else if (key == "threads")
        return need_int(c.llm.threads);
    else if (key == "threads-batch")
        return need_int(c.llm.threads_batch);
    else if (key == "flash-attn") {
        if (v != "auto" && v != "on" && v != "off")
            return "--flash-attn must be auto, on or off, got '" + v + "'";
        c.llm.flash_attn = v;
    } else if (key == "mmproj")
        c.llm.mmproj_path = v;
    else if (key == "voice-mode") {
        if (v != "transcribe" && v != "direct")
            return "--voice-mode must be transcribe or direct, got '" + v + "'";
        c.session.direct_audio = v == "direct";
    } else if (key == "chat-template")
        c.llm.chat_template = v;
    else if (key == "max-tokens")
        return need_int(c.session.max_tokens);
    else if (key == "first-phrase-words")
        return need_int(c.session.chunker.max_words_first);
    else if (key == "temperature")
        return need_float(c.session.sampling.temperature);
    else if (key == "top-k")
        return need_int(c.session.sampling.top_k);
    else if (key == "top-p")
        return need_float(c.session.sampling.top_p);
    else if (key == "min-p")
        return need_float(c.session.sampling.min_p);
    else if (key == "repeat-penalty")
        return need_float(c.session.sampling.repeat_penalty);
    else if (key == "seed") {
        int seed = 0;
        if (!to_int(v, seed) || seed < 0) return "--seed needs a non-negative integer";
        c.session.sampling.seed = uint32_t(seed);
    } else if (key == "system-prompt")
        c.session.system_prompt = v;
    else if (key == "tts")
        c.tts.engine = v;
    else if (key == "voice")
        c.session.tts.voice = c.tts.defaults.voice = v;
    else if (key == "rate") {
        if (std::string e = need_int(c.session.tts.rate_wpm); !e.empty()) return e;
        c.tts.defaults.rate_wpm = c.session.tts.rate_wpm;
    } else if (key == "audio-rate")
        return need_int(c.session.audio_out_rate);
    else if (key == "asr")
        c.asr.engine = v;
    else if (key == "asr-model-dir")
        c.asr.model_dir = v;
    else if (key == "asr-model")
        c.asr.model_path = v;
    else if (key == "asr-language")
        c.asr.language = v;
    else if (key == "asr-threads")
        return need_int(c.asr.threads);
    else if (key == "tts-model")
        c.tts.model_path = v;
    else if (key == "profile")
        c.profile = v;
    else if (key == "vad")
        c.session.vad.engine = v;
    else if (key == "vad-model")
        c.session.vad.model_path = v;
    else if (key == "vad-threshold")
        return need_float(c.session.vad.threshold);
    else if (key == "min-speech-ms")
        return need_int(c.session.vad.min_speech_ms);
    else if (key == "min-silence-ms")
        return need_int(c.session.vad.min_silence_ms);
    else if (key == "prefix-pad-ms")
        return need_int(c.session.vad.prefix_pad_ms);
    else if (key == "barge-in-ms")
        return need_int(c.session.barge_in_ms);
    else if (key == "speculative-silence-ms")
        return need_int(c.session.speculative_silence_ms);
    else if (key == "echo")
        c.session.echo = v;
    else if (key == "db")
        c.db_path = v;
    else if (key == "log-level")
        c.log_level = v;
    else if (key == "output" || key == "o" || key == "wav")
        c.wav_out = v;
    else
        return "unknown option --" + key;
    return {};
}

bool is_switch(const std::string &key) {
    return key == "verbose" || key == "no-warmup" || key == "asr-final-pass" ||
           key == "no-prefill" || key == "asr-fast";
}

std::string set_switch(app_config &c, const std::string &key) {
    c.given.insert(key);
    if (key == "verbose") {
        c.llm.verbose = true;
        c.log_level = "debug";
    } else if (key == "no-warmup") {
        c.llm.warmup = false;
    } else if (key == "no-prefill") {
        c.session.prefill_while_speaking = false;
    } else if (key == "asr-fast") {
        c.asr.fast = true;
    } else if (key == "asr-final-pass") {
        c.session.asr_final_pass = true;
    }
    return {};
}

} // namespace

bool is_loopback(const std::string &host) {
    return host == "localhost" || host == "::1" || host.starts_with("127.");
}

std::string app_config::validate() const {
    if (server.port < 0 || server.port > 65535) return "port must be 0..65535";
    if (!is_loopback(server.host) && server.api_key.empty())
        return "listening on " + server.host +
               " needs an API key (--api-key KEY); "
               "loopback addresses need none";
    if (server.io_threads < 1 || server.io_threads > 64) return "io-threads must be 1..64";
    if (server.io_slice_us != 0 && (server.io_slice_us < 100 || server.io_slice_us > 100000))
        return "io-slice-us must be 0 (the kernel's default) or 100..100000";
    if (server.io_rt_priority < -1 || server.io_rt_priority > 99)
        return "io-rt-priority must be -1 (10 where allowed), 0 (the normal policy) or 1..99";
    if (llm.context < 64 || llm.context > 1 << 20) return "ctx must be 64..1048576 tokens";
    if (llm.slots < 1 || llm.slots > 64) return "slots must be 1..64";
    if (llm.threads < 0 || llm.threads > 256) return "threads must be 0 (auto)..256";
    if (llm.threads_batch < 0 || llm.threads_batch > 256)
        return "threads-batch must be 0 (auto)..256";
    if (session.max_tokens < 1 || session.max_tokens > 8192) return "max-tokens must be 1..8192";
    if (session.chunker.max_words_first < 0 || session.chunker.max_words_first > 1000)
        return "first-phrase-words must be 0 (no limit)..1000";
    if (session.max_tokens >= llm.context) return "max-tokens must be smaller than ctx";
    if (session.sampling.temperature < 0 || session.sampling.temperature > 5)
        return "temperature must be 0..5";
    if (session.sampling.top_p <= 0 || session.sampling.top_p > 1) return "top-p must be in (0, 1]";
    if (session.sampling.top_k < 0) return "top-k must be >= 0";
    if (session.sampling.min_p < 0 || session.sampling.min_p > 1) return "min-p must be 0..1";
    if (session.sampling.repeat_penalty <= 0) return "repeat-penalty must be > 0";
    if (session.audio_out_rate < 8000 || session.audio_out_rate > 48000)
        return "audio-rate must be 8000..48000 Hz";
    if (session.tts.rate_wpm < 80 || session.tts.rate_wpm > 450)
        return "rate must be 80..450 words per minute";
    if (tts.engine != "espeak" && tts.engine != "piper" && tts.engine != "none")
        return "tts must be espeak, piper or none";
    if (tts.engine == "piper" && tts.model_path.empty())
        return "tts piper needs a voice: --tts-model VOICE.onnx";
    if (asr.engine != "pocketsphinx" && asr.engine != "whisper" && asr.engine != "parakeet" &&
        asr.engine != "audio-llm" && asr.engine != "none")
        return "asr must be pocketsphinx, whisper, parakeet, audio-llm or none";
    if (session.direct_audio && (llm.model_path.empty() || llm.mmproj_path.empty()))
        return "voice-mode direct needs --model and --mmproj (the model's audio projector)";
    if (asr.engine == "audio-llm" && (llm.model_path.empty() || llm.mmproj_path.empty()))
        return "asr audio-llm needs --model and --mmproj (the model's audio projector)";
    if ((asr.engine == "whisper" || asr.engine == "parakeet") && asr.model_path.empty())
        return "asr " + asr.engine + " needs a model: --asr-model FILE";
    if (asr.threads < 0 || asr.threads > 256) return "asr-threads must be 0 (auto)..256";
    if (session.vad.engine != "silero" && session.vad.engine != "energy")
        return "vad must be silero or energy";
    if (std::string err = session.vad.validate(); !err.empty()) return "vad: " + err;
    if (session.barge_in_ms < 0 || session.barge_in_ms > 5000) return "barge-in-ms must be 0..5000";
    if (session.speculative_silence_ms < 0 ||
        session.speculative_silence_ms >= session.vad.min_silence_ms)
        return "speculative-silence-ms must be 0 (off) or less than min-silence-ms";
    if (session.echo != "auto" && session.echo != "on" && session.echo != "off")
        return "echo must be auto, on or off";
    if (session.system_prompt.size() > 4096) return "system-prompt is limited to 4096 bytes";
    if (log_level != "debug" && log_level != "info" && log_level != "warn" && log_level != "error")
        return "log-level must be debug, info, warn or error";
    return {};
}

std::string app_config::to_string() const {
    std::ostringstream o;
    o << "host=" << server.host << " port=" << server.port
      << " model=" << (llm.model_path.empty() ? "-" : llm.model_path) << " ctx=" << llm.context
      << " slots=" << llm.slots << " asr=" << asr.engine << " tts=" << tts.engine
      << " voice=" << session.tts.voice << " db=" << db_path;
    return o.str();
}

std::string apply_config_json(app_config &cfg, const std::string &text) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return "config file is not a JSON object";
    for (auto &[k, v] : j.items()) {
        std::string key = k;
        for (char &ch : key)
            if (ch == '_') ch = '-';
        std::vector<json> values =
            v.is_array() ? std::vector<json>(v.begin(), v.end()) : std::vector<json>{v};
        for (const json &x : values) {
            std::string err;
            if (x.is_boolean()) {
                if (!is_switch(key)) return "config key " + k + " is not a switch";
                if (x.get<bool>()) err = set_switch(cfg, key);
            } else if (x.is_string()) {
                err = set(cfg, key, x.get<std::string>());
            } else if (x.is_number()) {
                err = set(cfg, key, x.dump());
            } else {
                return "config key " + k + " has an unsupported value";
            }
            if (!err.empty()) return "config: " + err;
        }
    }
    return {};
}

std::string parse_args(app_config &cfg, const std::vector<std::string> &args,
                       std::vector<std::string> *positional) {
    // The config file first, so that flags override it.
    for (size_t i = 0; i < args.size(); ++i) {
        std::string path;
        if (args[i] == "--config" && i + 1 < args.size())
            path = args[i + 1];
        else if (args[i].starts_with("--config="))
            path = args[i].substr(9);
        else
            continue;
        std::ifstream f(path);
        if (!f) return "cannot read config file " + path;
        std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        if (std::string err = apply_config_json(cfg, text); !err.empty()) return path + ": " + err;
    }
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string &a = args[i];
        if (a == "-o") {
            if (i + 1 >= args.size()) return "-o needs a file name";
            cfg.wav_out = args[++i];
            continue;
        }
        if (!a.starts_with("--") || a == "--") {
            if (positional) positional->push_back(a);
            continue;
        }
        std::string key = a.substr(2), value;
        size_t eq = key.find('=');
        bool has_value = eq != std::string::npos;
        if (has_value) {
            value = key.substr(eq + 1);
            key = key.substr(0, eq);
        }
        if (key == "config") {
            if (!has_value) ++i;
            continue;
        }
        if (is_switch(key)) {
            set_switch(cfg, key);
            continue;
        }
        if (!has_value) {
            if (i + 1 >= args.size()) return "--" + key + " needs a value";
            value = args[++i];
        }
        if (std::string err = set(cfg, key, value); !err.empty()) return err;
    }
    return {};
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

options (also as keys of a JSON file given with --config FILE):
  --host ADDR             listen address or host name (default 127.0.0.1; all but loopback
                          need --api-key)
  --port N                listen port (default 8000)
  --api-key KEY           required as a bearer token, ?api_key= or WebSocket subprotocol parley-key.KEY
  --allow-origin ORIGIN   also accept WebSocket connections from this page origin (* for any)
  --io-slice-us N         scheduler slice of the WebSocket writer threads and the sessions they
                          start, 100..100000 us (100: a reply's audio goes out at once on a
                          busy machine, Linux 6.12+; default 0: the kernel's)
  --io-rt-priority N      SCHED_FIFO priority of the WebSocket I/O threads, 1..99 (needs
                          CAP_SYS_NICE or RLIMIT_RTPRIO; refused: a warning); 0: the normal
                          policy; default -1: 10 where the kernel allows it, else normal
  --profile NAME          a set of engines from the model manifest: offline, cpu, voxtral
                          (missing models are pulled; offline engines stand in when they can't
                          be; flags below override single engines)
  --model FILE.gguf       language model (none: transcription only)
  --ctx N                 context tokens per session (default 2048, capped at the model's)
  --slots N               sessions with their own KV cache (default 8)
  --threads N             LLM generation threads (default: all cores; half for a model
                          under 100M parameters)
  --threads-batch N       LLM prompt threads (default: all cores)
  --flash-attn auto|on|off  LLM flash attention (default auto: llama.cpp's choice, off for
                            attention heads under 32 wide, where it is slower)
  --mmproj FILE.gguf      the model's audio projector (Voxtral, Ultravox...): with --asr
                          audio-llm the language model hears the user itself
  --voice-mode transcribe|direct  with --mmproj: transcribe (the model writes the transcript,
                          then replies to it; with --asr audio-llm) or direct (one pass: the
                          model hears the audio, writes the transcript, then the reply)
  --chat-template NAME    llama.cpp template name, or "plain" (default: the model's own)
  --max-tokens N          reply length limit (default 128)
  --first-phrase-words N  the first phrase (spoken first) ends after N words when no comma or
                          sentence end came sooner (default 8; 0: no limit)
  --temperature T --top-k K --top-p P --min-p P --repeat-penalty R --seed S
  --system-prompt TEXT
  --tts espeak|piper|none speech output engine (default espeak)
  --voice NAME --rate WPM espeak-ng voice (default en-us) and speed (default 175)
  --audio-rate HZ         sample rate of the audio sent to clients (default 22050)
  --asr pocketsphinx|whisper|parakeet|audio-llm|none
  --asr-model FILE        whisper/parakeet model file; --asr-model-dir DIR for pocketsphinx
  --asr-language LANG --asr-threads N
  --tts-model VOICE.onnx  piper voice (with VOICE.onnx.json beside it)
  --asr-fast              faster transcripts at a cost in accuracy (docs/benchmarks.md).
                          PocketSphinx: the live first pass is the transcript, no end-of-
                          utterance decode (mean WER 0.39 against 0.27 on the LibriVox clips).
                          Whisper: one greedy pass on an encoder context cut to the utterance
                          instead of whisper-cli's beam search on the full 30 s context
  --asr-final-pass        with --asr-fast, wait for the recogniser's end-of-utterance pass
  --no-prefill            do not evaluate the partial transcript into the KV cache while speaking
  --vad silero|energy     hands-free voice activity detector (default silero: the Silero VAD v5
                          model of node_modules/@ricky0123/vad-web, or --vad-model FILE.onnx;
                          the energy detector stands in when it is missing)
  --vad-threshold P --min-speech-ms N --min-silence-ms N --prefix-pad-ms N
                          speech probability (0.5), shortest speech (250), silence that ends a
                          turn (500), audio kept before the onset (300); a client's start may
                          override them
  --barge-in-ms N         speech over a reply that interrupts it (default 96; shorter: a click)
  --speculative-silence-ms N  start the reply at this pause if the words are stable (default
                          200; 0: off); it is sent only if the turn ends with the same words
  --echo auto|on|off      server-side echo cancellation of hands-free input (auto: for clients
                          that say they have none)
  --db FILE               conversation store (default data/parley.db)
  --log-level LEVEL       debug, info, warn, error
  --verbose               engine logs too
)";
}

} // namespace parley
