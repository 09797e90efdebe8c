// A transcript's timed segments as subtitles: SubRip (.srt) and WebVTT (.vtt).
#pragma once

#include <string>
#include <vector>

namespace parley {

struct timed_text {
    double start = 0, end = 0; // seconds
    std::string text;
};

// "00:01:02,345" (SubRip) or "00:01:02.345" (WebVTT).
std::string subtitle_time(double seconds, char decimal);

// Numbered cues from 1, blank line after each; empty segments are left out.
std::string to_srt(const std::vector<timed_text> &segments);
// "WEBVTT", then a cue per segment; a cue's text never holds "-->" or a blank line.
std::string to_vtt(const std::vector<timed_text> &segments);

} // namespace parley
