#include "core/actor.h"

#include "core/log.h"
#include "core/worker.h"

namespace parley {

// One actor's tasks. `scheduled`: in the pool's ready map or running (then the thread that runs
// it puts it back when it has more).
struct actor_pool::queue {
    std::string name;
    std::mutex m;
    std::condition_variable idle;
    uint64_t posted = 0;
    std::map<std::pair<mono_time, uint64_t>, std::function<void()>> tasks;
    bool scheduled = false;
    bool running = false;
    std::thread::id runner;
    bool closed = false;
};

actor_pool::actor_pool(std::string name, int threads) : name_(std::move(name)) {
    if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 0; i < threads; i++)
        threads_.emplace_back([this, i, threads](std::stop_token st) {
            set_thread_name(threads == 1 ? name_ : name_ + "-" + std::to_string(i));
            run(st);
        });
}

actor_pool::~actor_pool() {
    for (auto &t : threads_)
        t.request_stop();
    cv_.notify_all();
    threads_.clear(); // joins
}

actor_pool &actor_pool::sessions() {
    static actor_pool pool("session");
    return pool;
}

actor_pool &actor_pool::end_passes() {
    static actor_pool pool("asr-end");
    return pool;
}

void actor_pool::schedule(const std::shared_ptr<queue> &q, mono_time due) {
    {
        std::lock_guard lock(m_);
        ready_.emplace(std::pair(due, scheduled_++), q);
    }
    cv_.notify_one();
}

void actor_pool::run(std::stop_token st) {
    while (true) {
        std::shared_ptr<queue> q;
        {
            std::unique_lock lock(m_);
            cv_.wait(lock, st, [&] { return !ready_.empty(); });
            if (st.stop_requested()) return;
            auto first = ready_.begin();
            q = std::move(first->second);
            ready_.erase(first);
        }
        std::function<void()> task;
        {
            std::lock_guard lock(q->m);
            if (q->closed || q->tasks.empty()) {
                q->scheduled = false;
                q->idle.notify_all();
                continue;
            }
            auto first = q->tasks.begin();
            task = std::move(first->second);
            q->tasks.erase(first);
            q->running = true;
            q->runner = std::this_thread::get_id();
        }
        try {
            task();
        } catch (const std::exception &e) {
            log_error("actor %s: task failed: %s", q->name.c_str(), e.what());
        } catch (...) {
            log_error("actor %s: task failed", q->name.c_str());
        }
        task = nullptr; // what it held goes now, outside the queue's lock
        mono_time next{};
        {
            std::lock_guard lock(q->m);
            q->running = false;
            q->runner = {};
            if (q->closed || q->tasks.empty()) {
                q->scheduled = false;
                q->idle.notify_all();
                continue;
            }
            next = q->tasks.begin()->first.first;
        }
        schedule(q, next);
    }
}

actor::actor(actor_pool &pool, std::string name)
    : pool_(pool), q_(std::make_shared<actor_pool::queue>()) {
    q_->name = std::move(name);
}

actor::~actor() {
    std::map<std::pair<mono_time, uint64_t>, std::function<void()>> dropped;
    std::unique_lock lock(q_->m);
    q_->closed = true;
    dropped.swap(q_->tasks);
    // A task that destroys its own actor cannot wait for itself.
    if (q_->runner != std::this_thread::get_id())
        q_->idle.wait(lock, [&] { return !q_->running; });
    lock.unlock();
    dropped.clear(); // what the dropped tasks held goes outside the lock
}

void actor::post(std::function<void()> task) {
    post_by(mono_now(), std::move(task));
}

void actor::post_by(mono_time deadline, std::function<void()> task) {
    bool schedule = false;
    {
        std::lock_guard lock(q_->m);
        if (q_->closed) return;
        q_->tasks.emplace(std::pair(deadline, q_->posted++), std::move(task));
        if (!q_->scheduled) {
            q_->scheduled = true;
            schedule = true;
        }
    }
    if (schedule) pool_.schedule(q_, deadline);
}

size_t actor::queued() const {
    std::lock_guard lock(q_->m);
    return q_->tasks.size();
}

} // namespace parley
