// The voice benchmark's results (what `parley bench` measures per turn), the statistics over
// them, and the self-contained HTML page: summary tables and a latency waterfall per turn.
//
//     voice_report rep = ...;                       // filled by voice-bench.cpp
//     voice_run_summary s = summarize_run(rep.runs[0]);
//     std::string page = render_voice_html(rep);   // inline CSS and SVG, no external resources
//
// Plain data and pure functions: any thread, no shared state.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <limits>
#include <string>
#include <vector>

namespace parley {

// The moments of a turn, in order, on the client's one steady clock.
enum voice_event {
    VOICE_EVENT_END_OF_SPEECH, // the client sent the sample at the clip's last word's end
    VOICE_EVENT_DECISION,      // hands-free: speech_stopped received; push-to-talk: stop sent
    VOICE_EVENT_TRANSCRIPT,    // the final transcript received
    VOICE_EVENT_FIRST_TOKEN,   // the decision + the server's timings.first_token_ms
    VOICE_EVENT_FIRST_TEXT,    // the first text_chunk received
    VOICE_EVENT_FIRST_AUDIO,   // the first binary message (audio) received
    VOICE_EVENT_DONE,          // response_done received
    VOICE_EVENT_COUNT,
};

// "end_of_speech", "decision", ... (JSON keys)
const char *voice_event_key(int event);
// "end of speech", "decision", "final transcript", ... (for people)
const char *voice_event_label(int event);

struct voice_turn {
    int client = 0;  // 0..clients-1
    int session = 0; // the client's connection number (--turns-per-session reconnects)
    int index = 0;   // the client's turn number, warm-up included
    std::string clip;
    bool warmup = false; // not counted in the statistics
    bool ok = false;     // response_done arrived in time
    std::string error;   // why not
    // ms since the benchmark started, on the client's clock; NaN: did not happen
    std::array<double, VOICE_EVENT_COUNT> at;
    double clip_start = std::numeric_limits<double>::quiet_NaN(); // first frame of the clip sent
    nlohmann::json timings;                                       // response_done.timings
    std::string transcript, reference, first_chunk, reply;
    double wer = std::numeric_limits<double>::quiet_NaN();
    bool speculative = false; // the reply started in a pause before the decision
    int splits = 0;           // extra ends of turn the VAD found inside the clip
    // Silence inside the user's speech (the clip's gaps between aligned words), ms; NaN when the
    // clip has no alignment.
    double pause_max_ms = std::numeric_limits<double>::quiet_NaN();
    double pause_total_ms = std::numeric_limits<double>::quiet_NaN();
    // Parley's own overhead: decision -> first audio minus the engines' time after the decision
    // (engines_after_decision_ms).
    double engines_ms = std::numeric_limits<double>::quiet_NaN();
    double overhead_ms = std::numeric_limits<double>::quiet_NaN();
    // The server after this turn (NaN: not sampled).
    double server_cpu_s = std::numeric_limits<double>::quiet_NaN();
    double server_rss_kb = std::numeric_limits<double>::quiet_NaN();
    nlohmann::json events = nlohmann::json::array(); // every message of the turn, with times

    voice_turn() { at.fill(std::numeric_limits<double>::quiet_NaN()); }
    // ms from the decision to the event (negative: before it); NaN when either is missing.
    double since_decision(int event) const { return at[event] - at[VOICE_EVENT_DECISION]; }
    bool counted() const { return ok && !warmup; }
};

struct voice_run {
    int clients = 1;
    std::string protocol = "native"; // or "realtime" (OpenAI Realtime API)
    bool push_to_talk = false; // the user's speech ends at the release (stop), not at its last word
    std::vector<voice_turn> turns; // in the order they ended
    double wall_s = std::numeric_limits<double>::quiet_NaN();
    double cpu_s = std::numeric_limits<double>::quiet_NaN(); // the server's, over the run
    // The whole machine's busy CPU time and this benchmark's own over the run: what is left is
    // other processes' (a shared machine makes every number slower).
    double machine_busy_s = std::numeric_limits<double>::quiet_NaN();
    double client_cpu_s = std::numeric_limits<double>::quiet_NaN();
    double hwm_kb = std::numeric_limits<double>::quiet_NaN();      // VmHWM after the run
    double peak_rss_kb = std::numeric_limits<double>::quiet_NaN(); // highest sampled VmRSS
    // Memory check: VmRSS once rss_warmup_turns turns had ended, and after the last turn.
    int rss_warmup_turns = 0;
    double rss_after_warmup_kb = std::numeric_limits<double>::quiet_NaN();
    double rss_end_kb = std::numeric_limits<double>::quiet_NaN();
    // The server's CPU seconds over the run by thread name (Parley names its threads: session,
    // llm with its OpenMP team, tts, io), highest first.
    std::vector<std::pair<std::string, double>> cpu_by_thread;
};

// One stage's statistics over the counted turns (ok, not warm-up).
struct stage_stats {
    std::string key, label;
    int n = 0;
    double median = 0, p95 = 0, max = 0; // NaN when n == 0
};

struct voice_run_summary {
    // End of speech (push-to-talk: the release) -> first audio, what the user waits; then its
    // breakdown: end of speech -> decision, decision -> each event.
    std::vector<stage_stats> stages;
    int turns = 0, counted = 0, failed = 0, speculative = 0, splits = 0;
    int splits_turns = 0; // turns with an end of turn inside the speech
    double mean_wer = 0;
    double overhead_median = 0, engines_median = 0;
    double cpu_s_per_turn = 0, cores = 0;                        // NaN without a sampled server
    double machine_cores = 0, client_cores = 0, other_cores = 0; // busy over the run
    double rss_growth_pct = 0;                                   // NaN without both samples
    const stage_stats *stage(const std::string &key) const;
};

voice_run_summary summarize_run(const voice_run &run);

// The engines' time on the path from the decision to the first audio, from response_done's
// timings: the final transcript (transcript_ms: the recogniser's work left at the decision),
// the LLM's queue and its time to the first token (llm_queue_ms + llm_first_token_ms, which
// holds llm_prompt_ms), the generation of the rest of the first phrase (estimated: its share of
// the reply's bytes times the generated tokens, at the reply's mean ms per token), and the
// first phrase's synthesis (tts_first_ms). A speculative reply started before the decision:
// only the part of that chain after it counts (first_token_ms, from the decision, + the rest of
// the first phrase + tts_first_ms, at least 0). NaN when the timings lack a part.
double engines_after_decision_ms(const nlohmann::json &timings, const std::string &first_chunk,
                                 const std::string &reply);

// A line of the bare-engine comparison: Parley's time against the bare tool's on the same input.
struct bare_row {
    std::string stage;
    double parley_ms = std::numeric_limits<double>::quiet_NaN();
    double bare_ms = std::numeric_limits<double>::quiet_NaN();
    std::string note;
};

struct voice_report {
    std::string title;                      // one line: mode, pace, server
    std::vector<std::string> setting_lines; // shown under the title
    std::vector<voice_run> runs;
    std::vector<bare_row> bare;
    std::vector<std::string> notes; // how numbers are computed; skipped parts and why
};

// The page: per run a summary table and a waterfall (one row per turn, events as coloured
// segments from the end of speech, hover titles with the numbers), then the bare engines.
std::string render_voice_html(const voice_report &report);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string html_escape(const std::string &s);

} // namespace parley
