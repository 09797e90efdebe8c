// Cuts a streamed reply into phrases for TTS.
//
// Feed token text with push(); it returns every phrase completed so far. The first phrase is
// released at the first natural boundary (a sentence end, or a comma/semicolon/colon once it
// has min_words_first words, or after max_words_first words without either) so speech starts
// early; later phrases end at sentence ends (or at a comma once they exceed max_chars). A boundary
// is only confirmed by the whitespace after the punctuation, so "3.14", "e.g." and "Dr." are never
// cut and no word or UTF-8 character is split. flush() returns the rest at the end of the reply.
// One chunker per reply; not thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace parley {

struct phrase_chunker_params {
    int min_words_first = 3; // words before a comma may end the first phrase
    // The first phrase ends after this many words when no boundary came (0: no limit). Each
    // word of the first phrase is generated before anything is heard; with a 1.5B model on two
    // cores that is 50-80 ms a word.
    int max_words_first = 8;
    size_t max_chars = 240; // a longer phrase is cut at a comma, else at a space
};

class phrase_chunker {
  public:
    explicit phrase_chunker(phrase_chunker_params params = {}) : params_(params) {}

    std::vector<std::string> push(std::string_view text);
    std::string flush();
    // Number of phrases released so far.
    int released() const { return released_; }

  private:
    bool is_boundary(size_t ws_pos) const;
    std::string take(size_t end);

    phrase_chunker_params params_;
    std::string buf_;
    size_t scan_ = 0;
    int released_ = 0;
};

} // namespace parley
