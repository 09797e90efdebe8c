// The voice benchmark's statistics, word error rate, alignments and HTML report.
#include "bench/bench-report.h"
#include "bench/bench-util.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace parley;

TEST(bench_stats, median_and_nearest_rank_percentile_skip_missing_values) {
    EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
    EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
    EXPECT_DOUBLE_EQ(median({NO_VALUE, 5, 1}), 3);
    EXPECT_TRUE(std::isnan(median({})));
    std::vector<double> v;
    for (int i = 1; i <= 20; ++i)
        v.push_back(i);
    EXPECT_DOUBLE_EQ(percentile(v, 95), 19);
    EXPECT_DOUBLE_EQ(percentile(v, 100), 20);
    EXPECT_DOUBLE_EQ(percentile({7}, 95), 7);
    EXPECT_DOUBLE_EQ(max_of({1, NO_VALUE, 9, 3}), 9);
}

TEST(bench_stats, word_error_rate_counts_edits_over_the_reference) {
    EXPECT_DOUBLE_EQ(word_error_rate("and mister john", "And Mister, John!"), 0);
    EXPECT_DOUBLE_EQ(word_error_rate("a b c d", "a x c"), 0.5); // one substitution, one deletion
    EXPECT_DOUBLE_EQ(word_error_rate("a b", ""), 1);
    EXPECT_DOUBLE_EQ(word_error_rate("", "a"), 1); // against an empty reference: per word
}

TEST(bench_stats, alignment_bounds_skip_silence_and_noise_tokens) {
    const std::string alignment = "{\"w\":["
                                  "{\"t\":\"<sil>\",\"b\":0,\"d\":0.2},"
                                  "{\"t\":\"and(2)\",\"b\":0.2,\"d\":0.17},"
                                  "{\"t\":\"john\",\"b\":0.37,\"d\":0.3},"
                                  "{\"t\":\"[noise]\",\"b\":0.67,\"d\":0.1},"
                                  "{\"t\":\"+breath+\",\"b\":0.77,\"d\":0.1},"
                                  "{\"t\":\"<sil>\",\"b\":0.87,\"d\":0.5}]}";
    double b = 0, e = 0;
    ASSERT_TRUE(alignment_bounds(alignment, &b, &e));
    EXPECT_DOUBLE_EQ(b, 0.2);
    EXPECT_NEAR(e, 0.67, 1e-9);
    // The pauses between words: one of 0.25 s before "home".
    std::vector<double> pauses;
    ASSERT_TRUE(alignment_bounds(alignment.substr(0, alignment.size() - 2) +
                                     ",{\"t\":\"home\",\"b\":0.92,\"d\":0.3}]}",
                                 &b, &e, &pauses));
    ASSERT_EQ(pauses.size(), 1u);
    EXPECT_NEAR(pauses[0], 0.25, 1e-9);
    EXPECT_NEAR(e, 1.22, 1e-9);
    EXPECT_FALSE(alignment_bounds("{\"w\":[{\"t\":\"<sil>\",\"b\":0,\"d\":1}]}", &b, &e));
    EXPECT_FALSE(alignment_bounds("not json", &b, &e));
}

namespace {

voice_turn make_turn(int client, int index, double decision, double first_audio, bool ok = true) {
    voice_turn t;
    t.client = client;
    t.index = index;
    t.clip = "0870";
    t.ok = ok;
    t.at[VOICE_EVENT_END_OF_SPEECH] = decision - 500;
    t.at[VOICE_EVENT_DECISION] = decision;
    t.at[VOICE_EVENT_TRANSCRIPT] = decision + 1;
    t.at[VOICE_EVENT_FIRST_TOKEN] = decision + 5;
    t.at[VOICE_EVENT_FIRST_TEXT] = decision + first_audio - 1;
    t.at[VOICE_EVENT_FIRST_AUDIO] = decision + first_audio;
    t.at[VOICE_EVENT_DONE] = decision + first_audio + 100;
    t.wer = 0.25;
    return t;
}

} // namespace

// The benchmarks' command lines: flags, one value each, "--" hands the rest over, errors say
// which option and value.
TEST(bench_cli, options_flags_rest_and_errors) {
    int n = 0;
    bool flag = false;
    std::string name;
    std::vector<std::string> rest;
    bench_cli cli;
    cli.rest = &rest;
    cli.flags = {{"--flag", [&] { flag = true; }}};
    cli.valued = {{"--n", [&](const std::string &v) { n = parse_int(v, 1, 10); }},
                  {"--name", [&](const std::string &v) {
                       if (v.empty()) throw bench_option_error("--name needs a name");
                       name = v;
                   }}};
    bool help = false;
    EXPECT_EQ(parse_bench_cli({"--n", "3", "--flag", "--name", "x", "--", "--n", "y"}, cli, help),
              "");
    EXPECT_EQ(n, 3);
    EXPECT_TRUE(flag);
    EXPECT_EQ(name, "x");
    EXPECT_EQ(rest, (std::vector<std::string>{"--n", "y"}));
    EXPECT_FALSE(help);
    EXPECT_EQ(parse_bench_cli({"--n", "3x"}, cli, help), "bad value for --n: 3x");
    EXPECT_EQ(parse_bench_cli({"--n", "11"}, cli, help), "bad value for --n: 11");
    EXPECT_EQ(parse_bench_cli({"--n", ""}, cli, help), "bad value for --n: ");
    EXPECT_EQ(parse_bench_cli({"--n"}, cli, help), "option --n needs a value");
    EXPECT_EQ(parse_bench_cli({"--bogus"}, cli, help), "unknown option --bogus");
    EXPECT_EQ(parse_bench_cli({"--name", ""}, cli, help), "--name needs a name");
    cli.rest = nullptr;
    EXPECT_EQ(parse_bench_cli({"--"}, cli, help), "unexpected --");
    EXPECT_EQ(parse_bench_cli({"--n", "2", "-h", "--bogus"}, cli, help), "");
    EXPECT_TRUE(help);
    EXPECT_EQ(bench_cli_exit(false, "", "usage\n"), -1);
}

TEST(bench_report, summary_counts_only_finished_turns_after_the_warm_up) {
    voice_run run;
    run.clients = 2;
    run.cpu_s = 4;
    run.wall_s = 8;
    run.rss_after_warmup_kb = 1000;
    run.rss_end_kb = 1050;
    voice_turn warm = make_turn(0, 0, 100, 900);
    warm.warmup = true;
    run.turns.push_back(warm);
    run.turns.push_back(make_turn(0, 1, 1000, 40));
    run.turns.push_back(make_turn(1, 1, 2000, 60));
    voice_turn failed = make_turn(1, 2, 3000, 5000, false);
    failed.error = "no response_done within the timeout";
    run.turns.push_back(failed);
    voice_run_summary s = summarize_run(run);
    EXPECT_EQ(s.turns, 4);
    EXPECT_EQ(s.counted, 2);
    EXPECT_EQ(s.failed, 1);
    const stage_stats *audio = s.stage("first_audio");
    ASSERT_NE(audio, nullptr);
    EXPECT_EQ(audio->n, 2);
    EXPECT_DOUBLE_EQ(audio->median, 50);
    EXPECT_DOUBLE_EQ(audio->max, 60);
    EXPECT_DOUBLE_EQ(s.stage("end_of_speech_to_decision")->median, 500);
    // What the user waits leads the table: the end of speech to the first audio.
    ASSERT_FALSE(s.stages.empty());
    EXPECT_EQ(s.stages[0].key, "end_of_speech_to_first_audio");
    EXPECT_EQ(s.stages[0].label, "end of speech → first audio");
    EXPECT_DOUBLE_EQ(s.stages[0].median, 550);
    // Push-to-talk: the release (the decision) is where the user stopped.
    run.push_to_talk = true;
    voice_run_summary ptt = summarize_run(run);
    EXPECT_EQ(ptt.stages[0].label, "release → first audio");
    EXPECT_DOUBLE_EQ(ptt.stages[0].median, 50);
    EXPECT_DOUBLE_EQ(s.cpu_s_per_turn, 1);
    EXPECT_DOUBLE_EQ(s.cores, 0.5);
    EXPECT_DOUBLE_EQ(s.rss_growth_pct, 5);
    EXPECT_DOUBLE_EQ(s.mean_wer, 0.25);
}

TEST(bench_report, engine_time_after_the_decision_from_the_server_timings) {
    nlohmann::json timings = {{"transcript_ms", 2},      {"llm_queue_ms", 1},
                              {"llm_first_token_ms", 7}, {"llm_generate_ms", 90},
                              {"generated_tokens", 10},  {"tts_first_ms", 12}};
    // The first phrase is half the reply: 5 tokens, 4 after the first at 10 ms each.
    EXPECT_DOUBLE_EQ(engines_after_decision_ms(timings, "12345", "1234567890"),
                     2 + 1 + 7 + 40 + 12);
    // Speculative: what is left of the chain after the decision, at least 0.
    timings["speculative"] = true;
    timings["first_token_ms"] = -100;
    EXPECT_DOUBLE_EQ(engines_after_decision_ms(timings, "12345", "1234567890"), 0);
    timings["first_token_ms"] = 30;
    EXPECT_DOUBLE_EQ(engines_after_decision_ms(timings, "12345", "1234567890"), 30 + 40 + 12);
    EXPECT_TRUE(std::isnan(engines_after_decision_ms(nlohmann::json::object(), "", "")));
}

TEST(bench_report, html_is_self_contained_with_one_waterfall_row_per_turn) {
    voice_report rep;
    rep.title = "hands_free <test>";
    for (int clients : {1, 4}) {
        voice_run run;
        run.clients = clients;
        for (int k = 0; k < clients; ++k)
            for (int i = 0; i < 3; ++i)
                run.turns.push_back(make_turn(k, i, 1000.0 * (i + 1), 30.0 + 10 * k, i != 2));
        run.turns.back().error = "timed out";
        rep.runs.push_back(run);
    }
    rep.bare.push_back({"LLM first token", 10, 20, "note"});
    std::string html = render_voice_html(rep);
    auto count = [&](const std::string &what) {
        size_t n = 0;
        for (size_t p = 0; (p = html.find(what, p)) != std::string::npos; ++p)
            ++n;
        return n;
    };
    EXPECT_EQ(count("class=\"wf-row\""), 3u + 12u);
    EXPECT_NE(html.find("hands_free &lt;test&gt;"), std::string::npos);
    EXPECT_NE(html.find("decision &rarr; first audio"), std::string::npos);
    // What the user waits comes first.
    size_t wait = html.find("end of speech → first audio (what the user waits)");
    ASSERT_NE(wait, std::string::npos);
    EXPECT_LT(wait, html.find("decision &rarr; first audio"));
    EXPECT_NE(html.find("4-client p95 / 1-client p95"), std::string::npos);
    EXPECT_NE(html.find("<svg"), std::string::npos);
    // No external resources: no scripts, links or addresses besides the SVG namespace.
    EXPECT_EQ(count("http"), count("http://www.w3.org/2000/svg"));
    EXPECT_EQ(html.find("<script"), std::string::npos);
    EXPECT_EQ(html.find("<link"), std::string::npos);
    EXPECT_EQ(html.find("src="), std::string::npos);
}
