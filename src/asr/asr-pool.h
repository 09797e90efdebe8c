// A pool of decoders for the recognisers (a PocketSphinx decoder, a whisper.cpp state): making
// one takes a while (loading a language model, allocating ~100 MB of buffers), so an engine
// keeps the ones its streams give back and makes a few at start, ready for the first sessions.
//
//   decoder_pool<whisper_state> pool([&] { return make(); }, whisper_free_state);
//   pool.fill(2);                  // at start; throws what make() throws
//   whisper_state *s = pool.take(); // a kept one, or a new one
//   pool.give_back(s);             // kept (up to `keep`), else freed
//
// Thread-safe. The destructor frees the ones kept; those taken are the taker's.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

namespace parley {

template <class T> class decoder_pool {
  public:
    decoder_pool(std::function<T *()> make, std::function<void(T *)> free, size_t keep = 8)
        : make_(std::move(make)), free_(std::move(free)), keep_(keep) {}
    ~decoder_pool() { clear(); }
    decoder_pool(const decoder_pool &) = delete;
    decoder_pool &operator=(const decoder_pool &) = delete;

    void fill(int n) {
        for (int i = 0; i < n; ++i) {
            T *d = make_();
            std::lock_guard lock(m_);
            kept_.push_back(d);
        }
    }

    T *take() {
        {
            std::lock_guard lock(m_);
            if (!kept_.empty()) {
                T *d = kept_.back();
                kept_.pop_back();
                return d;
            }
        }
        return make_(); // outside the lock: it takes a while
    }

    void give_back(T *d) {
        {
            std::lock_guard lock(m_);
            if (kept_.size() < keep_) {
                kept_.push_back(d);
                return;
            }
        }
        free_(d);
    }

    // Frees the ones kept (an engine does this before freeing what they were made from).
    void clear() {
        std::lock_guard lock(m_);
        for (T *d : kept_)
            free_(d);
        kept_.clear();
    }

  private:
    std::function<T *()> make_;
    std::function<void(T *)> free_;
    size_t keep_;
    std::mutex m_;
    std::vector<T *> kept_;
};

} // namespace parley
