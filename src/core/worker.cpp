#include "core/worker.h"

#include "core/log.h"

namespace parley {

worker::worker(std::string name) : name_(std::move(name)) {
    thread_ = std::jthread([this](std::stop_token st) { run(st); });
}

worker::~worker() {
    thread_.request_stop();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void worker::post(std::function<void()> task) {
    {
        std::lock_guard lock(m_);
        tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
}

size_t worker::queued() const {
    std::lock_guard lock(m_);
    return tasks_.size();
}

void worker::run(std::stop_token st) {
    while (true) {
        std::function<void()> task;
        {
            std::unique_lock lock(m_);
            cv_.wait(lock, st, [&] { return !tasks_.empty(); });
            if (st.stop_requested()) return;
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        try {
            task();
        } catch (const std::exception &e) {
            log_error("worker %s: task failed: %s", name_.c_str(), e.what());
        } catch (...) {
            log_error("worker %s: task failed", name_.c_str());
        }
    }
}

} // namespace parley
