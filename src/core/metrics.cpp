#include "core/metrics.h"

#include <cstdio>

namespace parley {

void latency_histogram::observe(double ms) {
    size_t i = 0;
    while (i < bounds.size() && ms > bounds[i]) ++i;
    ++counts_[i];
    sum_us_ += int64_t(ms * 1000);
}

void latency_histogram::render(std::string &out, const std::string &name, const std::string &stage) const {
    char line[256];
    int64_t cumulative = 0;
    for (size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += counts_[i].load();
        if (i < bounds.size())
            snprintf(line, sizeof line, "%s_bucket{stage=\"%s\",le=\"%g\"} %lld\n", name.c_str(), stage.c_str(),
                     bounds[i], (long long)cumulative);
        else
            snprintf(line, sizeof line, "%s_bucket{stage=\"%s\",le=\"+Inf\"} %lld\n", name.c_str(), stage.c_str(),
                     (long long)cumulative);
        out += line;
    }
    snprintf(line, sizeof line, "%s_sum{stage=\"%s\"} %.3f\n%s_count{stage=\"%s\"} %lld\n", name.c_str(),
             stage.c_str(), double(sum_us_.load()) / 1000.0, name.c_str(), stage.c_str(), (long long)cumulative);
    out += line;
}

void metrics::count_error(const std::string &code) {
    ++errors;
    std::lock_guard lock(m_);
    ++errors_by_code_[code];
}

std::string metrics::render() const {
    std::string out;
    char line[256];
    auto gauge = [&](const char *name, const char *help, const char *type, double v) {
        snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %g\n", name, help, name, type, name, v);
        out += line;
    };
    gauge("parley_sessions", "Open sessions.", "gauge", double(sessions_open.load()));
    gauge("parley_sessions_total", "Sessions opened since start.", "counter", double(sessions_total.load()));
    gauge("parley_turns_total", "Replies started.", "counter", double(turns.load()));
    gauge("parley_interruptions_total", "Replies cut by an interrupt or a new turn.", "counter",
          double(interruptions.load()));
    gauge("parley_store_unsaved_turns", "Turns the store refused, kept in memory and written again.",
          "gauge", double(unsaved_turns.load()));
    out += "# HELP parley_errors_total Error events sent to clients, by code.\n# TYPE parley_errors_total counter\n";
    {
        std::lock_guard lock(m_);
        for (const auto &[code, n] : errors_by_code_) {
            snprintf(line, sizeof line, "parley_errors_total{code=\"%s\"} %lld\n", code.c_str(), (long long)n);
            out += line;
        }
    }
    out += "# HELP parley_engine_load_ms Engine load time in milliseconds.\n# TYPE parley_engine_load_ms gauge\n";
    snprintf(line, sizeof line, "parley_engine_load_ms{engine=\"llm\"} %.1f\nparley_engine_load_ms{engine=\"asr\"} %.1f\n"
             "parley_engine_load_ms{engine=\"tts\"} %.1f\n", llm_load_ms.load(), asr_load_ms.load(), tts_load_ms.load());
    out += line;
    out += "# HELP parley_speech_end_to_audio_ms From the end of the user's speech to the reply's "
           "first audio.\n# TYPE parley_speech_end_to_audio_ms histogram\n";
    speech_end_to_audio.render(out, "parley_speech_end_to_audio_ms", "speech_end_to_first_audio");
    out += "# HELP parley_turn_latency_ms Time from the end of the user's turn to each stage.\n"
           "# TYPE parley_turn_latency_ms histogram\n";
    transcript.render(out, "parley_turn_latency_ms", "transcript");
    first_token.render(out, "parley_turn_latency_ms", "first_token");
    first_text.render(out, "parley_turn_latency_ms", "first_text");
    first_audio.render(out, "parley_turn_latency_ms", "first_audio");
    total.render(out, "parley_turn_latency_ms", "total");
    return out;
}

} // namespace parley
