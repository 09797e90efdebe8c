#include "text/subtitles.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace parley {

namespace {

// One line of cue text: line breaks become spaces (a blank line would end the cue), and
// "-->" (which starts a timing line) is broken.
std::string cue_text(const std::string &s) {
    std::string out;
    for (char c : s)
        out += (c == '\n' || c == '\r') ? ' ' : c;
    for (size_t at; (at = out.find("-->")) != std::string::npos;)
        out.replace(at, 3, "->");
    size_t b = out.find_first_not_of(' '), e = out.find_last_not_of(' ');
    return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

} // namespace

std::string subtitle_time(double seconds, char decimal) {
    long long ms = std::llround(std::max(0.0, seconds) * 1000.0);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
                  ms / 1000 % 60, decimal, ms % 1000);
    return buf;
}

std::string to_srt(const std::vector<timed_text> &segments) {
    std::string out;
    int n = 0;
    for (const timed_text &s : segments) {
        std::string text = cue_text(s.text);
        if (text.empty()) continue;
        out += std::to_string(++n) + "\n" + subtitle_time(s.start, ',') + " --> " +
               subtitle_time(s.end, ',') + "\n" + text + "\n\n";
    }
    return out;
}

std::string to_vtt(const std::vector<timed_text> &segments) {
    std::string out = "WEBVTT\n\n";
    for (const timed_text &s : segments) {
        std::string text = cue_text(s.text);
        if (text.empty()) continue;
        out += subtitle_time(s.start, '.') + " --> " + subtitle_time(s.end, '.') + "\n" + text +
               "\n\n";
    }
    return out;
}

} // namespace parley
