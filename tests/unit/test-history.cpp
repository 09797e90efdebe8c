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
