#pragma once
/// \file
/// \brief The batch-normalisation kernels BatchNorm2d and DenseLayer share: per-channel statistics
/// over fixed column partitions merged in order, the normalisation coefficients, the running-statistics
/// update, and the per-channel sums of the backward pass.

#include "resblocks/core/threading.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>

// The per-channel loops below run over channels inside a column; `omp simd` vectorises them at -O2
// too (GCC's -O2 cost model leaves run-time-length loops scalar).
#if defined(_OPENMP)
#define RESBLOCKS_SIMD _Pragma("omp simd")
#else
#define RESBLOCKS_SIMD
#endif

// The strip loops below on 512-bit vectors where there are some: GCC's tuning for AVX-512 machines
// prefers 256-bit ones, which ran partial_moments and gradient_sums 1.5x slower (float: the
// conversions to double split in two). Lanes are rows, each summed as in scalar code: the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define RESBLOCKS_WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define RESBLOCKS_WIDE_VECTORS
#endif

namespace resblocks::detail {

using Eigen::Index;

/// A grow-only flat buffer viewed as rows × cols: the layers of a block share it without reallocating.
template <class V>
auto grown_view(V& storage, Index rows, Index cols) {
  if (storage.size() < rows * cols) storage.resize(rows * cols);
  return Eigen::Map<Eigen::Matrix<typename V::Scalar, Eigen::Dynamic, Eigen::Dynamic>>(storage.data(), rows, cols);
}

/// Columns per chunk (partition) of a pass over `rows` × `cols`: about 256 KB of float data (as
/// BatchNorm2d's statistics partitions), the count of chunks rounded up to a multiple of 4 so that
/// 2 or 4 threads get equal shares. Partitions are fixed by the shape, run in parallel and merged
/// in order: the results do not depend on the thread count.
inline Index statistics_partition(Index rows, Index cols) noexcept {
  const Index step = std::max<Index>(16, (Index(1) << 16) / std::max<Index>(rows, 1));
  const Index parts = (cols + step - 1) / step;
  if (parts <= 1) return std::max<Index>(cols, 1);
  const Index balanced = (parts + 3) / 4 * 4;
  return (cols + balanced - 1) / balanced;
}

/// Columns per partition of the statistics of images of `area` positions (0: unknown), `cols`
/// columns of `rows` channels: one sample per partition when the columns are whole samples of at
/// most 2^18 values (1 MB of float: a convolution's output of one sample, still in cache when the
/// convolution's pass hands it over, BatchNorm2d::sample_moments), else statistics_partition.
inline Index sample_statistics_partition(Index rows, Index cols, Index area) noexcept {
  if (area > 0 && cols >= area && cols % area == 0 && rows * area <= (Index(1) << 18)) return area;
  return statistics_partition(rows, cols);
}

/// Calls f(part, c0, cols) for every partition of `step` columns (the last one shorter) of `columns`
/// columns of `rows` rows, in parallel.
template <class F>
void for_each_partition(Index rows, Index columns, Index step, const F& f) {
  const Index parts = (columns + step - 1) / step;
  parallel_for(parts, double(step) * double(rows) * 2.0, [&](Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) f(p, p * step, std::min(step, columns - p * step));
  });
}

/// Calls f(part, c0, cols) for every partition (statistics_partition) of `columns` columns of `rows`
/// rows, in parallel.
template <class F>
void for_each_statistics_partition(Index rows, Index columns, const F& f) {
  for_each_partition(rows, columns, statistics_partition(rows, columns), f);
}

/// Rows per strip of the per-channel reductions below: a strip's sums (two per row, in double) stay in
/// registers while the strip's columns stream past, instead of a load and a store per value.
inline constexpr Index k_strip_rows = 16;

/// Mean and sum of squared deviations from it of each row of the block x (any column stride):
/// two passes, in double. Whole strips of k_strip_rows rows sum even and odd columns apart (two
/// dependency chains), then add the two; the rows after the last strip sum in column order.
template <class X>
RESBLOCKS_WIDE_VECTORS void partial_moments(const X& x, double* mean, double* m2) {
  constexpr Index W = k_strip_rows;
  const Index rows = x.rows(), cols = x.cols(), ld = x.outerStride();
  const auto* data = x.data();
  Index r0 = 0;
  for (; r0 + W <= rows && cols > 0; r0 += W) {
    double s0[W] = {}, s1[W] = {};
    Index j = 0;
    for (; j + 2 <= cols; j += 2) {
      const auto* x0 = data + j * ld + r0;
      const auto* x1 = x0 + ld;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) {
        s0[r] += double(x0[r]);
        s1[r] += double(x1[r]);
      }
    }
    if (j < cols) {
      const auto* x0 = data + j * ld + r0;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) s0[r] += double(x0[r]);
    }
    double mu[W];
    RESBLOCKS_SIMD
    for (Index r = 0; r < W; ++r) {
      mu[r] = (s0[r] + s1[r]) / double(cols);
      s0[r] = s1[r] = 0;
    }
    for (j = 0; j + 2 <= cols; j += 2) {
      const auto* x0 = data + j * ld + r0;
      const auto* x1 = x0 + ld;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) {
        const double d0 = double(x0[r]) - mu[r], d1 = double(x1[r]) - mu[r];
        s0[r] += d0 * d0;
        s1[r] += d1 * d1;
      }
    }
    if (j < cols) {
      const auto* x0 = data + j * ld + r0;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) {
        const double d0 = double(x0[r]) - mu[r];
        s0[r] += d0 * d0;
      }
    }
    for (Index r = 0; r < W; ++r) {
      mean[r0 + r] = mu[r];
      m2[r0 + r] = s0[r] + s1[r];
    }
  }
  for (Index r = r0; r < rows; ++r) mean[r] = m2[r] = 0;
  if (r0 == rows) return;
  for (Index j = 0; j < cols; ++j) {
    const auto* xj = data + j * ld;
    RESBLOCKS_SIMD
    for (Index r = r0; r < rows; ++r) mean[r] += double(xj[r]);
  }
  for (Index r = r0; r < rows; ++r) mean[r] /= double(cols);
  for (Index j = 0; j < cols; ++j) {
    const auto* xj = data + j * ld;
    RESBLOCKS_SIMD
    for (Index r = r0; r < rows; ++r) {
      const double d = double(xj[r]) - mean[r];
      m2[r] += d * d;
    }
  }
}

/// Σ g and Σ g·(x − mean) of each row over `cols` columns (g and x with column strides ldg, ldx), in
/// double, into sum_g and sum_g_xc (overwritten): BatchNorm's backward sums. Strips as in
/// partial_moments. With x_next (the x of the partition summed next, same layout), the first strip
/// fetches its lines into L2 as it goes: the next call, after a convolution's sample in between,
/// finds them there instead of waiting on memory.
template <class S>
RESBLOCKS_WIDE_VECTORS void gradient_sums(const S* g, Index ldg, const S* x, Index ldx, const S* mean, Index rows,
                                          Index cols, double* sum_g, double* sum_g_xc, const S* x_next = nullptr) {
  constexpr Index W = k_strip_rows;
  constexpr Index line = 64 / Index(sizeof(S));
  Index r0 = 0;
  for (; r0 + W <= rows; r0 += W) {
    double a0[W] = {}, a1[W] = {}, b0[W] = {}, b1[W] = {};
    const S* m = mean + r0;
    Index j = 0;
    for (; j + 2 <= cols; j += 2) {
      if (x_next && r0 == 0)
        for (Index c = j; c < j + 2; ++c)
          for (Index r = 0; r < rows; r += line) __builtin_prefetch(x_next + c * ldx + r, 0, 2);
      const S* g0 = g + j * ldg + r0;
      const S* g1 = g0 + ldg;
      const S* x0 = x + j * ldx + r0;
      const S* x1 = x0 + ldx;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) {
        a0[r] += double(g0[r]);
        a1[r] += double(g1[r]);
        b0[r] += double(g0[r]) * double(x0[r] - m[r]);
        b1[r] += double(g1[r]) * double(x1[r] - m[r]);
      }
    }
    if (j < cols) {
      const S* g0 = g + j * ldg + r0;
      const S* x0 = x + j * ldx + r0;
      RESBLOCKS_SIMD
      for (Index r = 0; r < W; ++r) {
        a0[r] += double(g0[r]);
        b0[r] += double(g0[r]) * double(x0[r] - m[r]);
      }
    }
    for (Index r = 0; r < W; ++r) {
      sum_g[r0 + r] = a0[r] + a1[r];
      sum_g_xc[r0 + r] = b0[r] + b1[r];
    }
  }
  for (Index r = r0; r < rows; ++r) sum_g[r] = sum_g_xc[r] = 0;
  if (r0 == rows) return;
  for (Index j = 0; j < cols; ++j) {
    const S* gj = g + j * ldg;
    const S* xj = x + j * ldx;
    RESBLOCKS_SIMD
    for (Index r = r0; r < rows; ++r) {
      sum_g[r] += double(gj[r]);
      sum_g_xc[r] += double(gj[r]) * double(xj[r] - mean[r]);
    }
  }
}

/// Merges the moments of partitions of `step` columns (partition p: mean in column 2p, m2 in
/// 2p + 1 of `parts`) in order (Chan et al.): the mean and biased variance of all `cols` columns,
/// into rows [r0, r0 + parts.rows()) of stats (column 0 mean, column 1 variance).
template <class Parts>
void merge_moments(const Parts& parts, Index cols, Index step, Eigen::MatrixXd& stats, Index r0) {
  const Index nparts = (cols + step - 1) / step;
  for (Index r = 0; r < parts.rows(); ++r) {
    double mean = parts(r, 0), m2 = parts(r, 1), count = double(std::min(step, cols));
    for (Index p = 1; p < nparts; ++p) {
      const double nb = double(std::min(step, cols - p * step)), total = count + nb;
      const double delta = parts(r, 2 * p) - mean;
      mean += delta * (nb / total);
      m2 += parts(r, 2 * p + 1) + delta * delta * (count * nb / total);
      count = total;
    }
    stats(r0 + r, 0) = mean;
    stats(r0 + r, 1) = m2 / double(cols);
  }
}

/// Per-row mean and biased variance of x (any column stride) into rows [r0, r0 + x.rows()) of
/// `stats`, as BatchNorm2d computes them: per partition of `step` columns, in parallel, merged in
/// partition order.
template <class X>
void row_statistics(const X& x, Eigen::VectorXd& storage, Eigen::MatrixXd& stats, Index r0, Index step) {
  const Index rows = x.rows(), cols = x.cols();
  auto parts = grown_view(storage, rows, 2 * ((cols + step - 1) / step));
  for_each_partition(rows, cols, step, [&](Index p, Index c0, Index n) {
    partial_moments(x.middleCols(c0, n), parts.col(2 * p).data(), parts.col(2 * p + 1).data());
  });
  merge_moments(parts, cols, step, stats, r0);
}

/// row_statistics over the partitions of statistics_partition.
template <class X>
void row_statistics(const X& x, Eigen::VectorXd& storage, Eigen::MatrixXd& stats, Index r0) {
  row_statistics(x, storage, stats, r0, statistics_partition(x.rows(), x.cols()));
}

/// Per-channel coefficients of y = scale·x + shift, with the mean and 1/√(var + ε) they come from:
/// the batch statistics `stats` (rows of mean, biased variance) when `batch`, else the running ones.
template <class V>
void norm_coefficients(bool batch, const Eigen::MatrixXd& stats, const V& gamma, const V& beta, const V& running_mean,
                       const V& running_var, double eps, V& scale, V& shift, V& mean, V& inv_std) {
  using S = typename V::Scalar;
  const Index rows = gamma.size();
  scale.resize(rows);
  shift.resize(rows);
  mean.resize(rows);
  inv_std.resize(rows);
  for (Index r = 0; r < rows; ++r) {
    const double mu = batch ? stats(r, 0) : double(running_mean(r));
    const double var = batch ? stats(r, 1) : double(running_var(r));
    const double is = 1.0 / std::sqrt(var + eps), s = double(gamma(r)) / std::sqrt(var + eps);
    scale(r) = S(s);
    shift(r) = S(double(beta(r)) - mu * s);
    mean(r) = S(mu);
    inv_std(r) = S(is);
  }
}

/// PyTorch's update from the batch statistics of `columns` values per channel:
/// running = (1 − momentum)·running + momentum·batch, with the unbiased variance; count += 1.
template <class V>
void update_running_statistics(const Eigen::MatrixXd& stats, Index columns, double momentum, V& running_mean,
                               V& running_var, std::int64_t& count) {
  using S = typename V::Scalar;
  const double n = double(columns);
  for (Index r = 0; r < running_mean.size(); ++r) {
    running_mean(r) = S((1 - momentum) * double(running_mean(r)) + momentum * stats(r, 0));
    running_var(r) = S((1 - momentum) * double(running_var(r)) + momentum * stats(r, 1) * (n / (n - 1)));
  }
  ++count;
}

/// The end of a BatchNorm backward over `cols` values per channel, from per-partition sums (partition p:
/// Σ g in column 2p, Σ g·(x − mean) in 2p + 1 of `sums`), merged in order: dβ += Σ g, dγ += Σ g·x̂,
/// and the coefficients of dL/dx = scale·g + b·x + c (b = c = 0 when the pass used running statistics,
/// where dL/dx = scale·g).
template <class Sums, class V>
void finish_norm_backward(const Sums& sums, Index cols, bool batch, const V& scale, const V& mean, const V& inv_std,
                          V& b, V& c, V& dgamma, V& dbeta) {
  using S = typename V::Scalar;
  const Index rows = scale.size(), nparts = sums.cols() / 2;
  b.resize(rows);
  c.resize(rows);
  for (Index r = 0; r < rows; ++r) {
    double sum_g = 0, sum_g_xhat = 0;
    for (Index p = 0; p < nparts; ++p) {
      sum_g += sums(r, 2 * p);
      sum_g_xhat += sums(r, 2 * p + 1);
    }
    sum_g_xhat *= double(inv_std(r));
    dbeta(r) += S(sum_g);
    dgamma(r) += S(sum_g_xhat);
    b(r) = S(0);
    c(r) = S(0);
    if (batch) {  // the mean and variance depend on x: dx = scale·(g − mean(g) − x̂·mean(g·x̂))
      const double s = double(scale(r)), is = double(inv_std(r)), k3 = sum_g_xhat / double(cols),
                   k2 = sum_g / double(cols);
      b(r) = S(-s * is * k3);
      c(r) = S(s * (double(mean(r)) * is * k3 - k2));
    }
  }
}

}  // namespace resblocks::detail
