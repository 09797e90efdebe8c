#include "text/phrase-chunker.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace parley {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool is_closer(char c) {
    return c == '"' || c == '\'' || c == ')' || c == ']';
}

// Words that end in a period without ending a sentence (compared lowercase, without the dot).
constexpr std::array<std::string_view, 20> abbreviations = {
    "dr",  "mr",  "mrs", "ms", "prof", "st",  "jr",     "sr",  "vs",  "etc",
    "e.g", "i.e", "eg",  "ie", "no",   "fig", "approx", "inc", "ltd", "mt"};

// Closing quotes in UTF-8 (’ ” »): treated like ASCII closers.
size_t closer_len_before(std::string_view s, size_t end) {
    if (end >= 1 && is_closer(s[end - 1])) return 1;
    if (end >= 3) {
        std::string_view t = s.substr(end - 3, 3);
        if (t == "\xE2\x80\x99" || t == "\xE2\x80\x9D") return 3;
    }
    if (end >= 2 && s.substr(end - 2, 2) == "\xC2\xBB") return 2;
    return 0;
}

int count_words(std::string_view s) {
    int n = 0;
    bool in_word = false;
    for (char c : s) {
        if (is_space(c)) {
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            ++n;
        }
    }
    return n;
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b]))
        ++b;
    while (e > b && is_space(s[e - 1]))
        --e;
    return std::string(s.substr(b, e - b));
}

} // namespace

// ws_pos is the index of a whitespace character; is the text before it a phrase end?
bool phrase_chunker::is_boundary(size_t ws_pos) const {
    std::string_view s(buf_);
    if (s[ws_pos] == '\n') return true;
    size_t end = ws_pos;
    while (size_t n = closer_len_before(s, end))
        end -= n;
    if (end == 0) return false;
    char p = s[end - 1];
    if (p == '!' || p == '?') return true;
    if (p == '.') {
        // The word before the dot: an abbreviation or a single-letter initial is no sentence end.
        size_t w = end - 1;
        while (w > 0 && !is_space(s[w - 1]))
            --w;
        std::string word(s.substr(w, end - 1 - w));
        while (!word.empty() &&
               (word.front() == '"' || word.front() == '(' || word.front() == '\''))
            word.erase(word.begin());
        std::string lower;
        for (char c : word)
            lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (std::find(abbreviations.begin(), abbreviations.end(), lower) != abbreviations.end())
            return false;
        if (word.size() == 1 && std::isupper(static_cast<unsigned char>(word[0]))) return false;
        return true;
    }
    if (p == ',' || p == ';' || p == ':') {
        std::string_view phrase = s.substr(0, end);
        if (released_ == 0 && count_words(phrase) >= params_.min_words_first) return true;
        if (phrase.size() >= params_.max_chars) return true;
    }
    return released_ == 0 && params_.max_words_first > 0 &&
           count_words(s.substr(0, ws_pos)) >= params_.max_words_first;
}

std::string phrase_chunker::take(size_t end) {
    std::string phrase = trim(std::string_view(buf_).substr(0, end));
    buf_.erase(0, end);
    scan_ = 0;
    return phrase;
}

std::vector<std::string> phrase_chunker::push(std::string_view text) {
    std::vector<std::string> out;
    buf_.append(text);
    for (size_t i = scan_; i < buf_.size(); ++i) {
        if (!is_space(buf_[i])) continue;
        if (trim(std::string_view(buf_).substr(0, i)).empty()) continue;
        if (is_boundary(i)) {
            std::string phrase = take(i + 1);
            ++released_;
            out.push_back(std::move(phrase));
            i = static_cast<size_t>(-1); // restart at 0 after the loop's ++
            continue;
        }
    }
    // Too long without a boundary: cut at the last space so speech keeps flowing.
    if (buf_.size() > params_.max_chars * 2) {
        size_t cut = buf_.find_last_of(' ', params_.max_chars);
        if (cut != std::string::npos && cut > 0) {
            ++released_;
            out.push_back(take(cut + 1));
        }
    }
    scan_ = buf_.empty() ? 0 : buf_.size() - 1;
    return out;
}

std::string phrase_chunker::flush() {
    std::string rest = trim(buf_);
    buf_.clear();
    scan_ = 0;
    if (!rest.empty()) ++released_;
    return rest;
}

} // namespace parley
