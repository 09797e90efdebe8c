// Conversation memory: the turns of a session and the prompt built from them.
//
// fit_history() keeps the system prompt and the new user message, and as many of the most
// recent turns as fit in the token budget (the oldest go first, `drop_step` at a time).
// Pure functions; thread-safe.
#pragma once

#include "llm/llm.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace parley {

struct turn_record {
    int64_t turn_id = 0;
    std::string user;
    std::string assistant; // what the user got (for an interrupted turn, what was sent)
    bool interrupted = false;
    std::string timings_json; // the turn's timings as a JSON object
    int64_t created_ms = 0;   // wall clock, ms since the epoch
};

using token_counter = std::function<int(const std::vector<chat_message> &)>;

// When the system prompt and the user message alone are over the budget, the message is cut
// to its longest beginning that fits (on a character boundary) and *user_cut (may be null)
// is set. (When not even its first character fits, the system prompt is the problem: the
// message stays whole.)
std::vector<chat_message> fit_history(const std::string &system_prompt,
                                      const std::vector<turn_record> &turns,
                                      const std::string &user_text, int budget,
                                      const token_counter &count, int drop_step = 1,
                                      bool *user_cut = nullptr);

// A session's step: once a conversation fills the context, its oldest turns go four at a time
// (counted from its first turn), so the turns kept, and their KV cache, stay the same for the
// next few turns; dropping one turn at a time shifted the cache and re-evaluated the new
// message at every turn (stories260K at a depth of 1,700-1,900 tokens: 70-150 ms each time).
constexpr int HISTORY_DROP_STEP = 4;

} // namespace parley
