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
        // (A message taken out of the conversation leaves its side of the turn empty.)
        if (!turns[i].user.empty()) msgs.push_back({"user", turns[i].user});
        if (!turns[i].assistant.empty()) msgs.push_back({"assistant", turns[i].assistant});
    }
    msgs.push_back({"user", user_text});
    return msgs;
}

} // namespace

std::vector<chat_message> fit_history(const std::string &system_prompt,
                                      const std::vector<turn_record> &turns,
                                      const std::string &user_text, int budget,
                                      const token_counter &count, int drop_step, bool *user_cut) {
    if (user_cut) *user_cut = false;
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
    if (keep(lo) > 0 || count(build(system_prompt, turns, 0, user_text)) <= budget)
        return build(system_prompt, turns, keep(lo), user_text);
    // Not even the message alone: its longest beginning that fits, in whole characters.
    std::vector<size_t> ends; // byte length of the first 1, 2, ... characters
    for (size_t i = 1; i <= user_text.size(); ++i)
        if (i == user_text.size() || (static_cast<unsigned char>(user_text[i]) & 0xC0) != 0x80)
            ends.push_back(i);
    size_t fit = 0, over = ends.size(); // characters: `fit` fit, `over` do not
    while (over - fit > 1) {
        size_t mid = (fit + over) / 2;
        if (count(build(system_prompt, turns, 0, user_text.substr(0, ends[mid - 1]))) <= budget)
            fit = mid;
        else
            over = mid;
    }
    if (fit == 0) return build(system_prompt, turns, 0, user_text); // the rest is over already
    if (user_cut) *user_cut = true;
    return build(system_prompt, turns, 0, user_text.substr(0, ends[fit - 1]));
}

} // namespace parley
