// The conversation's settings in the option table: replies, sampling, turn-taking.
#include "core/option-table.h"
#include "pipeline/session.h"

#include <charconv>

namespace parley {

namespace {

void register_vad_options(option_table &t, vad_params &v) {
    t.add_choice("vad", v.engine, {"silero", "energy"},
                 "hands-free voice activity detector (silero: the Silero VAD v5 model of "
                 "node_modules/@ricky0123/vad-web, or --vad-model FILE.onnx; the energy detector "
                 "stands in when it is missing)");
    t.add_string("vad-model", v.model_path, "FILE.onnx", "the Silero VAD v5 model");
    t.add_float("vad-threshold", v.threshold, 1e-6f, 0.999999f, "P",
                "speech probability at which a window is speech (a client's start may override "
                "it and the timings below)",
                "between 0 and 1 (exclusive)");
    t.add_int("min-speech-ms", v.min_speech_ms, 0, 10000, "N", "shortest speech");
    t.add_int("min-silence-ms", v.min_silence_ms, 0, 10000, "N", "silence that ends a turn");
    t.add_int("prefix-pad-ms", v.prefix_pad_ms, 0, 5000, "N", "audio kept before the onset");
}

} // namespace

void register_session_options(option_table &t, session_config &c) {
    t.group("Replies");
    t.add_int("max-tokens", c.max_tokens, 1, 8192, "N", "reply length limit");
    t.add_int("max-turn-seconds", c.max_turn_seconds, 1, 3600, "N",
              "a user's turn longer than this is ended there, with the transcript so far "
              "(turn_too_long)");
    t.add_int("first-phrase-words", c.chunker.max_words_first, 0, 1000, "N",
              "the first phrase (spoken first) ends after N words when no comma or sentence end "
              "came sooner (0: no limit)",
              "0 (no limit)..1000");
    t.add_float("temperature", c.sampling.temperature, 0, 5, "T", "sampling temperature (0: greedy)");
    t.add_int("top-k", c.sampling.top_k, 0, 1 << 20, "K", "top-k sampling (0: off)", ">= 0");
    t.add_float("top-p", c.sampling.top_p, 1e-6f, 1, "P", "nucleus sampling", "in (0, 1]");
    t.add_float("min-p", c.sampling.min_p, 0, 1, "P", "min-p sampling");
    t.add_float("repeat-penalty", c.sampling.repeat_penalty, 1e-6f, 100, "R",
                "repetition penalty", "> 0");
    option_spec seed;
    seed.name = "seed";
    seed.value = "S";
    seed.help = "sampling seed (0: a new one per reply)";
    seed.fallback = "0";
    seed.set = [&c](const std::string &v) -> std::string {
        uint32_t x = 0;
        auto r = std::from_chars(v.data(), v.data() + v.size(), x);
        if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size())
            return "--seed needs a non-negative integer";
        c.sampling.seed = x;
        return {};
    };
    t.add(std::move(seed));
    t.add_string("system-prompt", c.system_prompt, "TEXT", "the assistant's instructions");
    t.last().fallback.clear(); // too long for --help
    t.last().check = [&c]() -> std::string {
        return c.system_prompt.size() > 4096 ? "system-prompt is limited to 4096 bytes" : "";
    };
    t.add_int("audio-rate", c.audio_out_rate, 8000, 48000, "HZ",
              "sample rate of the audio sent to clients", "8000..48000 Hz");
    option_spec mode;
    mode.name = "voice-mode";
    mode.value = "transcribe|direct";
    mode.help = "with --mmproj: transcribe (the model writes the transcript, then replies to it; "
                "with --asr audio-llm) or direct (one pass: the model hears the audio, writes "
                "the transcript, then the reply)";
    mode.fallback = "transcribe";
    mode.set = [&c](const std::string &v) -> std::string {
        if (v != "transcribe" && v != "direct")
            return "--voice-mode must be transcribe or direct, got '" + v + "'";
        c.direct_audio = v == "direct";
        return {};
    };
    t.add(std::move(mode));
    t.add_switch("asr-final-pass", c.asr_final_pass,
                 "with --asr-fast, wait for the recogniser's end-of-utterance pass");
    t.add_switch("no-prefill", c.prefill_while_speaking,
                 "do not evaluate the partial transcript into the KV cache while speaking", false);

    t.group("Hands-free turn-taking");
    register_vad_options(t, c.vad);
    t.add_int("barge-in-ms", c.barge_in_ms, 0, 5000, "N",
              "speech over a reply that interrupts it (shorter: a click)");
    t.add_int("speculative-silence-ms", c.speculative_silence_ms, 0, 10000, "N",
              "start the reply at this pause if the words are stable (0: off); it is sent only "
              "if the turn ends with the same words");
    t.last().check = [&c]() -> std::string {
        if (c.speculative_silence_ms < 0 || c.speculative_silence_ms >= c.vad.min_silence_ms)
            return "speculative-silence-ms must be 0 (off) or less than min-silence-ms";
        return {};
    };
    t.add_enum<echo_mode>("echo", c.echo,
                          {{"auto", ECHO_MODE_AUTO}, {"on", ECHO_MODE_ON}, {"off", ECHO_MODE_OFF}},
                          "server-side echo cancellation of hands-free input (auto: for clients "
                          "that say they have none)");
}

} // namespace parley
