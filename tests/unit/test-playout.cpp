// Playout with the clock passed in: no threads, no sleeps.
#include "pipeline/playout.h"

#include <gtest/gtest.h>

using namespace parley;
using namespace std::chrono_literals;

namespace {

constexpr int RATE = 1000; // one sample per ms keeps the audio arithmetic readable

sent_chunk spoken(const std::string &id, const std::string &text, int audio_ms,
                  std::vector<chunk_word> words = {}) {
    sent_chunk c;
    c.id = id;
    c.text = text;
    c.has_audio = true;
    c.audio_ms = audio_ms;
    c.words = std::move(words);
    c.pcm.assign(size_t(audio_ms), 0);
    for (int i = 0; i < audio_ms; i++)
        c.pcm[size_t(i)] = int16_t(i);
    return c;
}

// Two phrases sent at t0, played back to back: "Hello there." (0-1000 ms), "How are you?"
// (1000-1600 ms).
struct two_chunks {
    mono_time t0 = mono_time{} + 1h;
    playout_clock clock;
    reply_playout r{RATE};
    two_chunks() {
        size_t a = r.add(spoken("c0", "Hello there.", 1000, {{"Hello", 0, 400}, {"there", 450, 900}}));
        r.set_play_start(a, clock.schedule(1000, t0));
        size_t b = r.add(spoken("c1", "How are you?", 600,
                                {{"How", 0, 150}, {"are", 160, 300}, {"you", 310, 550}}));
        r.set_play_start(b, clock.schedule(600, t0));
    }
};

} // namespace

TEST(playout, the_clock_plays_chunks_back_to_back_without_gaps) {
    two_chunks p;
    EXPECT_EQ(p.r.chunks()[0].play_start, p.t0);
    EXPECT_EQ(p.r.chunks()[1].play_start, p.t0 + 1000ms);
    EXPECT_EQ(p.clock.end(), p.t0 + 1600ms);
    EXPECT_TRUE(p.clock.playing(p.t0 + 1599ms));
    EXPECT_FALSE(p.clock.playing(p.t0 + 1600ms));
    // A chunk sent after the queue ran dry starts when it is sent.
    EXPECT_EQ(p.clock.schedule(100, p.t0 + 5s), p.t0 + 5s);
    EXPECT_EQ(p.r.audio_end(p.t0), p.t0 + 1600ms);
}

TEST(playout, a_word_is_heard_when_its_middle_has_played) {
    two_chunks p;
    EXPECT_EQ(p.r.heard(0, 199), "");
    EXPECT_EQ(p.r.heard(0, 200), "Hello");
    EXPECT_EQ(p.r.heard(0, 675), "Hello there."); // the token runs to its punctuation
    EXPECT_EQ(p.r.heard(1, 240), "Hello there. How are");
    EXPECT_EQ(p.r.heard(1, 600), "Hello there. How are you?");
}

// Counted by the text's tokens, as the page counts them: a token the engine's words do not
// name ("The": its word came as "the") is heard with the tokens around it, and a token spoken as
// two words ("3.14") spans both.
TEST(playout, heard_words_are_the_texts_tokens_as_the_page_counts_them) {
    reply_playout r{RATE};
    r.add(spoken("c0", "hopping in The 3.14 end", 1200,
                 {{"hopping", 0, 300},
                  {"in", 300, 400},
                  {"the", 400, 500},
                  {"3", 500, 600},
                  {"14", 600, 900},
                  {"end", 900, 1200}}));
    EXPECT_EQ(r.heard(0, 349), "hopping");
    EXPECT_EQ(r.heard(0, 480), "hopping in The");
    EXPECT_EQ(r.heard(0, 699), "hopping in The"); // 3.14 spans 500-900: its middle is 700
    EXPECT_EQ(r.heard(0, 700), "hopping in The 3.14");
}

TEST(playout, without_word_timings_the_played_share_is_cut_back_to_a_word) {
    reply_playout r{RATE};
    r.add(spoken("c0", "one two three four", 1000));
    EXPECT_EQ(r.heard(0, 500), "one two"); // 9 of 18 characters, back to the space
    EXPECT_EQ(r.heard(0, 100), "");
    EXPECT_EQ(r.heard(0, 1000), "one two three four");
}

TEST(playout, the_position_follows_the_clock) {
    two_chunks p;
    size_t k;
    double ms;
    EXPECT_FALSE(p.r.position(p.t0, &k, &ms)) << "nothing has started at its start";
    ASSERT_TRUE(p.r.position(p.t0 + 1200ms, &k, &ms));
    EXPECT_EQ(k, 1u);
    EXPECT_DOUBLE_EQ(ms, 200);
    ASSERT_TRUE(p.r.position(p.t0 + 9s, &k, &ms));
    EXPECT_EQ(k, 1u);
    EXPECT_GE(ms, 600);
}

TEST(playout, a_cut_keeps_what_was_heard_and_the_clients_report_moves_it) {
    two_chunks p;
    EXPECT_EQ(p.r.cut(p.t0 + 700ms), "Hello there.");
    EXPECT_TRUE(p.r.is_cut());
    EXPECT_EQ(p.r.heard_text(), "Hello there.");
    // The client says it was only 300 ms into the first chunk.
    EXPECT_EQ(p.r.report_cut(*p.r.find("c0"), 300), "Hello");
    EXPECT_FALSE(p.r.find("c9").has_value());
}

TEST(playout, a_report_while_playing_moves_the_rest_of_the_reply) {
    two_chunks p;
    // At t0 + 500 ms the client reports 200 ms played of c0: it started 300 ms late.
    auto shift = p.r.report_playing(0, 200, p.t0 + 500ms);
    EXPECT_EQ(shift, 300ms);
    EXPECT_EQ(p.r.chunks()[0].play_start, p.t0 + 300ms);
    EXPECT_EQ(p.r.chunks()[1].play_start, p.t0 + 1300ms);
    p.clock.shift(shift);
    EXPECT_EQ(p.clock.end(), p.t0 + 1900ms);
}

TEST(playout, a_false_start_resumes_from_the_first_unheard_word) {
    two_chunks p;
    p.r.cut(p.t0 + 1200ms); // "How" heard (middle at 75 ms), "are" not (middle at 230 ms)
    std::vector<sent_chunk> rest = p.r.take_unheard();
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0].text, "are you?");
    EXPECT_EQ(rest[0].audio_ms, 600 - 160);
    ASSERT_EQ(rest[0].pcm.size(), 440u);
    EXPECT_EQ(rest[0].pcm[0], 160) << "the audio resumes at the first unheard word";
    ASSERT_EQ(rest[0].words.size(), 2u);
    EXPECT_EQ(rest[0].words[0].start_ms, 0);
    EXPECT_EQ(rest[0].words[1].start_ms, 310 - 160);
    // The record keeps the heard part; the rest is added back as it goes out again.
    ASSERT_EQ(p.r.chunks().size(), 2u);
    EXPECT_EQ(p.r.chunks()[1].text, "How");
    EXPECT_EQ(p.r.chunks()[1].audio_ms, 160);
    EXPECT_FALSE(p.r.is_cut());
    p.r.add(rest[0]);
    EXPECT_EQ(p.r.text(), "Hello there. How are you?");
}

TEST(playout, nothing_to_resume_when_the_cut_came_after_the_last_word) {
    two_chunks p;
    p.r.cut(p.t0 + 5s);
    EXPECT_TRUE(p.r.take_unheard().empty());
    reply_playout none{RATE};
    EXPECT_TRUE(none.take_unheard().empty()) << "never cut";
}

TEST(playout, a_chunk_cut_before_it_started_plays_again_whole) {
    two_chunks p;
    p.r.cut(p.t0 + 100ms); // in c0, no word heard
    std::vector<sent_chunk> rest = p.r.take_unheard();
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0].text, "Hello there.");
    EXPECT_EQ(rest[0].audio_ms, 1000);
    EXPECT_EQ(p.r.chunks().size(), 0u);
}
