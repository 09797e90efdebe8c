#include "llm/conversation.h"

namespace parley {

namespace {

std::vector<chat_message> build(const std::string &system_prompt,
                                const std::vector<turn_record> &turns, size_t keep,
                                const std::string &user_text) {
    std::vector<chat_message> msgs;
    if (!system_prompt.empty()) msgs.push_back({"system", system_prompt});
    for (size_t i = turns.size() - keep; i < turns.size(); ++i) {
        msgs.push_back({"user", turns[i].user});
        if (!turns[i].assistant.empty()) msgs.push_back({"assistant", turns[i].assistant});
    }
    msgs.push_back({"user", user_text});
    return msgs;
}

} // namespace

std::vector<chat_message> fit_history(const std::string &system_prompt,
                                      const std::vector<turn_record> &turns,
                                      const std::string &user_text, int budget,
                                      const token_counter &count) {
    // The prompt grows with the number of turns kept: binary-search the largest that fits.
    size_t lo = 0, hi = turns.size();
    if (count(build(system_prompt, turns, hi, user_text)) <= budget) lo = hi;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (count(build(system_prompt, turns, mid, user_text)) <= budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    return build(system_prompt, turns, lo, user_text);
}

} // namespace parley
