#include "text/phrase-chunker.h"
#include "text/subtitles.h"
#include "text/utf8.h"

#include <gtest/gtest.h>

using namespace parley;

namespace {

// Feeds text in pieces of `step` bytes (like tokens) and collects every phrase plus the rest.
std::vector<std::string> chunk(const std::string &text, size_t step) {
    phrase_chunker c;
    std::vector<std::string> out;
    for (size_t i = 0; i < text.size(); i += step)
        for (auto &p : c.push(text.substr(i, step)))
            out.push_back(p);
    std::string rest = c.flush();
    if (!rest.empty()) out.push_back(rest);
    return out;
}

struct chunk_case {
    const char *name;
    std::string text;
    std::vector<std::string> want;
};

const std::vector<chunk_case> cases = {
    {"two sentences", "Hello there. How are you?", {"Hello there.", "How are you?"}},
    {"first phrase ends at a comma after three words",
     "Well I think so, but later, maybe not. Fine.",
     {"Well I think so,", "but later, maybe not.", "Fine."}},
    {"a comma too early does not cut", "Yes, I can help. Sure.", {"Yes, I can help.", "Sure."}},
    {"decimal numbers stay whole", "Pi is 3.14 roughly. Next.", {"Pi is 3.14 roughly.", "Next."}},
    {"abbreviations",
     "Dr. Smith met Mr. Jones. Then left.",
     {"Dr. Smith met Mr. Jones.", "Then left."}},
    {"e.g. and i.e.",
     "Fruit e.g. apples and i.e. pears are good. Yes.",
     {"Fruit e.g. apples and i.e. pears are good.", "Yes."}},
    {"initials", "J. K. Rowling wrote it. Yes.", {"J. K. Rowling wrote it.", "Yes."}},
    {"exclamation and question", "Wow! Really? Yes.", {"Wow!", "Really?", "Yes."}},
    {"closing quote stays with its sentence",
     "He said \"go.\" Then ran.",
     {"He said \"go.\"", "Then ran."}},
    {"newline ends a phrase", "Line one\nLine two", {"Line one", "Line two"}},
    {"no boundary: all at flush", "no punctuation at all", {"no punctuation at all"}},
    {"ellipsis", "Well... maybe. Ok.", {"Well...", "maybe.", "Ok."}},
    {"utf-8 kept whole", "Café au lait. Très bien.", {"Café au lait.", "Très bien."}},
    {"trailing sentence without space waits for flush", "One. Two.", {"One.", "Two."}},
    {"a long first phrase ends after eight words",
     "one two three four five six seven eight nine ten. Next.",
     {"one two three four five six seven eight", "nine ten.", "Next."}},
    {"the word limit cuts the first phrase only",
     "a b c d e f g h i j k l m n o p q r s t.",
     {"a b c d e f g h", "i j k l m n o p q r s t."}},
    {"empty", "", {}},
    {"only spaces", "   ", {}},
};

} // namespace

TEST(phrase_chunker, table) {
    for (const chunk_case &c : cases) {
        for (size_t step : {1, 2, 3, 5, 1000}) {
            EXPECT_EQ(chunk(c.text, step), c.want) << c.name << " (step " << step << ")";
        }
    }
}

TEST(phrase_chunker, first_phrase_released_before_the_reply_ends) {
    phrase_chunker c;
    EXPECT_TRUE(c.push("Hello there").empty());
    EXPECT_TRUE(c.push(".").empty()); // "." alone could be "3.14": wait for the space
    auto out = c.push(" More");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], "Hello there.");
    EXPECT_EQ(c.flush(), "More");
}

TEST(phrase_chunker, commas_only_cut_the_first_phrase) {
    phrase_chunker c;
    auto a = c.push("One two three, four five six, seven eight nine, end. ");
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[0], "One two three,");
    EXPECT_EQ(a[1], "four five six, seven eight nine, end.");
}

TEST(phrase_chunker, first_phrase_word_limit_is_a_setting) {
    const std::string text = "one two three four five six seven eight nine ten. Next. ";
    phrase_chunker_params p;
    p.max_words_first = 0; // no limit: the sentence end
    phrase_chunker off(p);
    auto a = off.push(text);
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[0], "one two three four five six seven eight nine ten.");
    p.max_words_first = 4;
    phrase_chunker four(p);
    auto b = four.push(text);
    ASSERT_EQ(b.size(), 3u);
    EXPECT_EQ(b[0], "one two three four");
    // Released as soon as the fourth word is complete (the space after it), not at the end.
    phrase_chunker early(p);
    EXPECT_TRUE(early.push("one two three four").empty());
    auto c = early.push(" fi");
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0], "one two three four");
}

TEST(phrase_chunker, long_text_without_boundary_is_cut_at_a_space) {
    phrase_chunker_params p;
    p.max_chars = 20;
    p.max_words_first = 0; // the first phrase too
    phrase_chunker c(p);
    std::string words;
    for (int i = 0; i < 20; ++i)
        words += "word ";
    auto out = c.push(words);
    ASSERT_FALSE(out.empty());
    for (auto &s : out) {
        EXPECT_LE(s.size(), 20u);
        EXPECT_EQ(s.find("wor "), std::string::npos); // never splits a word
    }
}

TEST(utf8, stream_never_splits_a_character) {
    std::string text = "é€😀a";
    utf8_stream s;
    std::string out;
    for (char ch : text) {
        std::string piece = s.push(std::string(1, ch));
        EXPECT_TRUE(utf8_valid(piece));
        out += piece;
    }
    out += s.flush();
    EXPECT_EQ(out, text);
}

TEST(utf8, quoted_values_stay_one_printable_line) {
    EXPECT_EQ(quote_value("en-us"), "'en-us'");
    EXPECT_EQ(quote_value("a\nb\r\t\x7f\\'"), "'a\\nb\\r\\t\\x7f\\\\\\''");
    EXPECT_EQ(quote_value("caf\xC3\xA9 \xFF"), "'caf\xC3\xA9 \\xff'");
    EXPECT_EQ(quote_value(std::string(100, 'x'), 8), "'xxxxxxxx...'");
    // Cut on a character boundary: never half of "é".
    EXPECT_EQ(quote_value("abc\xC3\xA9", 4), "'abc...'");
}

TEST(utf8, invalid_bytes_are_replaced) {
    EXPECT_FALSE(utf8_valid("a\xff"));
    EXPECT_EQ(utf8_sanitize("a\xff"), "a\xEF\xBF\xBD");
    utf8_stream s;
    EXPECT_EQ(s.push("\xE2\x82"), "");
    EXPECT_EQ(s.flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(subtitles, srt_and_vtt_cues) {
    std::vector<timed_text> s = {
        {0.0, 2.5, "Hello there."}, {3.25, 3723.0456, "Line\nbreak --> arrow"}, {4, 5, "  "}};
    EXPECT_EQ(subtitle_time(3723.0456, ','), "01:02:03,046");
    EXPECT_EQ(subtitle_time(-1, '.'), "00:00:00.000");
    EXPECT_EQ(to_srt(s), "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
                         "2\n00:00:03,250 --> 01:02:03,046\nLine break -> arrow\n\n");
    EXPECT_EQ(to_vtt(s), "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
                         "00:00:03.250 --> 01:02:03.046\nLine break -> arrow\n\n");
    EXPECT_EQ(to_vtt({}), "WEBVTT\n\n");
}
