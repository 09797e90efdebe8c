// Actors on a shared pool: order, one task at a time per actor, many actors on few threads.
#include "core/actor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

using namespace parley;
using namespace std::chrono_literals;

TEST(actor, tasks_run_in_deadline_order_then_in_the_order_posted) {
    actor_pool pool("test", 2);
    std::mutex m;
    std::vector<int> order;
    std::promise<void> gate, done;
    auto gate_f = gate.get_future().share();
    actor a(pool, "a");
    a.post([gate_f] { gate_f.wait(); }); // holds the actor while the rest is queued
    mono_time now = mono_now();
    auto push = [&](int i) {
        return [&, i] {
            std::lock_guard lock(m);
            order.push_back(i);
        };
    };
    a.post_by(now + 2s, push(3));
    a.post_by(now, push(1));
    a.post_by(now, push(2));
    a.post_by(now - 1s, push(0)); // ahead of everything queued (an interrupt)
    a.post_by(now + 3s, [&] { done.set_value(); });
    gate.set_value();
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST(actor, an_actors_tasks_never_overlap_and_many_actors_share_few_threads) {
    actor_pool pool("test", 2);
    constexpr int ACTORS = 200, TASKS = 20;
    std::vector<std::unique_ptr<actor>> actors;
    std::vector<std::atomic<int>> inside(ACTORS), ran(ACTORS);
    std::atomic<int> overlaps{0}, total{0};
    for (int i = 0; i < ACTORS; i++)
        actors.push_back(std::make_unique<actor>(pool, "a" + std::to_string(i)));
    for (int t = 0; t < TASKS; t++)
        for (int i = 0; i < ACTORS; i++)
            actors[size_t(i)]->post([&, i] {
                if (inside[size_t(i)]++ != 0) overlaps++;
                std::this_thread::yield();
                inside[size_t(i)]--;
                ran[size_t(i)]++;
                total++;
            });
    for (int i = 0; i < 500 && total.load() < ACTORS * TASKS; i++)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(total.load(), ACTORS * TASKS);
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(pool.threads(), 2);
}

TEST(actor, destroying_an_actor_drops_its_queue_and_waits_for_the_running_task) {
    actor_pool pool("test", 1);
    std::atomic<bool> finished{false}, dropped_ran{false};
    std::promise<void> started;
    auto a = std::make_unique<actor>(pool, "a");
    a->post([&] {
        started.set_value();
        std::this_thread::sleep_for(100ms);
        finished = true;
    });
    a->post([&] { dropped_ran = true; });
    started.get_future().wait();
    a.reset();
    EXPECT_TRUE(finished.load()) << "the destructor returns after the running task";
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(dropped_ran.load());
}

TEST(actor, a_task_may_destroy_its_own_actor) {
    actor_pool pool("test", 1);
    auto a = std::make_shared<std::unique_ptr<actor>>(std::make_unique<actor>(pool, "a"));
    std::promise<void> done;
    (*a)->post([a, &done] {
        a->reset(); // no deadlock: it does not wait for itself
        done.set_value();
    });
    EXPECT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
}

// A session fed frame by frame: each of its tasks posts the next. Another actor's task, posted
// meanwhile (here by the busy actor's fifth task, before it posts its sixth), runs between two
// of them, not after the whole chain.
TEST(actor, an_actor_with_work_does_not_hold_a_thread_from_the_others) {
    actor_pool pool("test", 1);
    actor busy(pool, "busy"), other(pool, "other");
    std::atomic<int> busy_ran{0};
    std::promise<int> other_at;
    std::promise<void> busy_done;
    std::function<void()> step = [&] {
        int n = ++busy_ran;
        if (n == 5) other.post([&] { other_at.set_value(busy_ran.load()); });
        if (n < 50)
            busy.post(step);
        else
            busy_done.set_value();
    };
    busy.post(step);
    auto f = other_at.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(f.get(), 5) << "the other actor waited behind the busy one";
    ASSERT_EQ(busy_done.get_future().wait_for(5s), std::future_status::ready);
}
