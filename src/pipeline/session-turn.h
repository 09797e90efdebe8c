// The session's turn: one reply on its way out and its account. Shared by the session's files
// (session.cpp, session-turn-taking.cpp, session-reply.cpp, session-interruptions.cpp); not
// for other code.
#pragma once

#include "pipeline/playout.h"
#include "pipeline/session.h"
#include "pipeline/turn-record.h"

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace parley {

// Where a reply is:
//   HELD       started before the end of the user's turn (in a pause, or at stop before the
//              final transcript): its output waits for release_turn(), or is thrown away
//   HELD_DONE  held and generated in full: release_turn() sends it and finishes it
//   LIVE       its output goes out as it is made
//   DONE       finished and recorded, cancelled, or thrown away: nothing more happens to it
enum reply_state {
    REPLY_STATE_HELD,
    REPLY_STATE_HELD_DONE,
    REPLY_STATE_LIVE,
    REPLY_STATE_DONE,
};

// One reply: the LLM's phrases on their way out, in order, and the turn's account. The
// session's actor owns it, except llm_side (the LLM's worker's) and the atomics.
struct session::turn : turn_account {
    reply_state state = REPLY_STATE_LIVE;
    bool held() const { return state == REPLY_STATE_HELD || state == REPLY_STATE_HELD_DONE; }
    bool finished() const { return state == REPLY_STATE_HELD_DONE || state == REPLY_STATE_DONE; }

    // Shared with the LLM (llm_request's flags).
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    // Set while a held turn has its first phrase and waits for the end of the user's turn.
    std::shared_ptr<std::atomic<bool>> pause = std::make_shared<std::atomic<bool>>(false);
    // Until the first phrase is out (llm_request::urgent).
    std::shared_ptr<std::atomic<bool>> urgent = std::make_shared<std::atomic<bool>>(true);
    // True while held: the LLM's worker pauses the reply after its first phrase (on_piece).
    std::atomic<bool> holding{false};

    // The LLM's worker's: its callbacks for this turn run one at a time.
    struct {
        phrase_chunker chunker;
        mono_time t_first_token{};
        // With tools offered: the reply is held here while it may still be a call.
        bool holding = false;
        std::string held;
    } llm_side;

    bool want_audio = false;
    bool out_of_band = false;                       // not recorded in the history
    std::string tag;                                // the response_request's
    std::optional<std::string> system;              // this reply's system prompt
    std::optional<std::vector<chat_message>> input; // this reply's prompt after it
    int max_tokens = -1;                            // -1: the session's
    std::vector<tool_spec> tools;                   // offered to the model
    std::string grammar;                            // the reply must follow it (empty: free)
    std::deque<std::string> pending;                // phrases not yet sent
    bool tts_busy = false;                          // a phrase's audio is being made
    bool llm_done = false;
    bool final_sent = false;
    int next_chunk = 0;
    std::string sent_text;                                   // text of the chunks sent so far
    std::vector<std::pair<reply_chunk_event, int>> held_out; // with their chunks' indexes
    reply_playout playout; // the chunks sent, where the client plays them, what was heard
};

// A phrase's speech, made on the TTS worker, on its way back to the session's actor.
struct session::speech {
    std::string text;
    std::vector<int16_t> pcm; // at the session's output rate
    tts_result audio;         // its words (its own pcm moved out)
    std::string error;
    double ms = 0;
};

} // namespace parley
