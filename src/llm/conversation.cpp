#include "llm/conversation.h"

#include <algorithm>

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
                                      const token_counter &count, int drop_step) {
    // The prompt shrinks with the number of blocks of `drop_step` turns dropped from the start:
    // binary-search the fewest that fit. Keeping none always "fits" (it is all there is).
    size_t n = turns.size(), step = size_t(std::max(1, drop_step));
    auto keep = [&](size_t blocks) { return n - std::min(n, blocks * step); };
    size_t lo = 0, hi = (n + step - 1) / step;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (count(build(system_prompt, turns, keep(mid), user_text)) <= budget)
            hi = mid;
        else
            lo = mid + 1;
    }
    return build(system_prompt, turns, keep(lo), user_text);
}

} // namespace parley
