#pragma once
/// \file
/// \brief The number of threads resblocks' large kernels may use, and the parallel loops over them.
///
/// Threading is on when the library is compiled with OpenMP (the CMake option RESBLOCKS_USE_OPENMP,
/// on by default): OpenMP gives the default thread count (OMP_NUM_THREADS) and `omp simd`, while the
/// parallel regions run on resblocks' own ThreadPool, whose idle threads sleep after a short spin
/// instead of spinning as libgomp's do (which made a step 10–30× slower beside another busy
/// process). Define RESBLOCKS_OPENMP_REGIONS to run the regions as OpenMP parallel regions instead.

#include "resblocks/core/thread_pool.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <atomic>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace resblocks {

namespace detail {
inline int& thread_setting() noexcept {
  static int threads = 0;  // 0: not set, use OpenMP's default
  return threads;
}
}  // namespace detail

/// \brief Threads the large kernels use: set_num_threads()'s value, else OpenMP's maximum (1 without OpenMP).
/// \returns the thread count, >= 1
inline int num_threads() noexcept {
#if defined(_OPENMP)
  const int set = detail::thread_setting();
  return set > 0 ? set : omp_get_max_threads();
#else
  return 1;
#endif
}

/// \brief Sets the threads the large kernels use (>= 1). Kernels called from inside a parallel region use one.
/// \param threads the thread count
/// \throws std::invalid_argument on threads < 1
inline void set_num_threads(int threads) {
  if (threads < 1)
    throw std::invalid_argument("resblocks::set_num_threads: threads must be >= 1, got " + std::to_string(threads));
  detail::thread_setting() = threads;
}

namespace detail {

/// True inside a parallel region (OpenMP's, or the thread pool's), where kernels run single-threaded.
inline bool in_parallel_region() noexcept {
#if defined(RESBLOCKS_OPENMP_REGIONS)
  return omp_in_parallel();
#else
  return ThreadPool::in_region();
#endif
}

/// Runs f(t, nt) for t = 0 … threads-1 in parallel (thread t always the same OS thread), then returns.
template <class F>
void parallel_region(int threads, F&& f) {
#if defined(RESBLOCKS_OPENMP_REGIONS)
#pragma omp parallel num_threads(threads)
  f(omp_get_thread_num(), omp_get_num_threads());
#else
  run_on_threads(threads, f);
#endif
}

/// Threads worth using for `work` multiply-adds (or element operations): one per `grain`, at most num_threads().
inline int threads_for(double work, double grain) noexcept {
#if defined(_OPENMP)
  if (in_parallel_region()) return 1;
  const double by_work = work / grain;
  const int limit = num_threads();
  return by_work < 2.0 ? 1 : std::min(limit, static_cast<int>(by_work));
#else
  (void)work;
  (void)grain;
  return 1;
#endif
}

/// Calls f(i0, i1) on contiguous sub-ranges of [0, n), in parallel when the work is large.
/// `cost_per_item` estimates the element operations one item costs. Each item is handled by
/// exactly one call, so results do not depend on the thread count. One range per thread, split
/// statically: handing out 4 ranges per thread as threads came free cost the ResNet-20 step about 3%
/// on a quiet machine (BM_CifarResNetTrain/20/128: 166-176 ms against 161-171) and gained nothing
/// beside a co-tenant (the loaded step runs at one core's speed either way).
template <class F>
void parallel_for(Eigen::Index n, double cost_per_item, F&& f) {
  const int threads = threads_for(cost_per_item * static_cast<double>(n), 1 << 15);
  if (threads <= 1) {
    if (n > 0) f(Eigen::Index(0), n);
    return;
  }
  parallel_region(threads, [&](Eigen::Index t, Eigen::Index nt) {
    const Eigen::Index i0 = n * t / nt, i1 = n * (t + 1) / nt;
    if (i1 > i0) f(i0, i1);
  });
}

/// Threads that parallel_parts and parallel_parts_dynamic use for `parts` parts: size per-thread scratch by it.
inline int threads_for_parts(Eigen::Index parts) noexcept {
#if defined(_OPENMP)
  return in_parallel_region()
             ? 1
             : static_cast<int>(std::max<Eigen::Index>(1, std::min<Eigen::Index>(num_threads(), parts)));
#else
  (void)parts;
  return 1;
#endif
}

/// Calls f(part) for every part in [0, parts), the parts spread over threads (each part is run by
/// one thread, start to end; code inside runs single-threaded). Results depend only on `parts`,
/// not on the threads, as long as f(part) touches only what belongs to the part. Thread t always
/// runs the same parts, so per-thread scratch (GEMM packing buffers) is sized once.
template <class F>
void parallel_parts(Eigen::Index parts, F&& f) {
  const int threads = threads_for_parts(parts);
  if (threads > 1) {
    parallel_region(threads, [&](Eigen::Index t, Eigen::Index nt) {
      for (Eigen::Index p = t; p < parts; p += nt) f(p);
    });
    return;
  }
  for (Eigen::Index p = 0; p < parts; ++p) f(p);
}

/// Threads up to which parallel_parts_dynamic keeps a share of the parts per thread (above, one queue).
inline constexpr int k_affine_threads = 64;

/// parallel_parts, the parts handed to the threads as they come free (balances a busy core): each
/// thread first runs its own contiguous share, then what is left of the others'. Which thread runs a
/// part varies: f(part) for scratch that belongs to the part, or
/// f(part, thread) with thread < threads_for_parts(parts) for scratch that belongs to the thread.
/// Each thread calls start(thread) before its first part: there it sizes thread-local scratch for
/// any part (which parts it gets changes from call to call, its scratch then never grows later).
/// Results depend only on `parts` when f(part) touches only what belongs to the part.
template <class F, class Start = void (*)(Eigen::Index)>
void parallel_parts_dynamic(
    Eigen::Index parts, F&& f, Start&& start = [](Eigen::Index) {}) {
  auto call = [&](Eigen::Index p, Eigen::Index t) {
    if constexpr (std::is_invocable_v<F&, Eigen::Index, Eigen::Index>)
      f(p, t);
    else
      f(p);
  };
  const int threads = threads_for_parts(parts);
  if (threads > 1 && threads <= k_affine_threads) {
    // Thread t first runs its own share of the parts, in order: the samples parallel_for gives it too,
    // so the passes before and after find them in its cache (the parts' results stay in the L2 of the
    // core that reads them next). Then it takes what is left of the others' shares, so a thread
    // whose core is taken (a co-tenant) holds back at most the part it is running.
    struct alignas(64) Share {
      std::atomic<Eigen::Index> next;
      Eigen::Index end;
    };
    std::array<Share, k_affine_threads> shares;
    for (int t = 0; t < threads; ++t) {
      shares[std::size_t(t)].next.store(parts * t / threads, std::memory_order_relaxed);
      shares[std::size_t(t)].end = parts * (t + 1) / threads;
    }
    parallel_region(threads, [&](Eigen::Index t, Eigen::Index) {  // every share, even if OpenMP gave fewer threads
      start(t);
      for (int k = 0; k < threads; ++k) {
        Share& share = shares[std::size_t((t + k) % threads)];
        for (Eigen::Index p = share.next.fetch_add(1, std::memory_order_relaxed); p < share.end;
             p = share.next.fetch_add(1, std::memory_order_relaxed))
          call(p, t);
      }
    });
    return;
  }
  if (threads > 1) {
    std::atomic<Eigen::Index> next{0};
    parallel_region(threads, [&](Eigen::Index t, Eigen::Index) {
      start(t);
      for (Eigen::Index p = next.fetch_add(1, std::memory_order_relaxed); p < parts;
           p = next.fetch_add(1, std::memory_order_relaxed))
        call(p, t);
    });
    return;
  }
  start(Eigen::Index(0));
  for (Eigen::Index p = 0; p < parts; ++p) call(p, 0);
}

/// data[0 : n) = 0, in contiguous ranges in parallel when n is large (from 2^18 values): zero_grad's pass
/// over a big gradient is memory-bound, and two cores write it faster than one (BM_MlpBlockTrain/1024/128
/// on 2 threads, its two 4 MB weight gradients: 6.44-6.71 -> 6.26-6.51 ms).
template <class S>
void parallel_zero(S* data, Eigen::Index n) {
  parallel_for(n, 0.25, [data](Eigen::Index i0, Eigen::Index i1) { std::fill(data + i0, data + i1, S(0)); });
}

/// m.setZero() for a plain Eigen matrix or vector: parallel_zero when its size is dynamic (fixed sizes
/// are small, and stay a plain fill).
template <class M>
void parallel_zero(M& m) {
  if constexpr (M::SizeAtCompileTime == Eigen::Dynamic)
    parallel_zero(m.data(), m.size());
  else
    m.setZero();
}

/// dst = expr, column blocks in parallel when large (dst already has expr's shape).
template <class Dst, class Expr>
void parallel_assign(Dst& dst, const Expr& expr) {
  parallel_for(dst.cols(), static_cast<double>(dst.rows()),
               [&](Eigen::Index c0, Eigen::Index c1) { dst.middleCols(c0, c1 - c0) = expr.middleCols(c0, c1 - c0); });
}

}  // namespace detail
}  // namespace resblocks
