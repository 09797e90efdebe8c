#include "core/worker.h"

#include "core/log.h"

#include <pthread.h>

namespace parley {

void set_thread_name(const std::string &name) {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

worker::worker(std::string name) : name_(std::move(name)) {
    thread_ = std::jthread([this](std::stop_token st) { run(st); });
}

worker::~worker() {
    thread_.request_stop();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void worker::post(std::function<void()> task) {
    post_by(mono_now(), std::move(task));
}

void worker::post_by(mono_time deadline, std::function<void()> task) {
    {
        std::lock_guard lock(m_);
        tasks_.emplace(std::pair(deadline, posted_++), std::move(task));
    }
    cv_.notify_one();
}

size_t worker::queued() const {
    std::lock_guard lock(m_);
    return tasks_.size();
}

void worker::run(std::stop_token st) {
    set_thread_name(name_);
    while (true) {
        std::function<void()> task;
        {
            std::unique_lock lock(m_);
            cv_.wait(lock, st, [&] { return !tasks_.empty(); });
            if (st.stop_requested()) return;
            auto first = tasks_.begin();
            task = std::move(first->second);
            tasks_.erase(first);
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
