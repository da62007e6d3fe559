#pragma once
/// \file
/// \brief BatchNorm2d: per-channel batch normalisation with running statistics.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// \brief Settings of BatchNorm2d (PyTorch's defaults).
struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;  ///< running = (1 - momentum)·running + momentum·batch statistic
};

/// \brief Batch normalisation over every column (every sample and position) of each channel,
/// as PyTorch's `nn.BatchNorm2d` (and `BatchNorm1d` on vector batches): `y = γ (x - μ)/√(σ² + ε) + β`.
///
/// Training mode (the default) normalises with the batch's mean and biased variance and updates
/// `running_mean` and `running_var` (the latter with the unbiased variance) and
/// `num_batches_tracked`; evaluation mode (set_training(false)) uses the running statistics.
/// Parameters `weight` (γ, ones) and `bias` (β, zeros); buffers `running_mean`, `running_var`,
/// `num_batches_tracked` (for_each_buffer). infer() normalises as forward() does in the current
/// mode but never updates the running statistics.
///
/// Statistics are summed over fixed column partitions in parallel and merged in order (Chan's
/// formula, in double), so the bits do not depend on the thread count.
template <class S = float, int C = Dynamic>
class BatchNorm2d {
 public:
  using Scalar = S;
  static constexpr int InFeatures = C;
  static constexpr int OutFeatures = C;
  using Input = Batch<S, C>;
  using Output = Batch<S, C>;
  using Vector = detail::ParamVector<S, C>;
  static constexpr std::string_view name = "BatchNorm2d";
  static constexpr bool has_epilogue_hooks = true;  ///< offers forward_then / backward_then / infer_then

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
    Vector scale, shift;
    Eigen::MatrixXd parts;
  };

  /// Static channel count: `BatchNorm2d<float, 64> bn;`.
  explicit BatchNorm2d(BatchNormOptions options = {})
    requires(C != Dynamic)
      : BatchNorm2d(C, options) {}

  BatchNorm2d(Index channels, BatchNormOptions options = {}) : m_opt(options) {
    detail::check_features(name, "channels", C, channels);
    if (!(options.eps > 0) || !(options.momentum >= 0 && options.momentum <= 1))
      throw std::invalid_argument("BatchNorm2d: eps must be > 0 and momentum in [0, 1], got eps " +
                                  std::to_string(options.eps) + ", momentum " + std::to_string(options.momentum));
    m_weight.setOnes(channels);
    m_bias.setZero(channels);
    m_dL_dweight.setZero(channels);
    m_dL_dbias.setZero(channels);
    m_running_mean.setZero(channels);
    m_running_var.setOnes(channels);
    m_scale.setZero(channels);
    m_shift.setZero(channels);
    m_mean.setZero(channels);
    m_inv_std.setZero(channels);
    m_b.setZero(channels);
    m_c.setZero(channels);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] Index out_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] const BatchNormOptions& options() const noexcept { return m_opt; }

  void set_training(bool training) noexcept { m_training = training; }
  [[nodiscard]] bool training() const noexcept { return m_training; }

  Vector& weight() noexcept { return m_weight; }
  const Vector& weight() const noexcept { return m_weight; }
  Vector& bias() noexcept { return m_bias; }
  const Vector& bias() const noexcept { return m_bias; }
  const Vector& weight_grad() const noexcept { return m_dL_dweight; }
  const Vector& bias_grad() const noexcept { return m_dL_dbias; }
  Vector& running_mean() noexcept { return m_running_mean; }
  const Vector& running_mean() const noexcept { return m_running_mean; }
  Vector& running_var() noexcept { return m_running_var; }
  const Vector& running_var() const noexcept { return m_running_var; }
  [[nodiscard]] std::int64_t num_batches_tracked() const noexcept { return m_num_batches_tracked; }

  // --- Synchronised batch statistics (SyncBatchNorm), for data-parallel training ---------------
  /// Sums a span of doubles element-wise over all replicas, in place (an MPI_Allreduce; see
  /// resblocks/distributed/sync_batch_norm.hpp). Every replica must call it equally often.
  using StatisticsReducer = std::function<void(std::span<double>)>;
  /// With a reducer, training-mode forward() normalises with the statistics of the batch of all
  /// replicas together (as PyTorch's SyncBatchNorm), and backward() reduces Σdy and Σdy·x̂ so dL/dx
  /// is that of the joint batch; the parameter gradients stay per replica (DataParallel averages
  /// them). An empty reducer (the default) gives plain per-replica statistics.
  void set_statistics_reducer(StatisticsReducer reducer) { m_reducer = std::move(reducer); }
  [[nodiscard]] bool synchronized() const noexcept { return static_cast<bool>(m_reducer); }

  const Output& forward(const Input& x) {
    forward_then(x, detail::NoPrepare{}, detail::NoEpilogue{});
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// forward(x), then `epilogue(y, r0, rows, c0, cols)` on each finished block of y (in cache);
  /// `prepare(y)` runs first, once, after y is sized.
  template <class Prepare, class Epilogue>
  const Output& forward_then(const Input& x, const Prepare& prepare, const Epilogue& epilogue) {
    prepare_forward(x);
    normalize(x, m_y, Zero{}, m_scale, m_shift, prepare, epilogue);
    return m_y;
  }

  /// y = skip + bn(x) in the normalising pass.
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    prepare_forward(x);
    normalize(x, y, skip, m_scale, m_shift, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  const Input& backward(const Output& dL_dy) {
    backward_into(dL_dy, m_dL_dx, Zero{}, detail::NoPrepare{}, detail::NoEpilogue{});
    return m_dL_dx;
  }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx.
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    backward_into(dL_dy, m_dL_dx, Zero{}, prepare, epilogue);
    return m_dL_dx;
  }

  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    backward_into(dL_dy, dL_dx, skip_grad, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    infer_then(x, ws, detail::NoPrepare{}, detail::NoEpilogue{});
    return ws.y;
  }

  template <class Prepare, class Epilogue>
  const Output& infer_then(const Input& x, Workspace& ws, const Prepare& prepare, const Epilogue& epilogue) const {
    coefficients(x, ws.scale, ws.shift, ws.parts, nullptr);
    normalize(x, ws.y, Zero{}, ws.scale, ws.shift, prepare, epilogue);
    return ws.y;
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    coefficients(x, ws.scale, ws.shift, ws.parts, nullptr);
    normalize(x, y, skip, ws.scale, ws.shift, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  void zero_grad() {
    m_dL_dweight.setZero();
    m_dL_dbias.setZero();
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    f(prefix.child("weight").view(), m_weight, m_dL_dweight);
    f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    f(prefix.child("weight").view(), m_weight, m_dL_dweight);
    f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }

  /// `f(name, value)` on `running_mean`, `running_var` (vectors) and `num_batches_tracked` (std::int64_t).
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) {
    f(prefix.child("running_mean").view(), m_running_mean);
    f(prefix.child("running_var").view(), m_running_var);
    f(prefix.child("num_batches_tracked").view(), m_num_batches_tracked);
  }
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) const {
    f(prefix.child("running_mean").view(), m_running_mean);
    f(prefix.child("running_var").view(), m_running_var);
    f(prefix.child("num_batches_tracked").view(), m_num_batches_tracked);
  }

 private:
  struct Zero {};

  /// Columns per partition of the statistics (fixed by the channel count, not by the threads):
  /// about 256 KB of float data, so the two passes over a partition hit the cache.
  [[nodiscard]] Index partition(Index rows) const noexcept { return std::max<Index>(16, (Index(1) << 16) / std::max<Index>(rows, 1)); }

  /// Calls f(part, c0, cols) for every partition of `columns` columns, in parallel.
  template <class F>
  void for_each_partition(Index rows, Index columns, const F& f) const {
    const Index step = partition(rows), parts = (columns + step - 1) / step;
    detail::parallel_for(parts, double(step) * double(rows) * 2.0, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) f(p, p * step, std::min(step, columns - p * step));
    });
  }

  void check_batch(const Input& x) const {
    detail::check_input_features(name, in_features(), x);
    if (x.cols() < 2 && use_batch_stats())
      throw std::invalid_argument("BatchNorm2d: training needs more than one value per channel, got input " +
                                  detail::shape_string(x.rows(), x.cols()));
  }
  [[nodiscard]] bool use_batch_stats() const noexcept { return m_training; }

  /// Per-channel scale and shift of y = scale·x + shift for the current mode. With batch
  /// statistics, `batch` (if given) receives the mean (col 0) and biased variance (col 1).
  /// Per-channel work runs in scalar loops: no temporaries, no allocation once sized.
  void coefficients(const Input& x, Vector& scale, Vector& shift, Eigen::MatrixXd& parts, Eigen::MatrixXd* batch) const {
    check_batch(x);
    const Index rows = x.rows(), cols = x.cols();
    scale.resize(rows);
    shift.resize(rows);
    if (batch) batch->resize(rows, 2);
    auto set = [&](Index r, double mean, double var) {
      const double s = double(m_weight(r)) / std::sqrt(var + m_opt.eps);
      scale(r) = S(s);
      shift(r) = S(double(m_bias(r)) - mean * s);
      if (batch) {
        (*batch)(r, 0) = mean;
        (*batch)(r, 1) = var;
      }
    };
    if (!use_batch_stats()) {
      for (Index r = 0; r < rows; ++r) set(r, double(m_running_mean(r)), double(m_running_var(r)));
      return;
    }
    // Per partition: the mean, then the sum of squared deviations from it (the partition is in cache) ...
    const Index step = partition(rows), nparts = (cols + step - 1) / step;
    parts.resize(rows, 2 * nparts);
    for_each_partition(rows, cols, [&](Index p, Index c0, Index n) {
      double* mean = parts.col(2 * p).data();
      double* m2 = parts.col(2 * p + 1).data();
      for (Index r = 0; r < rows; ++r) mean[r] = m2[r] = 0;
      for (Index j = c0; j < c0 + n; ++j) {  // column by column: vectorised over channels
        const S* xj = x.data() + j * rows;
        for (Index r = 0; r < rows; ++r) mean[r] += double(xj[r]);
      }
      for (Index r = 0; r < rows; ++r) mean[r] /= double(n);
      for (Index j = c0; j < c0 + n; ++j) {
        const S* xj = x.data() + j * rows;
        for (Index r = 0; r < rows; ++r) {
          const double d = double(xj[r]) - mean[r];
          m2[r] += d * d;
        }
      }
    });
    // ... merged in partition order (Chan et al.), in double.
    for (Index r = 0; r < rows; ++r) {
      double mean = parts(r, 0), m2 = parts(r, 1), count = double(std::min(step, cols));
      for (Index p = 1; p < nparts; ++p) {
        const double nb = double(std::min(step, cols - p * step)), total = count + nb;
        const double delta = parts(r, 2 * p) - mean;
        mean += delta * (nb / total);
        m2 += parts(r, 2 * p + 1) + delta * delta * (count * nb / total);
        count = total;
      }
      set(r, mean, m2 / double(cols));
    }
  }

  void prepare_forward(const Input& x) {
    coefficients(x, m_scale, m_shift, m_parts, &m_batch);
    m_x = &x;
    m_trained_with_batch_stats = use_batch_stats();
    m_count = double(x.cols());
    if (m_reducer && m_trained_with_batch_stats) synchronize_forward(x.rows());
    const double n = m_count, mom = m_opt.momentum;
    for (Index r = 0; r < x.rows(); ++r) {
      const double mean = m_trained_with_batch_stats ? m_batch(r, 0) : double(m_running_mean(r));
      const double var = m_trained_with_batch_stats ? m_batch(r, 1) : double(m_running_var(r));
      m_mean(r) = S(mean);
      m_inv_std(r) = S(1.0 / std::sqrt(var + m_opt.eps));
      if (m_trained_with_batch_stats) {  // PyTorch updates the running variance with the unbiased one
        m_running_mean(r) = S((1 - mom) * double(m_running_mean(r)) + mom * mean);
        m_running_var(r) = S((1 - mom) * double(m_running_var(r)) + mom * var * (n / (n - 1)));
      }
    }
    if (m_trained_with_batch_stats) ++m_num_batches_tracked;
  }

  /// y = scale·x + shift (+ skip), by column blocks that stay in cache, each followed by `epilogue`.
  template <class Skip, class Prepare, class Epilogue>
  void normalize(const Input& x, Output& y, const Skip& skip, const Vector& scale, const Vector& shift,
                 const Prepare& prepare, const Epilogue& epilogue) const {
    y.resize(x.rows(), x.cols());
    prepare(std::as_const(y));
    const Index rows = x.rows(), block = std::max<Index>(8, (Index(1) << 13) / std::max<Index>(rows, 1));
    detail::parallel_for(x.cols(), double(rows) * 2.0, [&](Index c0, Index c1) {
      for (Index b = c0; b < c1; b += block) {
        const Index n = std::min(block, c1 - b);
        auto out = y.middleCols(b, n);
        if constexpr (std::is_same_v<Skip, Zero>)
          out = (x.middleCols(b, n).array().colwise() * scale.array()).colwise() + shift.array();
        else
          out = ((x.middleCols(b, n).array().colwise() * scale.array()).colwise() + shift.array()).matrix() +
                skip.middleCols(b, n);
        epilogue(std::as_const(y), 0, rows, b, n);
      }
    });
  }

  template <class SkipGrad, class Prepare, class Epilogue>
  void backward_into(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Prepare& prepare,
                     const Epilogue& epilogue) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, x.rows(), x.cols(), dL_dy);
    const Index rows = x.rows(), cols = x.cols();
    // Σ dy and Σ dy·x̂ per channel, x̂ = (x - mean)·inv_std, over fixed partitions merged in order.
    const Index step = partition(rows), nparts = (cols + step - 1) / step;
    m_parts.resize(rows, 2 * nparts);
    for_each_partition(rows, cols, [&](Index p, Index c0, Index n) {
      double* sum_dy = m_parts.col(2 * p).data();
      double* sum_dy_xc = m_parts.col(2 * p + 1).data();  // Σ dy·(x - mean); times inv_std below
      for (Index r = 0; r < rows; ++r) sum_dy[r] = sum_dy_xc[r] = 0;
      const S* mean = m_mean.data();
      for (Index j = c0; j < c0 + n; ++j) {
        const S* dyj = dL_dy.data() + j * rows;
        const S* xj = x.data() + j * rows;
        for (Index r = 0; r < rows; ++r) {
          sum_dy[r] += double(dyj[r]);
          sum_dy_xc[r] += double(dyj[r]) * double(xj[r] - mean[r]);
        }
      }
    });
    if (m_reducer && m_trained_with_batch_stats) m_sync.resize(std::size_t(2 * rows + 1));  // SyncBatchNorm
    // dL/dx = scale·dy + b·x + c per channel. With batch statistics the mean and variance depend on x:
    // dx = scale·(dy - mean(dy) - x̂·mean(dy·x̂)); with running statistics dx = scale·dy.
    for (Index r = 0; r < rows; ++r) {
      double sum_dy = 0, sum_dy_xhat = 0;
      for (Index p = 0; p < nparts; ++p) {
        sum_dy += m_parts(r, 2 * p);
        sum_dy_xhat += m_parts(r, 2 * p + 1);
      }
      sum_dy_xhat *= double(m_inv_std(r));
      m_dL_dbias(r) += S(sum_dy);
      m_dL_dweight(r) += S(sum_dy_xhat);
      if (m_reducer && m_trained_with_batch_stats) {  // for synchronize_backward; the parameter gradients stay local
        m_sync[std::size_t(r)] = sum_dy;
        m_sync[std::size_t(rows + r)] = sum_dy_xhat;
      }
      const double scale = double(m_scale(r));
      m_b(r) = S(0);
      m_c(r) = S(0);
      if (m_trained_with_batch_stats) {
        const double inv_std = double(m_inv_std(r)), k3 = sum_dy_xhat / double(cols), k2 = sum_dy / double(cols);
        m_b(r) = S(-scale * inv_std * k3);
        m_c(r) = S(scale * (double(m_mean(r)) * inv_std * k3 - k2));
      }
    }
    if (m_reducer && m_trained_with_batch_stats) synchronize_backward(rows);
    dL_dx.resize(rows, cols);
    prepare(std::as_const(dL_dx));
    const Index block = std::max<Index>(8, (Index(1) << 13) / std::max<Index>(rows, 1));
    detail::parallel_for(cols, double(rows) * 3.0, [&](Index c0, Index c1) {
      for (Index j = c0; j < c1; j += block) {
        const Index n = std::min(block, c1 - j);
        auto out = dL_dx.middleCols(j, n);
        const auto core = ((dL_dy.middleCols(j, n).array().colwise() * m_scale.array()) +
                           (x.middleCols(j, n).array().colwise() * m_b.array()))
                              .colwise() +
                          m_c.array();
        if constexpr (std::is_same_v<SkipGrad, Zero>)
          out = core.matrix();
        else
          out = core.matrix() + skip_grad.middleCols(j, n);
        epilogue(std::as_const(dL_dx), 0, rows, j, n);
      }
    });
  }

  // --- SyncBatchNorm: the replicas' statistics summed through m_reducer ---------------------------
  /// Replaces the local batch mean and variance (m_batch) by those of all replicas' batches together,
  /// and scale/shift with them: Σx and the count first, then Σ(x - joint mean)² from each replica's
  /// own mean and M2 (Chan's formula), all in double.
  void synchronize_forward(Index rows) {
    m_sync.resize(std::size_t(2 * rows + 1));
    for (Index r = 0; r < rows; ++r) m_sync[std::size_t(r)] = m_batch(r, 0) * m_count;
    m_sync[std::size_t(rows)] = m_count;
    m_reducer(std::span<double>(m_sync.data(), std::size_t(rows + 1)));
    const double total = m_sync[std::size_t(rows)];
    for (Index r = 0; r < rows; ++r) {
      const double mean = m_sync[std::size_t(r)] / total, delta = m_batch(r, 0) - mean;
      m_batch(r, 0) = mean;
      m_sync[std::size_t(r)] = m_batch(r, 1) * m_count + m_count * delta * delta;  // this replica's M2 about it
    }
    m_reducer(std::span<double>(m_sync.data(), std::size_t(rows)));
    for (Index r = 0; r < rows; ++r) {
      const double var = m_sync[std::size_t(r)] / total, s = double(m_weight(r)) / std::sqrt(var + m_opt.eps);
      m_batch(r, 1) = var;
      m_scale(r) = S(s);
      m_shift(r) = S(double(m_bias(r)) - m_batch(r, 0) * s);
    }
    m_count = total;
  }
  /// dL/dx's coefficients from Σdy and Σdy·x̂ over all replicas (left in m_sync by backward_into).
  void synchronize_backward(Index rows) {
    m_reducer(std::span<double>(m_sync.data(), std::size_t(2 * rows)));
    for (Index r = 0; r < rows; ++r) {
      const double scale = double(m_scale(r)), inv_std = double(m_inv_std(r));
      const double k3 = m_sync[std::size_t(rows + r)] / m_count, k2 = m_sync[std::size_t(r)] / m_count;
      m_b(r) = S(-scale * inv_std * k3);
      m_c(r) = S(scale * (double(m_mean(r)) * inv_std * k3 - k2));
    }
  }
  StatisticsReducer m_reducer;
  std::vector<double> m_sync;  ///< reduction buffer: sized on the first step, then reused
  double m_count = 0;          ///< values per channel in the last forward (of all replicas when synchronised)

  BatchNormOptions m_opt;
  bool m_training = true;
  bool m_trained_with_batch_stats = true;
  Vector m_weight, m_bias, m_dL_dweight, m_dL_dbias;
  Vector m_running_mean, m_running_var;
  std::int64_t m_num_batches_tracked = 0;
  Vector m_scale, m_shift, m_mean, m_inv_std, m_b, m_c;  ///< per-step coefficients (dL/dx = scale·dy + b·x + c)
  Eigen::MatrixXd m_parts, m_batch;
  detail::CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
