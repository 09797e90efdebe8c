// Voice benchmark statistics and HTML report (see bench-report.h).
#include "bench/bench-report.h"

#include "bench/bench-util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace parley {

using json = nlohmann::json;

namespace {

const char *EVENT_KEYS[VOICE_EVENT_COUNT] = {
    "end_of_speech", "decision", "transcript", "first_token", "first_text", "first_audio", "done"};
const char *EVENT_LABELS[VOICE_EVENT_COUNT] = {"end of speech", "decision",   "final transcript",
                                               "first token",   "first text", "first audio",
                                               "response_done"};
// The waterfall's colour of the segment that ends at each event.
const char *EVENT_COLOURS[VOICE_EVENT_COUNT] = {"#888",    "#a0a7b4", "#4e79a7", "#b07aa1",
                                                "#f28e2b", "#e15759", "#59a14f"};

double number_of(const json &j, const char *key) {
    if (!j.is_object()) return NO_VALUE;
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : NO_VALUE;
}

std::string fmt(double v, int decimals = 1) {
    if (!std::isfinite(v)) return "-";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

stage_stats stats_of(std::string key, std::string label, const std::vector<double> &v) {
    stage_stats s;
    s.key = std::move(key);
    s.label = std::move(label);
    for (double x : v)
        if (std::isfinite(x)) ++s.n;
    s.median = median(v);
    s.p95 = percentile(v, 95);
    s.max = max_of(v);
    return s;
}

// Tick spacing of 1, 2 or 5 times a power of ten, about `ticks` ticks over span.
double tick_step(double span, int ticks) {
    double raw = span / std::max(1, ticks);
    double p = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p >= raw) return m * p;
    return 10 * p;
}

const char *CSS = R"(
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.settings{color:#555;margin:0 0 2px}
table{border-collapse:collapse;margin:6px 0 10px}th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5;font-weight:600}
.key{font-size:15px;margin:4px 0}.key b{font-size:16px}.good{color:#2a7d2a}.bad{color:#b22}
.note{color:#555;font-size:13px;margin:2px 0}.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
svg{display:block;margin:6px 0 18px}svg text{font:11px system-ui,sans-serif}.wf-row:hover rect.bg{fill:#eef3fb}
)";

std::string svg_text(double x, double y, const std::string &anchor, const std::string &text,
                     const std::string &extra = "") {
    return "<text x=\"" + fmt(x) + "\" y=\"" + fmt(y) + "\" text-anchor=\"" + anchor + "\"" +
           extra + ">" + html_escape(text) + "</text>";
}

std::string turn_name(const voice_turn &t) {
    return "client " + std::to_string(t.client) + ", turn " + std::to_string(t.index) + " (" +
           t.clip + ")";
}

// All of a turn's numbers, for the row's hover title.
std::string turn_title(const voice_turn &t) {
    std::string s = turn_name(t);
    if (t.warmup) s += ", warm-up";
    if (!t.ok) s += "\nFAILED: " + t.error;
    s += "\nms from the decision:";
    for (int e = 0; e < VOICE_EVENT_COUNT; ++e)
        if (e != VOICE_EVENT_DECISION && std::isfinite(t.at[e]))
            s += std::string("\n  ") + EVENT_LABELS[e] + ": " + fmt(t.since_decision(e));
    if (std::isfinite(t.overhead_ms))
        s += "\nParley's overhead: " + fmt(t.overhead_ms) + " ms (engines " + fmt(t.engines_ms) +
             " ms)";
    for (const char *k : {"asr_ms", "llm_queue_ms", "llm_prompt_ms", "llm_first_token_ms",
                          "tts_first_ms", "prompt_tokens", "cached_tokens"}) {
        double v = number_of(t.timings, k);
        if (std::isfinite(v)) s += std::string("\n  server ") + k + ": " + fmt(v);
    }
    if (t.speculative) s += "\nspeculative start";
    if (!t.transcript.empty()) s += "\nheard: " + t.transcript + " (WER " + fmt(t.wer, 2) + ")";
    if (!t.first_chunk.empty()) s += "\nfirst chunk: " + t.first_chunk;
    return s;
}

std::string waterfall_svg(const voice_run &run) {
    std::vector<const voice_turn *> rows;
    for (const auto &t : run.turns)
        rows.push_back(&t);
    std::sort(rows.begin(), rows.end(), [](const voice_turn *a, const voice_turn *b) {
        return a->client != b->client ? a->client < b->client : a->index < b->index;
    });
    // Two scales side by side, so that a few ms after the decision are not lost next to the
    // half second of silence before it: the left quarter holds what comes before the
    // decision, the rest what comes after.
    double lo = -100, hi = 20;
    for (const voice_turn *t : rows)
        for (int e = 0; e < VOICE_EVENT_COUNT; ++e) {
            double x = t->since_decision(e);
            if (!std::isfinite(x)) continue;
            lo = std::min(lo, x);
            hi = std::max(hi, x);
        }
    const double label_w = 170, plot_w = 940, row_h = 16, row_gap = 4, top = 44;
    const double left_w = plot_w / 4, right_w = plot_w - left_w;
    double step_lo = tick_step(-lo, 3), step_hi = tick_step(hi, 9);
    lo = std::floor(lo / step_lo) * step_lo;
    hi = std::ceil(hi / step_hi) * step_hi;
    auto xof = [&](double ms) {
        return ms < 0 ? label_w + (ms - lo) / -lo * left_w : label_w + left_w + ms / hi * right_w;
    };
    double height = top + double(rows.size()) * (row_h + row_gap) + 8;
    std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                    fmt(label_w + plot_w + 20, 0) + "\" height=\"" + fmt(height, 0) + "\">";
    auto grid = [&](double ms, bool zero) {
        double px = xof(ms);
        s += "<line x1=\"" + fmt(px) + "\" y1=\"" + fmt(top - 6) + "\" x2=\"" + fmt(px) +
             "\" y2=\"" + fmt(height - 8) + "\" stroke=\"" + (zero ? "#555" : "#e4e4e4") + "\"" +
             (zero ? " stroke-dasharray=\"4 3\"" : "") + "/>";
        s += svg_text(px, top - 10, "middle", fmt(ms, 0));
    };
    for (double x = lo; x < -step_lo / 2; x += step_lo)
        grid(x, false);
    for (double x = step_hi; x <= hi + step_hi / 2; x += step_hi)
        grid(x, false);
    grid(0, true);
    s += svg_text(label_w + left_w / 2, top - 28, "middle", "ms before the decision");
    s += svg_text(label_w + left_w + right_w / 2, top - 28, "middle", "ms after the decision");
    double y = top;
    for (const voice_turn *t : rows) {
        std::string name = "c" + std::to_string(t->client) + " #" + std::to_string(t->index) + " " +
                           t->clip + (t->warmup ? " (warm-up)" : "") + (t->ok ? "" : " FAILED");
        s += "<g class=\"wf-row\"" + std::string(t->warmup ? " opacity=\"0.55\"" : "") +
             "><title>" + html_escape(turn_title(*t)) + "</title>";
        s += "<rect class=\"bg\" x=\"0\" y=\"" + fmt(y - 1) + "\" width=\"" +
             fmt(label_w + plot_w + 20, 0) + "\" height=\"" + fmt(row_h + 2) +
             "\" fill=\"transparent\"/>";
        s += svg_text(label_w - 6, y + row_h - 4, "end", name, t->ok ? "" : " fill=\"#b22\"");
        double prev = t->at[VOICE_EVENT_END_OF_SPEECH];
        if (!std::isfinite(prev)) prev = t->at[VOICE_EVENT_DECISION];
        for (int e = VOICE_EVENT_DECISION; e < VOICE_EVENT_COUNT; ++e) {
            double at = t->at[e];
            if (!std::isfinite(at) || !std::isfinite(prev)) {
                if (std::isfinite(at)) prev = at;
                continue;
            }
            std::string what = std::string(EVENT_LABELS[e]) + ": " + fmt(t->since_decision(e)) +
                               " ms from the decision";
            if (at > prev) {
                double x0 = xof(prev - t->at[VOICE_EVENT_DECISION]);
                double x1 = xof(at - t->at[VOICE_EVENT_DECISION]);
                s += "<rect x=\"" + fmt(x0) + "\" y=\"" + fmt(y) + "\" width=\"" +
                     fmt(std::max(1.0, x1 - x0)) + "\" height=\"" + fmt(row_h) + "\" fill=\"" +
                     EVENT_COLOURS[e] + "\"><title>" +
                     html_escape(what + " (+" + fmt(at - prev) + " ms)") + "</title></rect>";
                prev = at;
            } else {
                // Before the event it follows (a speculative reply's first token comes before
                // the decision): a marker where it happened.
                double x = xof(at - t->at[VOICE_EVENT_DECISION]);
                s += "<circle cx=\"" + fmt(x) + "\" cy=\"" + fmt(y + row_h / 2) +
                     "\" r=\"4\" fill=\"" + EVENT_COLOURS[e] + "\" stroke=\"#fff\"><title>" +
                     html_escape(what) + "</title></circle>";
            }
        }
        s += "</g>";
        y += row_h + row_gap;
    }
    return s + "</svg>";
}

std::string legend() {
    std::string s = "<div class=\"legend\">";
    for (int e = VOICE_EVENT_DECISION; e < VOICE_EVENT_COUNT; ++e)
        s += std::string("<span><i style=\"background:") + EVENT_COLOURS[e] + "\"></i>" +
             EVENT_LABELS[e - 1] + " &rarr; " + EVENT_LABELS[e] + "</span>";
    return s + "<span>&#9679; an event before the one it follows (speculative start)</span></div>";
}

std::string summary_table(const voice_run_summary &s) {
    std::string h = "<table><tr><th>stage (ms)</th><th>n</th><th>median</th><th>p95</th>"
                    "<th>max</th></tr>";
    for (const auto &st : s.stages)
        h += "<tr><td>" + html_escape(st.label) + "</td><td>" + std::to_string(st.n) + "</td><td>" +
             fmt(st.median) + "</td><td>" + fmt(st.p95) + "</td><td>" + fmt(st.max) + "</td></tr>";
    return h + "</table>";
}

std::string target_class(double v, double target) {
    if (!std::isfinite(v)) return "";
    return v <= target ? " class=\"good\"" : " class=\"bad\"";
}

} // namespace

const char *voice_event_key(int event) {
    return event >= 0 && event < VOICE_EVENT_COUNT ? EVENT_KEYS[event] : "";
}

const char *voice_event_label(int event) {
    return event >= 0 && event < VOICE_EVENT_COUNT ? EVENT_LABELS[event] : "";
}

const stage_stats *voice_run_summary::stage(const std::string &key) const {
    for (const auto &s : stages)
        if (s.key == key) return &s;
    return nullptr;
}

voice_run_summary summarize_run(const voice_run &run) {
    voice_run_summary s;
    std::vector<std::vector<double>> v(VOICE_EVENT_COUNT);
    std::vector<double> overhead, engines, wer, user_wait;
    for (const auto &t : run.turns) {
        ++s.turns;
        if (!t.ok) ++s.failed;
        if (!t.counted()) continue;
        ++s.counted;
        if (t.speculative) ++s.speculative;
        s.splits += t.splits;
        if (t.splits > 0) ++s.splits_turns;
        v[0].push_back(t.at[VOICE_EVENT_DECISION] - t.at[VOICE_EVENT_END_OF_SPEECH]);
        int speech_end = run.push_to_talk ? VOICE_EVENT_DECISION : VOICE_EVENT_END_OF_SPEECH;
        user_wait.push_back(t.at[VOICE_EVENT_FIRST_AUDIO] - t.at[speech_end]);
        for (int e = VOICE_EVENT_TRANSCRIPT; e < VOICE_EVENT_COUNT; ++e)
            v[e].push_back(t.since_decision(e));
        overhead.push_back(t.overhead_ms);
        engines.push_back(t.engines_ms);
        wer.push_back(t.wer);
    }
    // What the user waits leads; the decision and the engine stages are its breakdown.
    s.stages.push_back(stats_of("end_of_speech_to_first_audio",
                                run.push_to_talk ? "release → first audio"
                                                 : "end of speech → first audio",
                                user_wait));
    s.stages.push_back(stats_of("end_of_speech_to_decision", "end of speech → decision", v[0]));
    for (int e = VOICE_EVENT_TRANSCRIPT; e < VOICE_EVENT_COUNT; ++e)
        s.stages.push_back(
            stats_of(EVENT_KEYS[e], std::string("decision → ") + EVENT_LABELS[e], v[e]));
    s.overhead_median = median(overhead);
    s.engines_median = median(engines);
    double wer_sum = 0;
    int wer_n = 0;
    for (double w : wer)
        if (std::isfinite(w)) {
            wer_sum += w;
            ++wer_n;
        }
    s.mean_wer = wer_n ? wer_sum / wer_n : NO_VALUE;
    s.cpu_s_per_turn = s.turns ? run.cpu_s / s.turns : NO_VALUE;
    s.cores = run.cpu_s / run.wall_s;
    s.machine_cores = run.machine_busy_s / run.wall_s;
    s.client_cores = run.client_cpu_s / run.wall_s;
    // /proc/stat and the processes' own counters are read a moment apart: never below 0.
    s.other_cores =
        std::max(0.0, s.machine_cores - s.client_cores - (std::isfinite(s.cores) ? s.cores : 0));
    s.rss_growth_pct = (run.rss_end_kb - run.rss_after_warmup_kb) / run.rss_after_warmup_kb * 100;
    return s;
}

double engines_after_decision_ms(const json &timings, const std::string &first_chunk,
                                 const std::string &reply) {
    double tts_first = number_of(timings, "tts_first_ms");
    double generate = number_of(timings, "llm_generate_ms");
    double generated = number_of(timings, "generated_tokens");
    // The rest of the first phrase: its share of the reply's tokens after the first one.
    double phrase = 0;
    if (std::isfinite(generate) && generated > 1 && !reply.empty()) {
        double share = std::min(1.0, double(first_chunk.size()) / double(reply.size()));
        double tokens = std::max(1.0, std::round(share * generated));
        phrase = (tokens - 1) * generate / (generated - 1);
    }
    if (timings.is_object() && timings.value("speculative", false)) {
        // Started in the pause before the decision: only what of its chain is left after it
        // (first_token_ms counts from the decision, negative when the token came before).
        double first_token = number_of(timings, "first_token_ms");
        return std::max(0.0, first_token + phrase + tts_first);
    }
    double transcript = number_of(timings, "transcript_ms");
    double queue = number_of(timings, "llm_queue_ms");
    double first_token = number_of(timings, "llm_first_token_ms");
    return transcript + queue + first_token + phrase + tts_first;
}

std::string html_escape(const std::string &s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\'':
            out += "&#39;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

std::string render_voice_html(const voice_report &rep) {
    std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<title>Parley voice benchmark</title><style>";
    h += CSS;
    h += "</style></head><body>\n<h1>Parley voice benchmark</h1>\n";
    h += "<p class=\"settings\"><b>" + html_escape(rep.title) + "</b></p>\n";
    for (const auto &line : rep.setting_lines)
        h += "<p class=\"settings\">" + html_escape(line) + "</p>\n";

    std::map<int, double> audio_p95;
    for (const auto &run : rep.runs) {
        voice_run_summary s = summarize_run(run);
        const stage_stats *audio = s.stage("first_audio");
        if (audio) audio_p95[run.clients] = audio->p95;
        h += "<h2>" + std::to_string(run.clients) + (run.clients == 1 ? " client" : " clients") +
             "</h2>\n";
        h += "<p class=\"note\">" + std::to_string(s.turns) + " turns (" +
             std::to_string(s.counted) + " counted, " + std::to_string(s.failed) + " failed) in " +
             fmt(run.wall_s) + " s; speculative starts " + std::to_string(s.speculative) + "/" +
             std::to_string(s.counted) + "; mean WER " + fmt(s.mean_wer, 2) + "</p>\n";
        if (const stage_stats *wait = s.stage("end_of_speech_to_first_audio"))
            h += "<p class=\"key\">" + html_escape(wait->label) + " (what the user waits): "
                 "median <b>" + fmt(wait->median) + " ms</b>, p95 <b>" + fmt(wait->p95) +
                 " ms</b></p>\n";
        if (audio)
            h += "<p class=\"key\">decision &rarr; first audio: median <b" +
                 target_class(audio->median, 100) + ">" + fmt(audio->median) + " ms</b>, p95 <b" +
                 target_class(audio->p95, 200) + ">" + fmt(audio->p95) +
                 " ms</b> (targets: 100 / 200 ms)</p>\n";
        h += "<p class=\"key\">Parley's own overhead: median <b>" + fmt(s.overhead_median) +
             " ms</b> (decision &rarr; first audio minus " + fmt(s.engines_median) +
             " ms median engine time after the decision)</p>\n";
        if (std::isfinite(s.machine_cores))
            h += "<p class=\"note\">machine busy " + fmt(s.machine_cores, 2) +
                 " cores over the run: the server " + fmt(s.cores, 2) + ", this benchmark " +
                 fmt(s.client_cores, 2) + ", other processes " + fmt(s.other_cores, 2) + "</p>\n";
        if (std::isfinite(run.cpu_s)) {
            h += "<p class=\"key\">server CPU: <b>" + fmt(s.cpu_s_per_turn, 2) +
                 " s per turn</b>, " + fmt(s.cores, 2) + " cores over the run; peak RSS <b>" +
                 fmt(run.hwm_kb / 1024) + " MiB</b></p>\n";
            if (std::isfinite(s.rss_growth_pct))
                h += "<p class=\"key\">memory: RSS after " + std::to_string(run.rss_warmup_turns) +
                     " turns " + fmt(run.rss_after_warmup_kb / 1024) + " MiB &rarr; at the end " +
                     fmt(run.rss_end_kb / 1024) + " MiB: <b" + target_class(s.rss_growth_pct, 10) +
                     ">" + fmt(s.rss_growth_pct) + "%</b> (target &le; 10% over 500 turns)</p>\n";
        }
        h += summary_table(s);
        if (s.failed) {
            h += "<p class=\"bad\">failed turns:</p><ul>";
            for (const auto &t : run.turns)
                if (!t.ok) h += "<li>" + html_escape(turn_name(t) + ": " + t.error) + "</li>";
            h += "</ul>\n";
        }
        h += "<h3>Waterfall: one row per turn (hover for the numbers)</h3>\n" + legend() + "\n";
        h += waterfall_svg(run) + "\n";
    }
    if (audio_p95.count(1)) {
        for (const auto &[n, p95] : audio_p95) {
            if (n == 1) continue;
            double r = p95 / audio_p95[1];
            h += "<p class=\"key\">" + std::to_string(n) +
                 "-client p95 / 1-client p95 (decision &rarr; first audio) = <b" +
                 target_class(r, 2) + ">" + fmt(r, 2) + "</b> (target &le; 2)</p>\n";
        }
    }
    if (!rep.bare.empty()) {
        h += "<h2>Against the bare engines</h2>\n<table><tr><th>stage</th><th>Parley ms</th>"
             "<th>bare ms</th><th>Parley / bare</th><th></th></tr>";
        for (const auto &b : rep.bare)
            h += "<tr><td>" + html_escape(b.stage) + "</td><td>" + fmt(b.parley_ms) + "</td><td>" +
                 fmt(b.bare_ms) + "</td><td>" + fmt(b.parley_ms / b.bare_ms, 2) +
                 "</td><td style=\"text-align:left\">" + html_escape(b.note) + "</td></tr>";
        h += "</table>\n";
    }
    if (!rep.notes.empty()) {
        h += "<h2>Notes</h2>\n";
        for (const auto &n : rep.notes)
            h += "<p class=\"note\">" + html_escape(n) + "</p>\n";
    }
    return h + "</body></html>\n";
}

} // namespace parley
