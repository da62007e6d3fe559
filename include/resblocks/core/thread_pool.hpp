#pragma once
/// \file
/// \brief ThreadPool: resblocks' own worker threads, which wait by spinning briefly and then sleeping.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
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
/// 1: while the pool's threads are preempted in many regions (a co-tenant), the regions run on the
/// caller alone for a while (ContentionMonitor). 0: always on the threads asked for.
#ifndef RESBLOCKS_POOL_ALONE
#define RESBLOCKS_POOL_ALONE 1
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

/// \brief Whether a pool should run its regions on the caller alone: its threads are being preempted in
/// many regions. Beside a co-tenant that keeps the CPUs busy (a compile in another terminal), two
/// threads wait for each other at the end of every region whose other half the scheduler has
/// descheduled, where one thread alone keeps its CPU and never waits (ResNet-20 step beside two busy
/// loops: 196-209 ms on one thread against 224-305 ms on two). The results are the same either way: the
/// work is cut by the shape, never by the thread count.
///
/// Fed once per region run on threads, it says "alone" once k_preempted of the last k_window such
/// regions saw a thread preempted while it ran its part, for a period: k_min_alone, doubled (up to k_max_alone) each
/// time the regions right after an alone period are preempted again. A quiet machine's rare switches do not reach
/// k_preempted within a window (a few tens of milliseconds of a training step): measured over 11,440 regions of a
/// ResNet-20 step, none ran alone, where 16 regions and 4 switches set it off for a 50 ms period every second or two (a
/// brief burst of another process preempts several regions in a row). Switches outside the parts do not count: a worker
/// woken onto the caller's CPU preempts the caller once per region when the regions are far apart (the workers asleep
/// in between).
class ContentionMonitor {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int k_window = 32;  // < 64
  static constexpr int k_preempted = 8;
  static constexpr Clock::duration k_min_alone = std::chrono::milliseconds(50);
  static constexpr Clock::duration k_max_alone = std::chrono::milliseconds(800);

  /// True while regions should run on the caller alone.
  [[nodiscard]] bool alone(Clock::time_point now) const noexcept { return now < m_alone_until; }

  /// After a region run on threads; `preempted`: one of its threads was preempted while running its part.
  void after_region(bool preempted, Clock::time_point now) noexcept {
    m_window = ((m_window << 1) | std::uint64_t{preempted}) & ((std::uint64_t{1} << k_window) - 1);
    if (std::popcount(m_window) < k_preempted) return;
    // Preempted again within one period of the last alone period's end: the co-tenant is still there.
    m_period = now - m_alone_until < m_period ? std::min(2 * m_period, k_max_alone) : k_min_alone;
    m_alone_until = now + m_period;
    m_window = 0;
  }

  /// Regions run alone until `until` (ThreadPool::run_alone_for).
  void alone_until(Clock::time_point until) noexcept { m_alone_until = std::max(m_alone_until, until); }

 private:
  std::uint64_t m_window = 0;  ///< bit i: the region i regions ago was preempted
  Clock::duration m_period = k_min_alone;
  Clock::time_point m_alone_until{};
};

/// \brief The scratch of one thread index t >= 1 of a pool's regions (part_local): owned by the pool, used by whichever
/// OS thread runs part t. The worker runs it, or while the pool runs alone the caller does; either way part t finds the
/// scratch that part t sized before, so the worker allocates nothing when it takes its parts back.
class PartSlot {
 public:
  static constexpr int k_kinds = 8;  ///< the part_local types a program may use

  PartSlot() = default;
  PartSlot(const PartSlot&) = delete;
  PartSlot& operator=(const PartSlot&) = delete;
  ~PartSlot() {
    for (Object& object : m_objects)
      if (object.ptr) object.destroy(object.ptr);
  }

  /// The slot's T of kind `kind` (< k_kinds), value-initialised on first use.
  template <class T>
  T& get(int kind) {
    Object& object = m_objects[static_cast<std::size_t>(kind)];
    if (!object.ptr) {
      object.ptr = new T();
      object.destroy = [](void* p) { delete static_cast<T*>(p); };
    }
    return *static_cast<T*>(object.ptr);
  }

  /// The slot of the part the calling thread is running, or nullptr (outside a pool region, or part 0).
  static PartSlot*& current() noexcept {
    thread_local PartSlot* slot = nullptr;
    return slot;
  }

 private:
  struct Object {
    void* ptr = nullptr;
    void (*destroy)(void*) = nullptr;
  };
  std::array<Object, k_kinds> m_objects{};
};

/// A new kind index for part_local's types.
inline int next_part_local_kind() noexcept {
  static std::atomic<int> kinds{0};
  return kinds.fetch_add(1, std::memory_order_relaxed);
}

/// \brief Per-thread scratch that follows the part: inside a pool region's part t >= 1, part t's T (PartSlot); else the
/// calling thread's own (thread_local) T. Sized by whoever runs a part, it stays sized for that part.
template <class T>
T& part_local() {
  static const int kind = next_part_local_kind();
  PartSlot* const slot = PartSlot::current();
  if (slot && kind < PartSlot::k_kinds) return slot->get<T>(kind);
  thread_local T own;
  return own;
}

/// \brief A fixed set of persistent worker threads that run one parallel region at a time.
///
/// `run(nt, fn, ctx)` calls `fn(ctx, t, nt)` for t = 0 … nt-1, t = 0 on the calling thread and
/// t ≥ 1 on the same worker each time (or, while the pool runs alone, on the caller after t − 1), and
/// returns when every call has returned. Per-thread scratch (GEMM packing buffers) is part_local: part t >= 1 uses
/// the pool's slot t, whichever thread runs it, so it is sized once, for any of t's parts. Nothing is allocated per
/// region.
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
/// take its CPU time). While the threads are preempted in many regions, the regions run on the caller
/// alone for a while, every thread's part in turn (ContentionMonitor).
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
    if (m_monitor.alone(ContentionMonitor::Clock::now())) {
      add_slots(threads - 1);
      region_flag() = true;  // every thread's part, in turn, with its slot: the same parts, the same results
      for (int t = 0; t < threads; ++t) {
        PartSlot::current() = t == 0 ? nullptr : m_slots[static_cast<std::size_t>(t - 1)].get();
        task(ctx, t, threads);
      }
      PartSlot::current() = nullptr;
      region_flag() = false;
      return;
    }
    grow(threads - 1);
    m_preempted.store(false, std::memory_order_relaxed);
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
    // Preemptions while the task runs, not at the wake-up above (a woken worker placed on this CPU
    // preempts the caller once; that is no co-tenant) nor while waiting below.
    const bool watch = m_alone_when_preempted.load(std::memory_order_relaxed);
    const long switches = watch ? involuntary_switches() : 0;
    region_flag() = true;
    task(ctx, 0, threads);
    region_flag() = false;
    const bool preempted = watch && involuntary_switches() != switches;
    // The end of the region: spin, then sleep until the last worker signals.
    if (!spin_until([&] { return m_pending.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_caller_sleeping = true;
      m_done.wait(lock, [&] { return m_pending.load(std::memory_order_acquire) == 0; });
      m_caller_sleeping = false;
    }
    if (watch)
      m_monitor.after_region(preempted || m_preempted.load(std::memory_order_relaxed), ContentionMonitor::Clock::now());
  }

  /// Whether the pool runs its regions on the caller alone for a while when its threads are preempted
  /// in many regions (ContentionMonitor; default: RESBLOCKS_POOL_ALONE). Turned off, it also ends such a
  /// period; thread t ≥ 1 of a region then always runs on the same worker, except within run_alone_for().
  void set_alone_when_preempted(bool on) {
    std::lock_guard<std::mutex> region(m_region);
    m_alone_when_preempted.store(on, std::memory_order_relaxed);
    if (!on) m_monitor = ContentionMonitor{};
  }

  /// Runs the regions that start within `how_long` on the calling thread alone (every thread's part in
  /// turn), as the pool does by itself while its threads are preempted in many regions.
  void run_alone_for(std::chrono::steady_clock::duration how_long) {
    std::lock_guard<std::mutex> region(m_region);
    m_monitor.alone_until(ContentionMonitor::Clock::now() + how_long);
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

  /// Slots for threads 1 … n (called under m_region: the slots only grow, and only there).
  void add_slots(int n) {
    while (static_cast<int>(m_slots.size()) < n) m_slots.push_back(std::make_unique<PartSlot>());
  }

  void grow(int workers) {
    add_slots(workers);
    std::lock_guard<std::mutex> lock(m_mutex);
    while (static_cast<int>(m_workers.size()) < workers) {
      const int index = static_cast<int>(m_workers.size()) + 1;  // thread 0 is the caller
      // The generation the worker starts from is read here, before run() starts the next region:
      // read in the new thread, it could already be that region's, which the worker would then skip.
      const std::uint64_t seen = m_generation;
      PartSlot* const slot = m_slots[static_cast<std::size_t>(index - 1)].get();
      m_workers.emplace_back([this, index, seen, slot] { work(index, seen, slot); });
    }
  }

  void work(int index, std::uint64_t seen, PartSlot* slot) {
    region_flag() = true;        // a worker's own calls into the library run single-threaded
    PartSlot::current() = slot;  // it runs part `index` only
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
      const bool watch = m_alone_when_preempted.load(std::memory_order_relaxed);
      const long switches = watch ? involuntary_switches() : 0;
      m_task(m_ctx, index, threads);
      if (watch && involuntary_switches() != switches) m_preempted.store(true, std::memory_order_relaxed);
      if (m_pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_caller_sleeping) m_done.notify_one();
      }
    }
  }

  mutable std::mutex m_mutex;  ///< guards the sleep/wake handshakes, m_workers and m_generation
  std::mutex m_region;         ///< one region at a time
  std::condition_variable m_wake, m_done;
  std::vector<std::unique_ptr<PartSlot>>
      m_slots;  ///< slot t-1: thread t's scratch; grows under m_region, before m_workers
  std::vector<std::thread> m_workers;
  std::uint64_t m_generation = 0;
  std::atomic<std::uint64_t> m_ticket{0};  ///< generation << 16 | threads of the current region
  std::atomic<int> m_pending{0};           ///< workers still running the current region
  std::atomic<bool> m_preempted{false};    ///< a worker of the current region was preempted
  std::atomic<bool> m_alone_when_preempted{RESBLOCKS_POOL_ALONE != 0};
  ContentionMonitor m_monitor;  ///< guarded by m_region
  Task m_task = nullptr;
  void* m_ctx = nullptr;
  int m_sleeping = 0;
  bool m_caller_sleeping = false;
  bool m_stop = false;
};

/// Runs f(t, nt) on nt threads of `pool` (t = 0 on the caller) and waits for all.
template <class F>
void run_on_threads(ThreadPool& pool, int threads, F&& f) {
  auto call = [](void* ctx, int t, int nt) noexcept { (*static_cast<std::remove_reference_t<F>*>(ctx))(t, nt); };
  pool.run(threads, call, const_cast<void*>(static_cast<const void*>(&f)));
}

/// Runs f(t, nt) on nt threads of the process's pool (t = 0 on the caller) and waits for all.
template <class F>
void run_on_threads(int threads, F&& f) {
  run_on_threads(ThreadPool::instance(), threads, std::forward<F>(f));
}

}  // namespace resblocks::detail
