#include "llm/llm.h"

namespace parley {

std::unique_ptr<llm_engine> make_llm_llama(const llm_config &config);

const char *llm_stop_name(llm_stop s) {
    switch (s) {
    case LLM_STOP_NONE:
        return "";
    case LLM_STOP_EOG:
        return "eog";
    case LLM_STOP_LENGTH:
        return "length";
    case LLM_STOP_STOP:
        return "stop";
    case LLM_STOP_CONTEXT:
        return "context";
    case LLM_STOP_CANCELLED:
        return "cancelled";
    case LLM_STOP_ERROR:
        return "error";
    case LLM_STOP_PREFILL:
        return "prefill";
    case LLM_STOP_SUPERSEDED:
        return "superseded";
    }
    return "";
}

std::string format_plain_chat(const std::vector<chat_message> &messages) {
    std::string out;
    for (const chat_message &m : messages) {
        if (m.role == "system") {
            out += m.content + "\n\n";
        } else if (m.role == "user") {
            out += "User: " + m.content + "\n";
        } else {
            out += "Assistant: " + m.content + "\n";
        }
    }
    out += "Assistant:";
    return out;
}

std::string stop_filter::push(std::string_view text) {
    if (stopped_) return {};
    held_.append(text);
    for (const std::string &s : stops_) {
        size_t at = held_.find(s);
        if (at != std::string::npos) {
            stopped_ = true;
            std::string out = held_.substr(0, at);
            held_.clear();
            return out;
        }
    }
    // Hold back the longest tail that is a prefix of some stop string.
    size_t hold = 0;
    for (const std::string &s : stops_) {
        for (size_t n = std::min(s.size() - 1, held_.size()); n > hold; --n) {
            if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
                hold = n;
                break;
            }
        }
    }
    std::string out = held_.substr(0, held_.size() - hold);
    held_.erase(0, held_.size() - hold);
    return out;
}

std::vector<float> pcm16_to_float(std::span<const int16_t> pcm) {
    std::vector<float> out(pcm.size());
    for (size_t i = 0; i < pcm.size(); ++i)
        out[i] = float(pcm[i]) / 32768.0f;
    return out;
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

void trim(std::string &s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b]))
        ++b;
    while (e > b && is_space(s[e - 1]))
        --e;
    s = s.substr(b, e - b);
}

} // namespace

std::string transcript_splitter::feed(std::string_view text) {
    std::string out;
    if (!done_) {
        transcript_.append(text);
        size_t at = transcript_.find(CLOSE);
        if (at == std::string::npos) return {};
        out = transcript_.substr(at + CLOSE.size());
        transcript_.resize(at);
        close();
    } else {
        out = std::string(text);
    }
    if (trim_) {
        size_t b = 0;
        while (b < out.size() && is_space(out[b]))
            ++b;
        out.erase(0, b);
        trim_ = out.empty();
    }
    return out;
}

void transcript_splitter::close() {
    if (done_) return;
    done_ = true;
    trim(transcript_);
}

std::string stop_filter::flush() {
    std::string out = stopped_ ? std::string() : held_;
    held_.clear();
    return out;
}

} // namespace parley
