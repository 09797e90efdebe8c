// Playout: what a reply sent, where the client is playing it, and what was heard.
//
// reply_playout keeps one reply's chunks as they went out and answers, for a moment on the
// playout clock (passed in, never read here), how far the client has played and which words it
// heard; it moves the cut when the client reports where it stopped, and splits a cut reply for
// a resume after a false start. playout_clock is the session's estimate of when the audio
// sent so far ends, played without gaps.
//
// Pure values: no threads, no locks, no clock reads. The session calls them under its locks.
#pragma once

#include "core/clock.h"
#include "pipeline/session-events.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace parley {

// A phrase that went out, and where the client is playing it.
struct sent_chunk {
    std::string id;
    std::string text;
    bool has_audio = false;
    int audio_ms = 0;
    mono_time play_start{}; // when the client starts playing it (estimated, then reported)
    std::vector<chunk_word> words;
    bool words_estimated = false;
    std::vector<int16_t> pcm; // the audio sent, kept to resume after a false start
};

class reply_playout {
  public:
    explicit reply_playout(int audio_rate = 22050) : rate_(audio_rate) {}

    // Records a chunk that went out; returns its index.
    size_t add(sent_chunk c);
    void set_play_start(size_t chunk, mono_time start) { chunks_[chunk].play_start = start; }
    const std::vector<sent_chunk> &chunks() const { return chunks_; }
    std::optional<size_t> find(const std::string &chunk_id) const;
    // When the audio sent so far has played, if it plays on from its last chunk's start
    // (`now` when none is playing yet).
    mono_time audio_end(mono_time now) const;
    // The reply's text as sent, chunk texts joined by spaces.
    std::string text() const;

    // The reply's text as far as the client heard it: chunks before `chunk` whole, then the
    // words of `chunk` whose middle was played (a chunk without audio was shown whole).
    std::string heard(size_t chunk, double played_ms) const;
    // Where the client is at `now` by the clock; false when nothing has started.
    bool position(mono_time now, size_t *chunk, double *played_ms) const;

    // The reply stops here for the client: remembers where and returns the words heard.
    std::string cut(mono_time now);
    bool is_cut() const { return cut_; }
    // Of the reply's audio, how much was played before the cut (0: none, or not cut).
    int heard_ms() const;
    const std::string &heard_text() const { return heard_; }
    void set_heard_text(std::string heard) { heard_ = std::move(heard); }
    // The client's own account of where a cut reply stopped (chunk, played_ms) beats the
    // clock's estimate; returns the words heard.
    std::string report_cut(size_t chunk, double played_ms);
    // A report while it plays: `chunk` started `played_ms` before `now`. Moves the start of
    // that chunk and the ones after it; returns by how much.
    mono_clock::duration report_playing(size_t chunk, int played_ms, mono_time now);

    // After a false start: keeps the chunks the client heard (the cut chunk split at its first
    // unheard word, or played again from its start when it has no word timings) and returns
    // the rest, to send again; the reply is no longer cut. Empty: nothing left to resume.
    std::vector<sent_chunk> take_unheard();

  private:
    int rate_;
    std::vector<sent_chunk> chunks_;
    bool cut_ = false;
    std::string heard_;
    int cut_chunk_ = -1; // where the client stopped: this chunk, this far into its audio
    double cut_played_ms_ = 0;
};

// The session's playout clock: when the audio sent so far ends at the client, which plays its
// queue without gaps.
class playout_clock {
  public:
    // A chunk of audio_ms goes out at `now`: it starts when the audio before it ends, or now.
    mono_time schedule(int audio_ms, mono_time now);
    bool playing(mono_time now) const { return end_ > now; }
    mono_time end() const { return end_; }
    void stop(mono_time now) { end_ = now; }
    void shift(mono_clock::duration d) { end_ += d; }

  private:
    mono_time end_{};
};

} // namespace parley
