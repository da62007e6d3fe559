#include "support/catch.hpp"

#include <resblocks/core/thread_pool.hpp>
#include <resblocks/core/threading.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using resblocks::detail::run_on_threads;
using resblocks::detail::ThreadPool;

TEST_CASE("ThreadPool: every thread of every region runs once, on a fixed OS thread", "[threads][pool]") {
  // Many short regions back to back (workers catch them spinning) and some after a pause (workers
  // asleep): a lost wake-up or a skipped generation would hang here or miss a count.
  for (const int threads : {2, 3, 4}) {
    std::vector<std::thread::id> owner(static_cast<std::size_t>(threads));
    std::atomic<long> calls{0}, wrong_owner{0}, wrong_count{0};
    for (int region = 0; region < 20000; ++region) {
      if (region % 5000 == 4999) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      run_on_threads(threads, [&](int t, int nt) {
        calls.fetch_add(1);
        if (nt != threads) wrong_count.fetch_add(1);
        auto& id = owner[static_cast<std::size_t>(t)];
        if (region == 0)
          id = std::this_thread::get_id();
        else if (id != std::this_thread::get_id())
          wrong_owner.fetch_add(1);
      });
    }
    REQUIRE(calls.load() == 20000L * threads);
    REQUIRE(wrong_count.load() == 0);
    REQUIRE(wrong_owner.load() == 0);  // thread t is always the same thread (per-thread scratch is sized once)
    REQUIRE(ThreadPool::instance().workers() >= threads - 1);
  }
}

TEST_CASE("ThreadPool: a region inside a region runs on its thread alone; concurrent callers take turns",
          "[threads][pool]") {
  std::atomic<long> inner{0}, nested_wide{0}, outside{0};  // Catch2's assertions are not thread-safe: count
  run_on_threads(2, [&](int, int) {
    if (!ThreadPool::in_region()) outside.fetch_add(1);
    run_on_threads(2, [&](int, int nt) {
      inner.fetch_add(1);
      if (nt != 1) nested_wide.fetch_add(1);
    });
  });
  REQUIRE(inner.load() == 2);
  REQUIRE(nested_wide.load() == 0);
  REQUIRE(outside.load() == 0);
  REQUIRE_FALSE(ThreadPool::in_region());

  // Two application threads both running regions (concurrent inference): each region completes whole.
  std::atomic<long> sum{0};
  auto caller = [&] {
    for (int i = 0; i < 5000; ++i) run_on_threads(2, [&](int t, int) { sum.fetch_add(t + 1); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  REQUIRE(sum.load() == 2L * 5000 * (1 + 2));
}
