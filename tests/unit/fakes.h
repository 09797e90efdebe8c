// Scripted engines and a recording output for testing the session pipeline's logic.
// Real engines have their own tests (test-engines.cpp, tests/integration).
#pragma once

#include "core/worker.h"
#include "net/native-protocol.h"
#include "pipeline/session.h"
#include "scripted-engines.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

namespace parley::testing {

using json = nlohmann::json;

struct out_msg {
    bool binary = false;
    std::string data;
    json j;        // parsed when text
    int burst = 0; // sent between hold() and flush(): the burst's number (from 1)
};

class recording_output : public ws_output {
  public:
    void send_text(std::string m) override { push({false, m, json::parse(m)}); }
    void send_binary(std::string b) override { push({true, std::move(b), {}}); }
    void hold() override {
        std::lock_guard lock(m_);
        EXPECT_EQ(burst_, 0) << "bursts do not nest";
        burst_ = ++bursts_;
    }
    void flush() override {
        std::lock_guard lock(m_);
        EXPECT_NE(burst_, 0) << "a flush without a hold";
        burst_ = 0;
    }
    bool holding() {
        std::lock_guard lock(m_);
        return burst_ != 0;
    }

    // Waits until pred(messages) holds (5 s at most).
    bool wait(const std::function<bool(const std::vector<out_msg> &)> &pred,
              std::chrono::milliseconds limit = std::chrono::seconds(5)) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, limit, [&] { return pred(msgs_); });
    }
    bool wait_type(const std::string &type, int count = 1,
                   std::chrono::milliseconds limit = std::chrono::seconds(5)) {
        return wait(
            [&](const auto &ms) {
                int n = 0;
                for (auto &m : ms)
                    n += !m.binary && m.j["type"] == type;
                return n >= count;
            },
            limit);
    }
    std::vector<out_msg> all() {
        std::lock_guard lock(m_);
        return msgs_;
    }
    std::vector<json> of_type(const std::string &type) {
        std::vector<json> out;
        for (auto &m : all())
            if (!m.binary && m.j["type"] == type) out.push_back(m.j);
        return out;
    }

  private:
    void push(out_msg m) {
        std::lock_guard lock(m_);
        m.burst = burst_;
        msgs_.push_back(std::move(m));
        cv_.notify_all();
    }
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<out_msg> msgs_;
    int burst_ = 0, bursts_ = 0;
};

} // namespace parley::testing
