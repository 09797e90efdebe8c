#include "llm/conversation.h"
#include "llm/llm.h"

#include <gtest/gtest.h>

using namespace parley;

namespace {

// One "token" per word of every message, plus two per message for the template.
int count_words(const std::vector<chat_message> &msgs) {
    int n = 0;
    for (const auto &m : msgs) {
        n += 2;
        bool in = false;
        for (char c : m.content) {
            if (c == ' ')
                in = false;
            else if (!in) {
                in = true;
                ++n;
            }
        }
    }
    return n;
}

std::vector<turn_record> turns(int n) {
    std::vector<turn_record> out;
    for (int i = 1; i <= n; ++i)
        out.push_back({i, "question " + std::to_string(i), "answer number " + std::to_string(i),
                       false, "{}", 0});
    return out;
}

} // namespace

TEST(history, everything_fits) {
    auto msgs = fit_history("be brief", turns(3), "hello", 1000, count_words);
    ASSERT_EQ(msgs.size(), 1u + 6u + 1u);
    EXPECT_EQ(msgs.front().role, "system");
    EXPECT_EQ(msgs[1].content, "question 1");
    EXPECT_EQ(msgs.back().content, "hello");
}

TEST(history, oldest_turns_go_first_and_system_prompt_stays) {
    // system 2+2, each turn (2+2)+(2+3)=9, user 2+1: budget 25 keeps two turns.
    auto msgs = fit_history("be brief", turns(5), "hello", 25, count_words);
    ASSERT_EQ(msgs.size(), 1u + 4u + 1u);
    EXPECT_EQ(msgs[0].content, "be brief");
    EXPECT_EQ(msgs[1].content, "question 4");
    EXPECT_EQ(msgs[3].content, "question 5");
    EXPECT_LE(count_words(msgs), 25);
}

// Once the context is full, dropping the oldest turns one at a time moves the cut at every turn
// (the KV cache behind it shifts and the new message is evaluated again); in steps of four the
// kept turns stay the same for the next turns. Each turn is 9 "tokens", system + user 7.
TEST(history, oldest_turns_go_in_steps_and_the_cut_stays_put) {
    const int budget = 7 + 9 * 6; // six turns fit
    auto first_kept = [&](int n, int step) {
        auto msgs = fit_history("be brief", turns(n), "hello", budget, count_words, step);
        EXPECT_LE(count_words(msgs), budget);
        return msgs.size() > 2 ? msgs[1].content : std::string("none");
    };
    EXPECT_EQ(first_kept(9, 1), "question 4");
    EXPECT_EQ(first_kept(10, 1), "question 5"); // moved
    EXPECT_EQ(first_kept(9, 4), "question 5");  // turns 1-4 dropped
    EXPECT_EQ(first_kept(10, 4), "question 5"); // the same cut: the cache still matches
    EXPECT_EQ(first_kept(11, 4), "question 9"); // turns 1-8
    EXPECT_EQ(first_kept(6, 4), "question 1");  // all fit: nothing dropped
    // Nothing fits: the system prompt and the message only, whatever the step.
    auto none = fit_history("be brief", turns(9), "hello", 3, count_words, 4);
    EXPECT_EQ(none.size(), 2u);
}

TEST(history, nothing_fits_keeps_system_and_user) {
    auto msgs = fit_history("be brief", turns(5), "hello", 3, count_words);
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].role, "system");
    EXPECT_EQ(msgs[1].content, "hello");
}

TEST(history, plain_format_and_stop_filter) {
    std::string p =
        format_plain_chat({{"system", "S"}, {"user", "hi"}, {"assistant", "yo"}, {"user", "q"}});
    EXPECT_EQ(p, "S\n\nUser: hi\nAssistant: yo\nUser: q\nAssistant:");
    stop_filter f({"\nUser:"});
    std::string out = f.push("Hello");
    out += f.push(" there.\nUs");
    EXPECT_FALSE(f.stopped());
    out += f.push("er: more");
    EXPECT_TRUE(f.stopped());
    out += f.flush();
    EXPECT_EQ(out, "Hello there.");
    stop_filter g({"\nUser:"});
    std::string o2 = g.push("a\nUs");
    o2 += g.push("ually");
    o2 += g.flush();
    EXPECT_EQ(o2, "a\nUsually");
}

TEST(history, a_message_over_the_budget_is_cut_to_what_fits) {
    bool cut = false;
    auto msgs = fit_history("be brief", turns(5), "one two three four five six", 9, count_words, 4,
                            &cut);
    EXPECT_TRUE(cut);
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[1].content, "one two three "); // (2 + 2) + (2 + 3): the longest such beginning
    // Whole characters only: a cut never splits UTF-8.
    auto bytes = [](const std::vector<chat_message> &m) {
        int n = 0;
        for (auto &x : m)
            n += int(x.content.size());
        return n;
    };
    std::string emoji;
    for (int i = 0; i < 100; ++i)
        emoji += "\xF0\x9F\x98\x80"; // U+1F600
    msgs = fit_history("", {}, emoji, 42, bytes, 1, &cut);
    EXPECT_TRUE(cut);
    EXPECT_EQ(msgs.back().content.size(), 40u);
    msgs = fit_history("", {}, "short", 42, bytes, 1, &cut);
    EXPECT_FALSE(cut);
    EXPECT_EQ(msgs.back().content, "short");
}
