// A thread with a FIFO task queue.
//
// post() may be called from any thread; tasks run one at a time on the worker's own thread, in
// the order posted. The destructor stops taking tasks, runs none of those still queued, and
// joins the thread. Tasks must not throw (an exception is caught and logged).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace parley {

class worker {
  public:
    explicit worker(std::string name);
    ~worker();
    worker(const worker &) = delete;
    worker &operator=(const worker &) = delete;

    void post(std::function<void()> task);
    size_t queued() const;

  private:
    void run(std::stop_token st);

    std::string name_;
    mutable std::mutex m_;
    std::condition_variable_any cv_;
    std::deque<std::function<void()>> tasks_;
    std::jthread thread_;
};

} // namespace parley
