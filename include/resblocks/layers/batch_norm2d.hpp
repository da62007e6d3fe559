#pragma once
/// \file
/// \brief BatchNorm2d: per-channel batch normalisation with running statistics.

#include "resblocks/core/batch_statistics.hpp"
#include "resblocks/core/block_fn.hpp"
#include "resblocks/core/channel_affine.hpp"
#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/fused_layer.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/norm_gradient.hpp"
#include "resblocks/core/norm_input.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
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
/// Statistics, and backward's sums, are summed over fixed column partitions (one per sample when the
/// image size is known) in parallel and merged in order (Chan's formula, in double;
/// core/batch_statistics.hpp, shared with DenseLayer), so the bits do not depend on the thread count.
/// In a network, the layer before it may sum the statistics in its forward pass (takes_sample_moments),
/// and a layer after the activation after it the backward sums in its backward pass
/// (takes_sample_gradient_sums): the same partitions, the same bits.
///
/// A network's training forward() that throws after this layer ran leaves its running statistics
/// updated: train/buffer_checkpoint.hpp (BufferCheckpoint) says what changes and how to undo it.
template <class S = float, int C = Dynamic>
class BatchNorm2d : public FusedLayer<BatchNorm2d<S, C>, S, C, C>,
                    public detail::VisitsParameters<BatchNorm2d<S, C>>,
                    public detail::VisitsBuffers<BatchNorm2d<S, C>> {
  using Base = FusedLayer<BatchNorm2d<S, C>, S, C, C>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  using Vector = detail::ParamVector<S, C>;
  static constexpr std::string_view name = "BatchNorm2d";

  /// \brief Inference buffers of one caller.
  struct Workspace : detail::FusedWorkspace<S, C> {
    Vector scale, shift, mean, inv_std;
    Eigen::VectorXd parts;
    Eigen::MatrixXd stats;
  };

  /// \brief Static channel count: `BatchNorm2d<float, 64> bn;`.
  /// \param options eps and momentum
  /// \throws std::invalid_argument unless eps > 0 and momentum is in [0, 1]
  explicit BatchNorm2d(BatchNormOptions options = {}) requires(C != Dynamic) : BatchNorm2d(C, options) {}

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
  }

  [[nodiscard]] Index in_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] Index out_features() const noexcept { return m_weight.size(); }
  [[nodiscard]] const BatchNormOptions& options() const noexcept { return m_opt; }

  /// Optional: the spatial size of the images it normalises (Sequential passes it on). The batch
  /// statistics and backward's sums are then summed one sample per partition
  /// (detail::sample_statistics_partition): the partitions a Conv2d before it sums while each sample's
  /// output is in cache (takes_sample_moments), and a Conv2d after the activation after it while each
  /// sample's dL/dx is (takes_sample_gradient_sums). Without it, partitions of a fixed size; the
  /// results differ in their last bits.
  /// \param in height and width of the input images
  /// \returns `in`: the size is unchanged
  ImageSize set_image_size(ImageSize in) noexcept {
    m_area = in.empty() ? 0 : in.area();
    return in;
  }
  /// Whether the next training forward can take its statistics from the layer before it, summed
  /// sample by sample as that layer finishes each (in training mode, when its partitions are those
  /// samples). Sequential asks, then calls begin_sample_moments, sample_moments on each sample, and
  /// end_sample_moments.
  /// \param blocks the layer before's samples (its forward_sample_blocks)
  /// \returns true when the sample moments would be used
  [[nodiscard]] bool takes_sample_moments(detail::SampleBlocks blocks) const noexcept {
    return m_training && blocks && statistics_step(blocks.columns * blocks.samples) == blocks.columns;
  }
  /// Sizes the partitions' storage for those samples (takes_sample_moments must have said yes).
  /// \param blocks the layer before's samples
  void begin_sample_moments(detail::SampleBlocks blocks) {
    detail::grown_view(m_parts, in_features(), 2 * blocks.samples);
    m_moments = {};
  }
  /// The mean and squared deviations of one sample, columns [c0, c0 + n) of y, into its partition;
  /// callable from several threads at once for different samples.
  /// \param y the coming input (the layer before's output)
  /// \param c0 first column of the sample
  /// \param n columns of the sample
  /// \throws std::logic_error unless [c0, c0 + n) is one whole partition
  void sample_moments(const Input& y, Index c0, Index n) {
    const Index step = statistics_step(y.cols()), rows = y.rows();
    if (n != step || c0 % step != 0 || rows != in_features() || m_parts.size() < rows * 2 * (y.cols() / step))
      throw std::logic_error("BatchNorm2d: sample_moments of columns " + std::to_string(c0) + "+" + std::to_string(n) +
                             " of " + detail::shape_string(rows, y.cols()) + " is not one sample's partition");
    double* part = m_parts.data() + 2 * (c0 / step) * rows;
    detail::partial_moments(y.middleCols(c0, n), part, part + rows);
  }
  /// Marks every sample of y done: the next forward of y takes its statistics from them.
  /// \param y the coming input, whose samples all passed through sample_moments
  void end_sample_moments(const Input& y) noexcept { m_moments = {y.data(), y.cols()}; }

  /// Whether the next backward can take its sums (Σ dy and Σ dy·(x − mean) per channel) from the layer
  /// after the activation after it, summed sample by sample as that layer's backward finishes each
  /// sample of dL/dy (when the partitions are those samples). Sequential asks, then calls
  /// begin_sample_gradient_sums, sample_gradient_sums on each sample, and end_sample_gradient_sums.
  /// \param blocks the samples of dL/dy the later layer's backward hands over (its backward_sample_blocks)
  /// \returns true when the sample sums would be used
  [[nodiscard]] bool takes_sample_gradient_sums(detail::SampleBlocks blocks) const noexcept {
    return blocks && statistics_step(blocks.columns * blocks.samples) == blocks.columns;
  }
  /// Sizes the partitions' storage for those samples (takes_sample_gradient_sums must have said yes).
  /// \param blocks the samples of dL/dy
  void begin_sample_gradient_sums(detail::SampleBlocks blocks) {
    detail::grown_view(m_parts, in_features(), 2 * blocks.samples);
    m_gradient_sums = {};
  }
  /// The sums of whole samples, columns [c0, c0 + n) of dL/dy with the cached input's, into their
  /// partitions; callable from several threads at once for different samples.
  /// \param dL_dy the coming backward's gradient (the activation's dL/dx after it)
  /// \param c0 first column of the first sample
  /// \param n columns of the samples
  /// \throws std::logic_error before any forward, or unless [c0, c0 + n) is whole partitions of the
  /// last forward's input
  void sample_gradient_sums(const Output& dL_dy, Index c0, Index n) {
    const Input& x = this->cached_input();
    const Index step = statistics_step(dL_dy.cols()), rows = dL_dy.rows();
    if (n <= 0 || n % step != 0 || c0 % step != 0 || rows != in_features() || x.cols() != dL_dy.cols() ||
        c0 + n > dL_dy.cols() || m_parts.size() < rows * 2 * (dL_dy.cols() / step))
      throw std::logic_error("BatchNorm2d: sample_gradient_sums of columns " + std::to_string(c0) + "+" +
                             std::to_string(n) + " of " + detail::shape_string(rows, dL_dy.cols()) +
                             " is not whole partitions");
    const Index parts = dL_dy.cols() / step;
    for (Index p = c0 / step; p < (c0 + n) / step; ++p) {
      double* part = m_parts.data() + 2 * p * rows;
      // The next sample's input is fetched as this one's is read (the caller's next block, usually).
      const S* x_next = p + 1 < parts ? x.data() + (p + 1) * step * rows : nullptr;
      detail::gradient_sums(dL_dy.data() + p * step * rows, rows, x.data() + p * step * rows, rows, m_mean.data(), rows,
                            step, part, part + rows, x_next);
    }
  }
  /// Marks every sample of dL_dy done: the next backward of dL_dy takes its sums from them.
  /// \param dL_dy the coming gradient, whose samples all passed through sample_gradient_sums
  void end_sample_gradient_sums(const Output& dL_dy) noexcept { m_gradient_sums = {dL_dy.data(), dL_dy.cols()}; }
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

  /// Sums a span of doubles element-wise over all replicas, in place (an MPI_Allreduce; see
  /// resblocks/distributed/sync_batch_norm.hpp). Every replica must call it equally often.
  using StatisticsReducer = std::function<void(std::span<double>)>;
  /// With a reducer, training-mode forward() normalises with the statistics of the batch of all
  /// replicas together (as PyTorch's SyncBatchNorm), and backward() reduces Σdy and Σdy·x̂ so dL/dx
  /// is that of the joint batch; the parameter gradients stay per replica (DataParallel averages
  /// them). An empty reducer (the default) gives plain per-replica statistics.
  /// \param reducer sums its span over the replicas in place, or empty
  void set_statistics_reducer(StatisticsReducer reducer) { m_reducer = std::move(reducer); }
  [[nodiscard]] bool synchronized() const noexcept { return static_cast<bool>(m_reducer); }

  void zero_grad() {
    m_dL_dweight.setZero();
    m_dL_dbias.setZero();
  }

  /// forward(x) without y written out, for a ReLU and a convolution after this layer: checks x, computes
  /// the statistics and coefficients (and updates the running statistics) as forward does, caches x,
  /// and returns relu(y) as the coefficients over x, which the convolution applies while it reads them
  /// (Sequential does this when that convolution takes them: Conv2d::takes_norm_input()). Valid until
  /// this layer's next forward, and while x lives; this layer's own output is not written.
  /// \param x input batch, kept by reference until backward
  /// \returns relu(forward(x)), as coefficients over x
  /// \throws std::invalid_argument when x does not fit the layer
  detail::NormInput<S> forward_deferred(const Input& x) {
    this->forward_deferred_begin(x);
    return {x.data(), m_scale.data(), m_shift.data(), x.rows()};
  }

  /// infer(x, ws) without y written out, for a ReLU and a convolution after this layer (see
  /// forward_deferred): the coefficients into ws, and relu(y) returned as coefficients over x. Valid
  /// while ws and x live, until ws's next use.
  /// \param x input batch
  /// \param ws the caller's buffers
  /// \returns relu(infer(x, ws)), as coefficients over x
  /// \throws std::invalid_argument when x does not fit the layer
  detail::NormInput<S> infer_deferred(const Input& x, Workspace& ws) const {
    infer_begin(x, ws);
    return {x.data(), ws.scale.data(), ws.shift.data(), x.rows()};
  }

  /// backward(dL_dy) without dL/dx written out: checks dL_dy, adds dL/dγ and dL/dβ, and returns dL/dx
  /// as its coefficients, which the layer before applies while it reads them (Sequential does this when
  /// that layer takes them: Conv2d::takes_norm_gradient()). Valid until this layer's next forward or
  /// backward, and while dL_dy lives.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \returns dL/dx, as coefficients over dL_dy and the cached input
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  detail::NormGradient<S> backward_deferred(const Output& dL_dy) {
    backward_begin(dL_dy);
    return gradient_coefficients(dL_dy);
  }

 private:
  friend detail::VisitsParameters<BatchNorm2d<S, C>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("weight").view(), self.m_weight, self.m_dL_dweight);
    f(prefix.child("bias").view(), self.m_bias, self.m_dL_dbias);
  }

 public:
  /// `f(name, value)` on `running_mean`, `running_var` (vectors) and `num_batches_tracked` (std::int64_t).
 private:
  friend detail::VisitsBuffers<BatchNorm2d<S, C>>;
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("running_mean").view(), self.m_running_mean);
    f(prefix.child("running_var").view(), self.m_running_var);
    f(prefix.child("num_batches_tracked").view(), self.m_num_batches_tracked);
  }

  void check_batch(const Input& x) const {
    detail::check_input_features(name, in_features(), x);
    if (x.cols() < 2 && m_training)
      throw std::invalid_argument("BatchNorm2d: training needs more than one value per channel, got input " +
                                  detail::shape_string(x.rows(), x.cols()));
  }

  // The kernels FusedLayer runs (see there).
  Index forward_begin(const Input& x);
  void forward_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) const {
    normalize(x, y, skip, m_scale, m_shift, epilogue);
  }
  Index infer_begin(const Input& x, Workspace& ws) const {
    check_batch(x);
    if (m_training) {
      ws.stats.resize(x.rows(), 2);
      detail::row_statistics(x, ws.parts, ws.stats, 0, statistics_step(x.cols()));
    }
    detail::norm_coefficients(m_training, ws.stats, m_weight, m_bias, m_running_mean, m_running_var, m_opt.eps,
                              ws.scale, ws.shift, ws.mean, ws.inv_std);
    return x.cols();
  }
  void infer_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue, Workspace& ws) const {
    normalize(x, y, skip, ws.scale, ws.shift, epilogue);
  }
  Index backward_begin(const Output& dL_dy) const {
    const Input& x = this->cached_input();
    detail::check_output_gradient(name, x.rows(), x.cols(), dL_dy);
    return x.cols();
  }
  void backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue);
  detail::NormGradient<S> gradient_coefficients(const Output& dL_dy);

  void normalize(const Input& x, Output& y, const Output* skip, const Vector& scale, const Vector& shift,
                 detail::BlockFn epilogue) const;

  /// Columns per statistics partition of an input of `cols` columns.
  [[nodiscard]] Index statistics_step(Index cols) const noexcept {
    return detail::sample_statistics_partition(in_features(), cols, m_area);
  }

  // SyncBatchNorm: the replicas' statistics summed through m_reducer.
  void synchronize_forward(Index rows);
  template <class Sums>
  void synchronize_backward(const Sums& sums, Index rows);

  BatchNormOptions m_opt;
  bool m_training = true;
  bool m_trained_with_batch_stats = true;
  Vector m_weight, m_bias, m_dL_dweight, m_dL_dbias;
  Vector m_running_mean, m_running_var;
  std::int64_t m_num_batches_tracked = 0;
  Vector m_scale, m_shift, m_mean, m_inv_std, m_b, m_c;  ///< per-step coefficients (dL/dx = scale·dy + b·x + c)
  Eigen::VectorXd m_parts;
  Eigen::MatrixXd m_stats;
  Index m_area = 0;  ///< positions per image (set_image_size), 0: unknown
  /// The matrix whose per-sample sums are in m_parts: end_sample_moments' input (its next forward uses
  /// them), or end_sample_gradient_sums' gradient (its next backward does).
  struct SampleSums {
    const S* data = nullptr;
    Index cols = 0;
    [[nodiscard]] bool of(const Input& x) const noexcept { return data == x.data() && cols == x.cols(); }
  };
  SampleSums m_moments, m_gradient_sums;
  StatisticsReducer m_reducer;
  std::vector<double> m_sync;  ///< reduction buffer: sized on the first step, then reused
  double m_count = 0;          ///< values per channel in the last forward (of all replicas when synchronised)
};

/// The pass's coefficients from the batch (training) or the running statistics; in training, the
/// running statistics move towards the batch's.
template <class S, int C>
Index BatchNorm2d<S, C>::forward_begin(const Input& x) {
  check_batch(x);
  m_trained_with_batch_stats = m_training;
  m_count = double(x.cols());
  m_gradient_sums = {};  // summed against the input before this one
  if (m_training) {
    m_stats.resize(x.rows(), 2);
    const Index step = statistics_step(x.cols());
    if (m_moments.of(x))  // summed by the layer before, on the same partitions
      detail::merge_moments(detail::grown_view(m_parts, x.rows(), 2 * (x.cols() / step)), x.cols(), step, m_stats, 0);
    else
      detail::row_statistics(x, m_parts, m_stats, 0, step);
    m_moments = {};
    if (m_reducer) synchronize_forward(x.rows());
  }
  detail::norm_coefficients(m_training, m_stats, m_weight, m_bias, m_running_mean, m_running_var, m_opt.eps, m_scale,
                            m_shift, m_mean, m_inv_std);
  if (m_training)
    detail::update_running_statistics(m_stats, Index(m_count), m_opt.momentum, m_running_mean, m_running_var,
                                      m_num_batches_tracked);
  return x.cols();
}

/// y = scale·x + shift (+ skip), by column blocks that stay in cache, each followed by `epilogue`.
template <class S, int C>
void BatchNorm2d<S, C>::normalize(const Input& x, Output& y, const Output* skip, const Vector& scale,
                                  const Vector& shift, detail::BlockFn epilogue) const {
  const Index rows = x.rows(), block = std::max<Index>(8, (Index(1) << 13) / std::max<Index>(rows, 1));
  detail::parallel_for(x.cols(), double(rows) * 2.0, [&](Index c0, Index c1) {
    for (Index b = c0; b < c1; b += block) {
      const Index n = std::min(block, c1 - b);
      detail::channel_affine(x.data() + b * rows, scale.data(), shift.data(), skip ? skip->data() + b * rows : nullptr,
                             y.data() + b * rows, rows, n);
      epilogue(0, rows, b, n);
    }
  });
}

/// Σ dy and Σ dy·(x − mean) per channel over the statistics' partitions (one per sample when the image
/// size is known), merged in order by detail::finish_norm_backward: dL/dγ, dL/dβ and the coefficients
/// of dL/dx = scale·dy + b·x + c. The partitions' sums come from the layer after the activation after
/// this one when it summed them on the same partitions (end_sample_gradient_sums): the same bits.
template <class S, int C>
detail::NormGradient<S> BatchNorm2d<S, C>::gradient_coefficients(const Output& dL_dy) {
  const Input& x = this->cached_input();
  const Index rows = x.rows(), cols = x.cols();
  const Index step = statistics_step(cols), nparts = (cols + step - 1) / step;
  auto sums = detail::grown_view(m_parts, rows, 2 * nparts);
  if (!m_gradient_sums.of(dL_dy)) {
    detail::for_each_partition(rows, cols, step, [&](Index p, Index c0, Index n) {
      detail::gradient_sums(dL_dy.data() + c0 * rows, rows, x.data() + c0 * rows, rows, m_mean.data(), rows, n,
                            sums.col(2 * p).data(), sums.col(2 * p + 1).data());
    });
  }
  m_gradient_sums = {};
  detail::finish_norm_backward(sums, cols, m_trained_with_batch_stats, m_scale, m_mean, m_inv_std, m_b, m_c,
                               m_dL_dweight, m_dL_dbias);
  if (m_reducer && m_trained_with_batch_stats) synchronize_backward(sums, rows);
  return {dL_dy.data(), x.data(), m_scale.data(), m_b.data(), m_c.data(), rows};
}

/// The coefficients, then dL/dx = scale·dy + b·x + c (+ skip_grad) by column blocks.
template <class S, int C>
void BatchNorm2d<S, C>::backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                        detail::BlockFn epilogue) {
  const detail::NormGradient<S> grad = gradient_coefficients(dL_dy);
  const Index rows = grad.rows, block = std::max<Index>(8, (Index(1) << 13) / std::max<Index>(rows, 1));
  detail::parallel_for(dL_dx.cols(), double(rows) * 3.0, [&](Index c0, Index c1) {
    for (Index j = c0; j < c1; j += block) {
      const Index n = std::min(block, c1 - j);
      grad.columns(j, n, dL_dx.data() + j * rows, skip_grad ? skip_grad->data() + j * rows : nullptr);
      epilogue(0, rows, j, n);
    }
  });
}

// Compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
RESBLOCKS_EXTERN_KERNEL(class BatchNorm2d<float>)
RESBLOCKS_EXTERN_KERNEL(class BatchNorm2d<double>)

/// The batch statistics of all replicas from each one's mean and variance: Σ n·mean and Σ n first,
/// then each replica's sum of squared deviations about the joint mean (exact, in double).
template <class S, int C>
void BatchNorm2d<S, C>::synchronize_forward(Index rows) {
  m_sync.resize(std::size_t(2 * rows + 2));
  for (Index r = 0; r < rows; ++r) m_sync[std::size_t(r)] = m_stats(r, 0) * m_count;
  m_sync[std::size_t(rows)] = m_count;
  m_reducer(std::span<double>(m_sync.data(), std::size_t(rows + 1)));
  const double total = m_sync[std::size_t(rows)];
  for (Index r = 0; r < rows; ++r) {
    const double mean = m_sync[std::size_t(r)] / total, delta = m_stats(r, 0) - mean;
    m_stats(r, 0) = mean;
    m_sync[std::size_t(r)] = m_stats(r, 1) * m_count + m_count * delta * delta;  // this replica's M2 about it
  }
  m_reducer(std::span<double>(m_sync.data(), std::size_t(rows)));
  for (Index r = 0; r < rows; ++r) m_stats(r, 1) = m_sync[std::size_t(r)] / total;
  m_count = total;
}

/// dL/dx's coefficients from Σdy and Σdy·x̂ over all replicas (the parameter gradients stay local).
template <class S, int C>
template <class Sums>
void BatchNorm2d<S, C>::synchronize_backward(const Sums& sums, Index rows) {
  m_sync.resize(std::size_t(2 * rows + 2));
  const Index nparts = sums.cols() / 2;
  for (Index r = 0; r < rows; ++r) {
    double sum_dy = 0, sum_dy_xc = 0;
    for (Index p = 0; p < nparts; ++p) {
      sum_dy += sums(r, 2 * p);
      sum_dy_xc += sums(r, 2 * p + 1);
    }
    m_sync[std::size_t(r)] = sum_dy;
    m_sync[std::size_t(rows + r)] = sum_dy_xc * double(m_inv_std(r));
  }
  m_reducer(std::span<double>(m_sync.data(), std::size_t(2 * rows)));
  for (Index r = 0; r < rows; ++r) {
    const double scale = double(m_scale(r)), inv_std = double(m_inv_std(r));
    const double k3 = m_sync[std::size_t(rows + r)] / m_count, k2 = m_sync[std::size_t(r)] / m_count;
    m_b(r) = S(-scale * inv_std * k3);
    m_c(r) = S(scale * (double(m_mean(r)) * inv_std * k3 - k2));
  }
}

}  // namespace resblocks
