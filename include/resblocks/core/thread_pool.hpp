#pragma once
/// \file
/// \brief ThreadPool: resblocks' own worker threads, which wait by spinning briefly and then sleeping.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <emmintrin.h>  // _mm_pause (SSE2; immintrin.h would add every AVX-512 header to each TU)
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__linux__)
#include <sys/resource.h>  // getrusage(RUSAGE_THREAD): the thread's involuntary context switches
#endif

/// Pause instructions a waiting pool thread spins before it sleeps once the scheduler has been
/// preempting it (a co-tenant on the machine): about 10 µs on a current x86 core.
#ifndef RESBLOCKS_POOL_SPIN
#define RESBLOCKS_POOL_SPIN (1 << 10)
#endif
/// Microseconds a waiting pool thread spins before it sleeps while the scheduler leaves it alone
/// (a quiet machine; Linux only, elsewhere always RESBLOCKS_POOL_SPIN). 0: always RESBLOCKS_POOL_SPIN.
#ifndef RESBLOCKS_POOL_QUIET_SPIN_US
#define RESBLOCKS_POOL_QUIET_SPIN_US 200
#endif

namespace resblocks::detail {

/// The calling thread's involuntary context switches so far (the scheduler took its CPU for another
/// runnable thread), or -1 where the platform does not count them per thread (Linux does).
inline long involuntary_switches() noexcept {
#if defined(__linux__) && defined(RUSAGE_THREAD)
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) == 0) return usage.ru_nivcsw;
#endif
  return -1;
}

/// \brief Whether a thread has been preempted lately. Given the thread's involuntary context switches
/// at each of its waits, it says "quiet" once the count has stayed the same for k_waits waits. With
/// fewer runnable threads than CPUs none is preempted; with a co-tenant (a compile in another terminal)
/// the pool's threads are, every few milliseconds.
class PreemptionHistory {
 public:
  static constexpr int k_waits = 8;

  /// \param switches the thread's involuntary context switches now (involuntary_switches())
  /// \returns true when none happened during the last k_waits calls (never on the first k_waits)
  bool quiet_after(long switches) noexcept {
    const bool preempted = switches != m_switches;
    m_switches = switches;
    m_waits_left = preempted ? k_waits : std::max(0, m_waits_left - 1);
    return m_waits_left == 0;
  }

 private:
  long m_switches = -1;
  int m_waits_left = k_waits;  ///< calls to go without a switch before the thread counts as quiet
};

/// \brief A fixed set of persistent worker threads that run one parallel region at a time.
///
/// `run(nt, fn, ctx)` calls `fn(ctx, t, nt)` for t = 0 … nt-1, t = 0 on the calling thread and
/// t ≥ 1 always on the same worker, and returns when every call has returned (per-thread scratch,
/// such as GEMM packing buffers, is therefore sized once). Nothing is allocated per region.
///
/// Why not OpenMP's team: libgomp's idle threads spin (for up to GOMP_SPINCOUNT iterations, read once
/// when the program starts), so with a co-tenant on the machine a spinning thread eats the time slice
/// of the thread it waits for, and a training step slowed 10–30×. Here a waiting thread (a worker
/// between regions, the caller at the end of one) spins, then sleeps on a futex-backed condition
/// variable, giving its core to whoever needs it. How long it spins depends on whether the machine is
/// shared (spin_until): ~200 µs while the scheduler has not preempted the thread in its last 8 waits
/// (PreemptionHistory)
/// (waking a sleeping thread costs more than the gap between two regions of a busy step), else
/// k_spin pause instructions (~10 µs: the thread waited for may be descheduled, and spinning would
/// take its CPU time).
class ThreadPool {
 public:
  using Task = void (*)(void* ctx, int thread, int threads) noexcept;

  /// The process's pool (workers start when a region first needs them). It is never destroyed (its
  /// sleeping workers end with the process), and a child process made by fork() gets a new one: the
  /// parent's workers do not exist there.
  static ThreadPool& instance() {
    static const bool registered = [] {
#if defined(__unix__) || defined(__APPLE__)
      pthread_atfork(nullptr, nullptr, [] { process_pool() = new ThreadPool; });  // the old one is abandoned
#endif
      return true;
    }();
    (void)registered;
    return *process_pool();
  }

  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stop = true;
    }
    m_wake.notify_all();
    for (std::thread& t : m_workers) t.join();
  }

  /// True on a thread that is running a region's task (a nested region then runs on that thread alone).
  static bool in_region() noexcept { return region_flag(); }

  /// Runs task(ctx, t, threads) on `threads` threads (the caller is thread 0) and waits for all.
  /// Regions are run one at a time: concurrent callers (two inference threads) take turns.
  void run(int threads, Task task, void* ctx) {
    if (threads <= 1 || in_region()) {
      task(ctx, 0, 1);
      return;
    }
    std::lock_guard<std::mutex> region(m_region);
    grow(threads - 1);
    m_task = task;
    m_ctx = ctx;
    m_pending.store(threads - 1, std::memory_order_relaxed);
    bool sleepers = false;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_generation += 1;
      m_ticket.store(m_generation << 16 | static_cast<std::uint64_t>(threads), std::memory_order_release);
      sleepers = m_sleeping > 0;
    }
    if (sleepers) m_wake.notify_all();
    region_flag() = true;
    task(ctx, 0, threads);
    region_flag() = false;
    // The end of the region: spin, then sleep until the last worker signals.
    if (!spin_until([&] { return m_pending.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_caller_sleeping = true;
      m_done.wait(lock, [&] { return m_pending.load(std::memory_order_acquire) == 0; });
      m_caller_sleeping = false;
    }
  }

  /// Worker threads started so far.
  [[nodiscard]] int workers() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return static_cast<int>(m_workers.size());
  }

 private:
  /// Pause-loop iterations a waiting thread spins before it sleeps when the machine is shared
  /// (RESBLOCKS_POOL_SPIN to change).
  static constexpr int k_spin = RESBLOCKS_POOL_SPIN;
  /// The longest spin on a quiet machine (RESBLOCKS_POOL_QUIET_SPIN_US to change).
  static constexpr std::chrono::microseconds k_quiet_spin{RESBLOCKS_POOL_QUIET_SPIN_US};

  /// Spins until ready() (true) or the thread's spin is over (false): k_quiet_spin on a quiet
  /// machine, k_spin pause instructions on a shared one (see quiet()).
  template <class Ready>
  static bool spin_until(const Ready& ready) noexcept {
    if (ready()) return true;
    if (quiet()) {
      using Clock = std::chrono::steady_clock;
      const Clock::time_point deadline = Clock::now() + k_quiet_spin;
      do {
        for (int i = 0; i < 64; ++i) {
          if (ready()) return true;
          pause();
        }
      } while (Clock::now() < deadline);
    } else {
      for (int i = 0; i < k_spin; ++i) {
        if (ready()) return true;
        pause();
      }
    }
    return ready();
  }

  /// Whether the calling thread counts as on a quiet machine (PreemptionHistory); asked once per wait
  /// that does not end at once.
  static bool quiet() noexcept {
    if constexpr (RESBLOCKS_POOL_QUIET_SPIN_US > 0) {
      thread_local PreemptionHistory history;
      const long switches = involuntary_switches();
      return switches >= 0 && history.quiet_after(switches);
    } else {
      return false;
    }
  }

  static ThreadPool*& process_pool() {
    static ThreadPool* pool = new ThreadPool;
    return pool;
  }

  static bool& region_flag() noexcept {
    thread_local bool flag = false;
    return flag;
  }

  static void pause() noexcept {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
  }

  void grow(int workers) {
    std::lock_guard<std::mutex> lock(m_mutex);
    while (static_cast<int>(m_workers.size()) < workers) {
      const int index = static_cast<int>(m_workers.size()) + 1;  // thread 0 is the caller
      // The generation the worker starts from is read here, before run() starts the next region:
      // read in the new thread, it could already be that region's, which the worker would then skip.
      const std::uint64_t seen = m_generation;
      m_workers.emplace_back([this, index, seen] { work(index, seen); });
    }
  }

  void work(int index, std::uint64_t seen) {
    region_flag() = true;  // a worker's own calls into the library run single-threaded
    for (;;) {
      spin_until([&] { return (m_ticket.load(std::memory_order_acquire) >> 16) != seen; });
      std::uint64_t ticket = m_ticket.load(std::memory_order_acquire);
      if ((ticket >> 16) == seen) {
        std::unique_lock<std::mutex> lock(m_mutex);
        ++m_sleeping;
        m_wake.wait(lock, [&] { return m_stop || (m_ticket.load(std::memory_order_acquire) >> 16) != seen; });
        --m_sleeping;
        if (m_stop) return;
        ticket = m_ticket.load(std::memory_order_acquire);
      }
      seen = ticket >> 16;
      const int threads = static_cast<int>(ticket & 0xffff);
      if (index >= threads) continue;  // not needed in this region
      m_task(m_ctx, index, threads);
      if (m_pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_caller_sleeping) m_done.notify_one();
      }
    }
  }

  mutable std::mutex m_mutex;  ///< guards the sleep/wake handshakes, m_workers and m_generation
  std::mutex m_region;         ///< one region at a time
  std::condition_variable m_wake, m_done;
  std::vector<std::thread> m_workers;
  std::uint64_t m_generation = 0;
  std::atomic<std::uint64_t> m_ticket{0};  ///< generation << 16 | threads of the current region
  std::atomic<int> m_pending{0};           ///< workers still running the current region
  Task m_task = nullptr;
  void* m_ctx = nullptr;
  int m_sleeping = 0;
  bool m_caller_sleeping = false;
  bool m_stop = false;
};

/// Runs f(t, nt) on nt threads of the pool (t = 0 on the caller) and waits for all.
template <class F>
void run_on_threads(int threads, F&& f) {
  auto call = [](void* ctx, int t, int nt) noexcept { (*static_cast<std::remove_reference_t<F>*>(ctx))(t, nt); };
  ThreadPool::instance().run(threads, call, const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace resblocks::detail
