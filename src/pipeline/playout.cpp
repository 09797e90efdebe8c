#include "pipeline/playout.h"

#include <algorithm>

namespace parley {

namespace {

// How much of chunk c was heard when `played_ms` of it had played, counted by the chunk's
// tokens (its text split at white space), as the page counts them: each engine word is placed
// in the token where its text is found (searching on from the last one), a token's time spans
// its words, and the tokens before the first timed one whose middle was not yet played were
// heard. `words`: the engine's words before that token; `text_end`: where the heard tokens end
// in the text (0: none).
struct heard_split {
    size_t words = 0;
    size_t text_end = 0;
};

heard_split split_heard(const sent_chunk &c, double played_ms) {
    struct token {
        size_t begin, end;
        int start_ms = -1, end_ms = -1;
        size_t first_word = SIZE_MAX;
    };
    std::vector<token> tokens;
    for (size_t i = 0; i < c.text.size();) {
        size_t b = c.text.find_first_not_of(" \t\n", i);
        if (b == std::string::npos) break;
        size_t e = c.text.find_first_of(" \t\n", b);
        if (e == std::string::npos) e = c.text.size();
        tokens.push_back({b, e});
        i = e;
    }
    size_t from = 0, k = 0;
    for (size_t wi = 0; wi < c.words.size(); wi++) {
        const chunk_word &w = c.words[wi];
        if (w.text.empty()) continue;
        size_t at = c.text.find(w.text, from);
        if (at == std::string::npos) continue;
        from = at + w.text.size();
        while (k < tokens.size() && tokens[k].end <= at)
            k++;
        if (k == tokens.size()) break;
        token &t = tokens[k];
        if (t.start_ms < 0) {
            t.start_ms = w.start_ms;
            t.first_word = wi;
        }
        t.end_ms = std::max(t.end_ms, w.end_ms);
    }
    heard_split h;
    size_t cut = tokens.size();
    for (size_t i = 0; i < tokens.size(); i++)
        if (tokens[i].start_ms >= 0 && (tokens[i].start_ms + tokens[i].end_ms) / 2.0 > played_ms) {
            cut = i;
            break;
        }
    h.text_end = cut == 0 ? 0 : tokens[cut - 1].end;
    h.words = cut < tokens.size() ? tokens[cut].first_word : c.words.size();
    return h;
}

// Splits chunk c at its first word not heard after `played_ms`: c keeps the unheard rest (its
// audio and word timings shifted to start at 0), the heard part is returned.
sent_chunk split_at_unheard(sent_chunk &c, double played_ms, int rate) {
    heard_split h = split_heard(c, played_ms);
    size_t w = h.words;
    int from_ms = c.words.empty() ? 0 : w < c.words.size() ? c.words[w].start_ms : c.audio_ms;
    // The rest's text starts after the heard token and the spaces after it.
    size_t at =
        h.text_end == 0 ? 0 : std::min(c.text.size(), c.text.find_first_not_of(' ', h.text_end));
    size_t sample = std::min(c.pcm.size(), size_t(int64_t(from_ms) * rate / 1000));
    sent_chunk heard = c;
    heard.text = c.text.substr(0, at);
    while (!heard.text.empty() && heard.text.back() == ' ')
        heard.text.pop_back();
    heard.audio_ms = from_ms;
    heard.words.resize(w);
    heard.pcm.resize(sample);
    c.text = c.text.substr(at);
    c.pcm.erase(c.pcm.begin(), c.pcm.begin() + ptrdiff_t(sample));
    c.audio_ms -= from_ms;
    std::vector<chunk_word> shifted;
    for (size_t i = w; i < c.words.size(); i++)
        shifted.push_back(
            {c.words[i].text, c.words[i].start_ms - from_ms, c.words[i].end_ms - from_ms});
    c.words = std::move(shifted);
    return heard;
}

} // namespace

size_t reply_playout::add(sent_chunk c) {
    chunks_.push_back(std::move(c));
    return chunks_.size() - 1;
}

std::optional<size_t> reply_playout::find(const std::string &chunk_id) const {
    for (size_t i = 0; i < chunks_.size(); i++)
        if (chunks_[i].id == chunk_id) return i;
    return std::nullopt;
}

mono_time reply_playout::audio_end(mono_time now) const {
    for (auto c = chunks_.rbegin(); c != chunks_.rend(); ++c)
        if (c->has_audio && c->play_start != mono_time{})
            return std::max(now, c->play_start + std::chrono::milliseconds(c->audio_ms));
    return now;
}

std::string reply_playout::text() const {
    std::string all;
    for (const sent_chunk &c : chunks_)
        all += (all.empty() || c.text.empty() ? "" : " ") + c.text;
    return all;
}

std::string reply_playout::heard(size_t chunk, double played_ms) const {
    std::string out;
    auto add = [&out](const std::string &s) {
        if (s.empty()) return;
        if (!out.empty()) out += " ";
        out += s;
    };
    for (size_t i = 0; i < chunks_.size() && i <= chunk; i++) {
        const sent_chunk &c = chunks_[i];
        if (i < chunk || !c.has_audio || played_ms >= c.audio_ms) {
            add(c.text);
            continue;
        }
        if (!c.words.empty()) {
            add(c.text.substr(0, split_heard(c, played_ms).text_end));
        } else if (c.audio_ms > 0) {
            // No timings: the played share of the text, cut back to a word boundary.
            size_t n = size_t(double(c.text.size()) * played_ms / c.audio_ms);
            size_t sp = c.text.rfind(' ', n);
            add(n >= c.text.size() ? c.text : sp == std::string::npos ? "" : c.text.substr(0, sp));
        }
    }
    return out;
}

bool reply_playout::position(mono_time now, size_t *chunk, double *played_ms) const {
    size_t last = 0;
    double played = 0;
    bool any = false;
    for (size_t i = 0; i < chunks_.size(); i++) {
        const sent_chunk &c = chunks_[i];
        if (c.has_audio) {
            if (c.play_start == mono_time{} || c.play_start >= now) break; // not yet playing
            played = ms_between(c.play_start, now);
        } else {
            played = 0;
        }
        last = i;
        any = true;
        if (c.has_audio && played < c.audio_ms) break;
    }
    *chunk = last;
    *played_ms = played;
    return any;
}

std::string reply_playout::cut(mono_time now) {
    size_t k;
    double played;
    cut_ = true;
    if (position(now, &k, &played)) {
        cut_chunk_ = int(k);
        cut_played_ms_ = played;
        heard_ = heard(k, played);
    } else {
        cut_chunk_ = -1;
        heard_.clear();
    }
    return heard_;
}

int reply_playout::heard_ms() const {
    if (!cut_ || cut_chunk_ < 0) return 0;
    double ms = 0;
    for (size_t i = 0; i < chunks_.size() && i <= size_t(cut_chunk_); i++)
        if (chunks_[i].has_audio)
            ms += i == size_t(cut_chunk_) ? std::min(cut_played_ms_, double(chunks_[i].audio_ms))
                                          : chunks_[i].audio_ms;
    return int(ms);
}

std::string reply_playout::report_cut(size_t chunk, double played_ms) {
    cut_chunk_ = int(chunk);
    cut_played_ms_ = played_ms;
    return heard(chunk, played_ms);
}

mono_clock::duration reply_playout::report_playing(size_t chunk, int played_ms, mono_time now) {
    sent_chunk &c = chunks_[chunk];
    if (!c.has_audio || c.play_start == mono_time{}) return {};
    auto shift = (now - std::chrono::milliseconds(played_ms)) - c.play_start;
    for (size_t i = chunk; i < chunks_.size(); i++)
        if (chunks_[i].play_start != mono_time{}) chunks_[i].play_start += shift;
    return shift;
}

std::vector<sent_chunk> reply_playout::take_unheard() {
    if (!cut_ || cut_chunk_ < 0 || size_t(cut_chunk_) >= chunks_.size()) return {};
    size_t k = size_t(cut_chunk_);
    std::vector<sent_chunk> rest(chunks_.begin() + ptrdiff_t(k), chunks_.end());
    sent_chunk &first = rest.front();
    std::optional<sent_chunk> heard_part;
    if (!first.has_audio || cut_played_ms_ >= first.audio_ms) {
        rest.erase(rest.begin()); // chunk k was heard whole
    } else {
        // Split chunk k at its first unheard word, as heard() cuts the history; without timings
        // it is played again from its start.
        heard_part = split_at_unheard(first, cut_played_ms_, rate_);
        if (first.text.empty()) rest.erase(rest.begin());
    }
    if (rest.empty()) return {};
    // The record of what went out: the heard part, then the chunks sent again (added back as
    // they go out).
    chunks_.resize(k);
    if (heard_part && !heard_part->text.empty() && heard_part->audio_ms > 0)
        chunks_.push_back(std::move(*heard_part));
    cut_ = false;
    cut_chunk_ = -1;
    return rest;
}

mono_time playout_clock::schedule(int audio_ms, mono_time now) {
    mono_time start = end_ > now ? end_ : now;
    end_ = start + std::chrono::milliseconds(audio_ms);
    return start;
}

} // namespace parley
