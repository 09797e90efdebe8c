// Scripted engines for testing the session pipeline's logic (unit tests, the Realtime fuzz
// target). Real engines have their own tests (test-engines.cpp, tests/integration).
#pragma once

#include "core/worker.h"
#include "pipeline/session.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace parley::testing {

// Emits a fixed reply as pieces, one every piece_delay, on its own thread.
class scripted_llm : public llm_engine {
  public:
    explicit scripted_llm(std::vector<std::string> pieces,
                          std::chrono::milliseconds delay = std::chrono::milliseconds(1))
        : pieces_(std::move(pieces)), delay_(delay) {}
    std::string name() const override { return "scripted"; }
    int slot_context() const override { return 4096; }
    double load_ms() const override { return 0; }
    int acquire_slot() override { return 0; }
    void release_slot(int) override {}
    std::string format(const std::vector<chat_message> &m) override { return format_plain_chat(m); }
    void submit(llm_request req) override {
        w_.post([this, req = std::move(req)] {
            auto msgs = req.messages(
                4000, [](const std::vector<chat_message> &m) { return int(m.size()); });
            {
                std::lock_guard lock(m_);
                prompts_.push_back(msgs);
                std::vector<std::string> names;
                for (const tool_spec &t : req.tools)
                    names.push_back(t.name);
                tools_.push_back(names);
                grammars_.push_back(req.grammar);
            }
            llm_result r;
            if (req.max_tokens == 0) { // prefill only (partial transcripts while speaking)
                r.stop_reason = LLM_STOP_PREFILL;
                if (req.on_done) req.on_done(r);
                return;
            }
            for (const std::string &p : pieces_) {
                std::this_thread::sleep_for(delay_);
                while (req.pause && req.pause->load() && !(req.cancel && req.cancel->load()))
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                if (req.cancel && req.cancel->load()) {
                    r.stop_reason = LLM_STOP_CANCELLED;
                    req.on_done(r);
                    return;
                }
                r.text += p;
                ++r.generated_tokens;
                ++emitted;
                req.on_piece(p);
            }
            r.stop_reason = LLM_STOP_EOG;
            req.on_done(r);
        });
    }
    void wake() override { ++wakes; }
    std::atomic<int> emitted{0}; // pieces handed out, over all requests
    std::atomic<int> wakes{0};   // wake() calls: a held reply was let go on
    std::vector<std::vector<chat_message>> prompts() {
        std::lock_guard lock(m_);
        return prompts_;
    }
    // The names of the tools each request offered, and its grammar.
    std::vector<std::vector<std::string>> tools() {
        std::lock_guard lock(m_);
        return tools_;
    }
    std::vector<std::string> grammars() {
        std::lock_guard lock(m_);
        return grammars_;
    }

  private:
    std::vector<std::string> pieces_;
    std::chrono::milliseconds delay_;
    std::mutex m_;
    std::vector<std::vector<chat_message>> prompts_;
    std::vector<std::vector<std::string>> tools_;
    std::vector<std::string> grammars_;
    worker w_{"scripted-llm"};
};

// 10 ms of a constant per character; fails on demand.
// Hears whatever it is given as `text` (empty: a noise with no words).
class scripted_asr : public asr_engine {
  public:
    // partials: the text is also every partial (a stable one) once audio came.
    explicit scripted_asr(std::string text, bool partials = false)
        : text(std::move(text)), partials(partials) {}
    std::string name() const override { return "scripted"; }
    std::unique_ptr<asr_stream> open() override {
        return std::make_unique<stream>(text, partials, heard);
    }
    std::string text;
    bool partials;
    // What the streams were given, in order: runs of quiet (|sample| <= 100) and loud samples.
    struct heard_log {
        std::mutex m;
        std::vector<std::pair<bool, size_t>> runs; // (loud, samples)
        void add(std::span<const int16_t> pcm) {
            std::lock_guard lock(m);
            for (int16_t x : pcm) {
                bool loud = x > 100 || x < -100;
                if (runs.empty() || runs.back().first != loud) runs.emplace_back(loud, 0);
                ++runs.back().second;
            }
        }
        // A tone crosses zero: quiet stretches under 5 ms belong to the sound around them.
        std::vector<std::pair<bool, size_t>> get() {
            std::lock_guard lock(m);
            std::vector<std::pair<bool, size_t>> out;
            for (auto [loud, n] : runs) {
                if (!loud && n < 80 && !out.empty()) loud = true;
                if (!out.empty() && out.back().first == loud)
                    out.back().second += n;
                else
                    out.emplace_back(loud, n);
            }
            return out;
        }
    };
    std::shared_ptr<heard_log> heard = std::make_shared<heard_log>();

  private:
    struct stream : asr_stream {
        stream(std::string t, bool partials, std::shared_ptr<heard_log> heard)
            : text(std::move(t)), partials(partials), heard(std::move(heard)) {}
        void accept(std::span<const int16_t> pcm) override {
            samples += pcm.size();
            heard->add(pcm);
        }
        std::string partial() override { return partials && samples ? text : ""; }
        bool partial_is_final() const override { return partials; }
        std::string finish() override {
            std::string r = samples ? text : "";
            samples = 0;
            return r;
        }
        std::string text;
        bool partials;
        std::shared_ptr<heard_log> heard;
        size_t samples = 0;
    };
};

class scripted_tts : public tts_engine {
  public:
    std::string name() const override { return "scripted"; }
    std::string check(const tts_params &p) override {
        return p.voice == "missing" ? "no such voice" : "";
    }
    int sample_rate() override { return 22050; }
    tts_result synthesize(std::string_view text, const tts_params &) override {
        if (fail_after >= 0 && calls++ >= fail_after) throw tts_error("scripted failure");
        tts_result r;
        r.sample_rate = 22050;
        r.pcm.assign(text.size() * 220, 1000);
        // 10 ms a character: each word from its first to its last character.
        size_t i = 0;
        while (i < text.size()) {
            size_t b = text.find_first_not_of(' ', i);
            if (b == std::string_view::npos) break;
            size_t e = text.find(' ', b);
            if (e == std::string_view::npos) e = text.size();
            r.words.push_back({std::string(text.substr(b, e - b)), int(b * 10), int(e * 10)});
            i = e;
        }
        return r;
    }
    int fail_after = -1;
    int calls = 0;
};

} // namespace parley::testing
