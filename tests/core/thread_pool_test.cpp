#include "support/catch.hpp"

#include <resblocks/core/thread_pool.hpp>
#include <resblocks/core/threading.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

using resblocks::detail::involuntary_switches;
using resblocks::detail::PreemptionHistory;
using resblocks::detail::run_on_threads;
using resblocks::detail::ThreadPool;

TEST_CASE("PreemptionHistory: quiet after k_waits waits without an involuntary switch, not before", "[threads][pool]") {
  PreemptionHistory history;
  constexpr int k = PreemptionHistory::k_waits;
  // The first count is news (no history yet); then k unchanged counts make the thread quiet.
  for (int wait = 0; wait < k; ++wait) CHECK_FALSE(history.quiet_after(5));
  CHECK(history.quiet_after(5));
  CHECK(history.quiet_after(5));
  // One preemption: the next k waits spin short again.
  CHECK_FALSE(history.quiet_after(6));
  for (int wait = 1; wait < k; ++wait) CHECK_FALSE(history.quiet_after(6));
  CHECK(history.quiet_after(6));
  // A preemption in the middle of the countdown starts it over.
  CHECK_FALSE(history.quiet_after(7));
  for (int wait = 0; wait < k / 2; ++wait) CHECK_FALSE(history.quiet_after(7));
  CHECK_FALSE(history.quiet_after(8));
  for (int wait = 1; wait < k; ++wait) CHECK_FALSE(history.quiet_after(8));
  CHECK(history.quiet_after(8));
}

#if defined(__linux__)
namespace {
/// Busy for `how_long` (a thread the scheduler must share its CPU with).
void spin_for(std::chrono::milliseconds how_long) {
  const auto end = std::chrono::steady_clock::now() + how_long;
  volatile long sink = 0;
  while (std::chrono::steady_clock::now() < end) sink = sink + 1;
}

/// Pins the calling thread to the first CPU it may run on (threads it starts inherit that) until
/// restore(), or the end of the scope.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof m_saved, &m_saved) == 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &m_saved)) ++cpu;
    REQUIRE(cpu < CPU_SETSIZE);
    CPU_ZERO(&m_one);
    CPU_SET(cpu, &m_one);
    REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof m_one, &m_one) == 0);
    m_pinned = true;
  }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  ~PinnedToOneCpu() {
    if (m_pinned) pthread_setaffinity_np(pthread_self(), sizeof m_saved, &m_saved);
  }
  /// The one CPU, for another thread to pin itself to.
  [[nodiscard]] const cpu_set_t& one() const noexcept { return m_one; }
  void restore() {
    m_pinned = false;
    REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof m_saved, &m_saved) == 0);
  }

 private:
  cpu_set_t m_saved{}, m_one{};
  bool m_pinned = false;
};
}  // namespace

TEST_CASE("involuntary_switches: counts the calling thread's preemptions", "[threads][pool]") {
  // Two busy threads on one CPU: the scheduler preempts each of them every few milliseconds.
  PinnedToOneCpu pin;
  const long before = involuntary_switches();
  std::thread other([&] {
    pthread_setaffinity_np(pthread_self(), sizeof pin.one(), &pin.one());
    spin_for(std::chrono::milliseconds(300));
  });
  spin_for(std::chrono::milliseconds(300));
  other.join();
  const long after = involuntary_switches();
  pin.restore();
  CHECK(before >= 0);
  CHECK(after > before);
}
#endif

TEST_CASE("ThreadPool: every thread of every region runs once, on a fixed OS thread", "[threads][pool]") {
  // Many short regions back to back (workers catch them spinning) and some after a pause (workers
  // asleep): a lost wake-up or a skipped generation would hang here or miss a count. A pool of the
  // test's own that never runs alone by itself: on a busy CI machine it would, by design.
  ThreadPool pool;
  pool.set_alone_when_preempted(false);
  for (const int threads : {2, 3, 4}) {
    std::vector<std::thread::id> owner(static_cast<std::size_t>(threads));
    std::atomic<long> calls{0}, wrong_owner{0}, wrong_count{0};
    for (int region = 0; region < 20000; ++region) {
      if (region % 5000 == 4999) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      run_on_threads(pool, threads, [&](int t, int nt) {
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
    REQUIRE(pool.workers() >= threads - 1);
  }
}

TEST_CASE("ContentionMonitor: alone once most recent regions were preempted, for a period that backs off",
          "[threads][pool]") {
  using resblocks::detail::ContentionMonitor;
  using Clock = ContentionMonitor::Clock;
  using std::chrono::milliseconds;
  constexpr auto min_alone = ContentionMonitor::k_min_alone;
  ContentionMonitor monitor;
  Clock::time_point now{};
  now += std::chrono::hours(1);
  const auto region = [&](bool preempted) {
    now += milliseconds(1);
    monitor.after_region(preempted, now);
  };
  // A quiet machine's occasional switch: one region in six preempted never makes the pool run alone.
  for (int i = 0; i < 600; ++i) {
    region(i % 6 == 0);
    REQUIRE_FALSE(monitor.alone(now));
  }
  // Only the last k_window regions count: k_preempted - 1 of them, then one more after the first has
  // left the window, is not enough.
  for (int i = 0; i < ContentionMonitor::k_window; ++i) region(false);
  for (int i = 0; i < ContentionMonitor::k_preempted - 1; ++i) region(true);
  for (int i = 0; i < ContentionMonitor::k_window - ContentionMonitor::k_preempted + 1; ++i) region(false);
  region(true);
  REQUIRE_FALSE(monitor.alone(now));
  for (int i = 0; i < ContentionMonitor::k_window; ++i) region(false);
  // k_preempted of the last k_window regions: alone from then on, for k_min_alone.
  for (int i = 0; i < ContentionMonitor::k_preempted - 1; ++i) region(true);
  REQUIRE_FALSE(monitor.alone(now));
  region(true);
  REQUIRE(monitor.alone(now));
  Clock::time_point end = now + min_alone;
  CHECK(monitor.alone(end - milliseconds(1)));
  CHECK_FALSE(monitor.alone(end));
  // Preempted again right after: the period doubles each time, up to k_max_alone.
  auto period = min_alone;
  for (int round = 0; round < 6; ++round) {
    now = end;
    for (int i = 0; i < ContentionMonitor::k_preempted; ++i) region(true);
    period = std::min(2 * period, ContentionMonitor::k_max_alone);
    REQUIRE(monitor.alone(now));
    end = now + period;
    CHECK(monitor.alone(end - milliseconds(1)));
    CHECK_FALSE(monitor.alone(end));
  }
  CHECK(period == ContentionMonitor::k_max_alone);
  // Threads again for longer than a period without being preempted: the next alone period is short.
  now = end + period;
  for (int i = 0; i < 20; ++i) region(false);
  for (int i = 0; i < ContentionMonitor::k_preempted; ++i) region(true);
  REQUIRE(monitor.alone(now));
  CHECK_FALSE(monitor.alone(now + min_alone));
}

TEST_CASE("ThreadPool: run_alone_for runs every thread's part on the caller, in order, then threads again",
          "[threads][pool]") {
  ThreadPool pool;
  pool.set_alone_when_preempted(false);
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<int> order;
  std::atomic<long> elsewhere{0}, wrong_count{0};
  run_on_threads(pool, 3, [](int, int) {});  // the workers exist
  pool.run_alone_for(std::chrono::hours(1));
  for (int region = 0; region < 10; ++region)
    run_on_threads(pool, 3, [&](int t, int nt) {
      if (nt != 3) wrong_count.fetch_add(1);
      if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
      order.push_back(t);              // one thread only: no race when the parts run on the caller
      CHECK(ThreadPool::in_region());  // a nested region runs on this thread alone, as on a worker
    });
  CHECK(wrong_count.load() == 0);
  REQUIRE(elsewhere.load() == 0);
  REQUIRE(order.size() == 30);
  for (std::size_t i = 0; i < order.size(); ++i) CHECK(order[i] == int(i % 3));
  CHECK_FALSE(ThreadPool::in_region());

  ThreadPool later;  // a short alone period ends by itself
  later.set_alone_when_preempted(false);
  later.run_alone_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::atomic<long> on_workers{0};
  run_on_threads(later, 2, [&](int t, int) {
    if (t == 1 && std::this_thread::get_id() != caller) on_workers.fetch_add(1);
  });
  CHECK(on_workers.load() == 1);

  // Turning the automatic mode off ends an alone period too.
  later.run_alone_for(std::chrono::hours(1));
  later.set_alone_when_preempted(false);
  run_on_threads(later, 2, [&](int t, int) {
    if (t == 1 && std::this_thread::get_id() != caller) on_workers.fetch_add(1);
  });
  CHECK(on_workers.load() == 2);
}

TEST_CASE("part_local: part t's scratch follows the part from its worker to the caller (alone) and back",
          "[threads][pool]") {
  // What a GEMM's packing buffer is: sized by whoever runs part t, the worker finds it sized when the pool
  // stops running alone (a worker's own thread_local would grow in its first part after the period).
  using resblocks::detail::part_local;
  struct Scratch {
    int sized_by = -1;  // the part that sized it
  };
  ThreadPool pool;
  pool.set_alone_when_preempted(false);
  Scratch* const own = &part_local<Scratch>();  // outside a region: the calling thread's own
  std::vector<Scratch*> seen(3, nullptr);
  auto record = [&](int t, int) {
    Scratch& scratch = part_local<Scratch>();
    if (scratch.sized_by < 0) scratch.sized_by = t;
    seen[std::size_t(t)] = &scratch;  // each part writes its own element
  };
  pool.run_alone_for(std::chrono::hours(1));
  run_on_threads(pool, 3, record);  // alone first: the caller runs parts 1 and 2 before any worker exists
  const std::vector<Scratch*> alone = seen;
  CHECK(alone[0] == own);  // part 0 is the caller's, either way
  CHECK(alone[1] != own);
  CHECK(alone[2] != own);
  CHECK(alone[1] != alone[2]);
  pool.set_alone_when_preempted(false);  // ends the period: the workers run parts 1 and 2
  seen.assign(3, nullptr);
  run_on_threads(pool, 3, record);
  CHECK(seen == alone);
  for (int t = 0; t < 3; ++t) CHECK(seen[std::size_t(t)]->sized_by == t);
  CHECK(&part_local<Scratch>() == own);
  ThreadPool other;  // another pool's parts have slots of their own
  other.set_alone_when_preempted(false);
  run_on_threads(other, 3, record);
  CHECK(seen[0] == own);
  CHECK(seen[1] != alone[1]);
  CHECK(seen[2] != alone[2]);
}

#if defined(__linux__)
TEST_CASE("ThreadPool: regions run alone by themselves once its threads keep being preempted", "[threads][pool]") {
  // The caller and the pool's workers on one CPU: each region's two parts take turns on it, so its
  // threads are preempted in most regions, as beside a co-tenant. Within a few windows of regions
  // the pool must run thread 1's part on the caller.
  PinnedToOneCpu pin;
  long alone_regions = 0;
  {
    ThreadPool pool;  // its workers start now, on the one CPU (a new thread inherits the affinity)
    const std::thread::id caller = std::this_thread::get_id();
    std::atomic<long> on_caller{0};
    for (int region = 0; region < 400 && alone_regions == 0; ++region) {
      run_on_threads(pool, 2, [&](int t, int) {
        spin_for(std::chrono::milliseconds(2));
        if (t == 1 && std::this_thread::get_id() == caller) on_caller.fetch_add(1);
      });
      alone_regions = on_caller.load();
    }
  }
  pin.restore();
  CHECK(alone_regions > 0);
}
#endif

TEST_CASE("ThreadPool: a region inside a region runs on its thread alone, and concurrent callers take turns",
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

// ThreadSanitizer does not support starting threads after a multi-threaded fork (its child exits 66).
#if defined(__SANITIZE_THREAD__)
#define RESBLOCKS_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RESBLOCKS_TEST_TSAN 1
#endif
#endif

#if defined(__unix__) && !defined(RESBLOCKS_TEST_TSAN)
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

TEST_CASE("ThreadPool: a child process made by fork() runs regions on a pool of its own", "[threads][pool]") {
  std::atomic<int> calls{0};
  run_on_threads(2, [&](int, int) { calls.fetch_add(1); });  // the parent's workers exist
  REQUIRE(calls.load() == 2);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // the parent's worker threads do not exist here: a stale pool would wait forever
    std::atomic<int> child_calls{0};
    for (int i = 0; i < 100; ++i) run_on_threads(2, [&](int, int) { child_calls.fetch_add(1); });
    _exit(child_calls.load() == 200 ? 0 : 1);
  }
  int status = -1;
  for (int waited_ms = 0; waited_ms < 20000; waited_ms += 10) {  // a hang is a failure, not a stuck test run
    if (waitpid(child, &status, WNOHANG) == child) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!(WIFEXITED(status) || WIFSIGNALED(status))) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}
#endif
