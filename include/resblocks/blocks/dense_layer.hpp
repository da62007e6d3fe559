#pragma once
/// \file
/// \brief DenseLayer: DenseNet-BC's composite layer, BN-ReLU-Conv1×1-BN-ReLU-Conv3×3.

#include "resblocks/core/batch_statistics.hpp"
#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/conv2d.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace resblocks {

/// \brief Settings of a DenseLayer (torchvision's `_DenseLayer` defaults).
struct DenseLayerOptions {
  Index bn_size = 4;        ///< conv1 gives bn_size·growth_rate channels (the bottleneck)
  BatchNormOptions norm{};  ///< eps and momentum of both BatchNorms
};

namespace detail {

/// \brief Buffers the layers of one DenseBlock share, used by one layer at a time (the shared
/// storage of Pleiss et al., "Memory-Efficient Implementation of DenseNets", 2017). Whatever a
/// layer's backward needs from them it recomputes when another layer wrote them since.
template <class S>
struct DenseScratch {
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  Batch<S> z2, dz2;                ///< relu(norm2(h)), conv2's input, and its gradient: 4k × P
  Batch<S> out, dout;              ///< conv2's output and its gradient: k × P
  std::vector<Vector> z1c;         ///< per thread: relu(norm1(x)) on one chunk of columns, c × step
  std::vector<Vector> dz1c;        ///< per thread: its gradient on that chunk, c × step
  std::vector<Vector> dhc;         ///< per thread: dL/dh on that chunk, 4k × step
  Vector dw_parts;                 ///< per chunk: its share of dL/d conv1.weight (4k × c each)
  Eigen::VectorXd parts;           ///< per chunk: partial sums and moments
  const void* z2_owner = nullptr;  ///< the layer whose values z2 holds
};

/// out = relu(scale·x + shift) per row (channel) on one block (any column strides). The forward
/// pass and the backward's recomputation both go through here: the same values, bit for bit.
template <class X, class V, class Out>
void normalize_relu_block(const X& x, const V& scale, const V& shift, Out&& out) {
  using S = typename V::Scalar;
  const Index rows = x.rows(), ldx = x.outerStride(), ldo = out.outerStride();
  const S* a = scale.data();
  const S* b = shift.data();
  for (Index j = 0; j < x.cols(); ++j) {
    const S* xj = x.data() + j * ldx;
    S* oj = out.data() + j * ldo;
    RESBLOCKS_SIMD
    for (Index r = 0; r < rows; ++r) {
      const S v = xj[r] * a[r] + b[r];
      oj[r] = v > S(0) ? v : S(0);
    }
  }
}

/// out = a·g + b·x + c per row, on blocks of equal shape (any column strides): a BatchNorm's
/// dL/dx = scale·g + b·x + c from the masked gradient g.
template <class G, class X, class V, class Out>
void affine_backward_block(const G& g, const X& x, const V& a, const V& b, const V& c, Out&& out) {
  using S = typename V::Scalar;
  const Index rows = x.rows(), ldg = g.outerStride(), ldx = x.outerStride(), ldo = out.outerStride();
  const S* pa = a.data();
  const S* pb = b.data();
  const S* pc = c.data();
  for (Index j = 0; j < x.cols(); ++j) {
    const S* gj = g.data() + j * ldg;
    const S* xj = x.data() + j * ldx;
    S* oj = out.data() + j * ldo;
    RESBLOCKS_SIMD
    for (Index r = 0; r < rows; ++r) oj[r] = gj[r] * pa[r] + xj[r] * pb[r] + pc[r];
  }
}

/// out = base + a·g per row (base may be out itself, or null for out = a·g), any column strides.
template <class S, class G, class Out>
void scaled_add_block(const S* base, Index ldb, const G& g, const S* a, Out&& out) {
  const Index rows = g.rows(), ldg = g.outerStride(), ldo = out.outerStride();
  for (Index j = 0; j < g.cols(); ++j) {
    const S* gj = g.data() + j * ldg;
    S* oj = out.data() + j * ldo;
    if (base) {
      const S* bj = base + j * ldb;
      RESBLOCKS_SIMD
      for (Index r = 0; r < rows; ++r) oj[r] = bj[r] + gj[r] * a[r];
    } else {
      RESBLOCKS_SIMD
      for (Index r = 0; r < rows; ++r) oj[r] = gj[r] * a[r];
    }
  }
}

/// out = base + b·x + c per row (rows r0 … of the vectors b, c), column ranges in parallel (base may be out).
template <class Base, class X, class V, class Out>
void add_pending(const Base& base, const X& x, const V& b, const V& c, Index r0, Out&& out) {
  using S = typename V::Scalar;
  const Index rows = x.rows(), ldb = base.outerStride(), ldx = x.outerStride(), ldo = out.outerStride();
  const S* pb = b.data() + r0;
  const S* pc = c.data() + r0;
  parallel_for(x.cols(), double(rows) * 3.0, [&](Index c0, Index c1) {
    for (Index j = c0; j < c1; ++j) {
      const S* bj = base.data() + j * ldb;
      const S* xj = x.data() + j * ldx;
      S* oj = out.data() + j * ldo;
      RESBLOCKS_SIMD
      for (Index r = 0; r < rows; ++r) oj[r] = bj[r] + xj[r] * pb[r] + pc[r];
    }
  });
}

/// normalize_relu_block on all of x, column ranges in parallel.
template <class X, class V, class Out>
void normalize_relu(const X& x, const V& scale, const V& shift, Out& out) {
  parallel_for(x.cols(), double(x.rows()) * 2.0, [&](Index c0, Index c1) {
    normalize_relu_block(x.middleCols(c0, c1 - c0), scale, shift, out.middleCols(c0, c1 - c0));
  });
}

/// dst = src (same shape, any strides), column ranges in parallel.
template <class Dst, class Src>
void copy_columns(Dst& dst, const Src& src) {
  parallel_for(dst.cols(), double(dst.rows()),
               [&](Index c0, Index c1) { dst.middleCols(c0, c1 - c0) = src.middleCols(c0, c1 - c0); });
}

/// The ReLU mask and the sums of a BatchNorm backward on one block: g (rows × cols, leading
/// dimension ldg) becomes g·[z > 0]; sum_g += Σ g and sum_g_xc += Σ g·(x - mean) per row, in
/// double. Four columns at a time: their terms are added in registers before the running sums.
template <class S>
void masked_sums(S* g, Index ldg, const S* z, Index ldz, const S* x, Index ldx, const S* mean, Index rows, Index cols,
                 double* sum_g, double* sum_g_xc) {
  Index j = 0;
  for (; j + 4 <= cols; j += 4) {
    S* g0 = g + j * ldg;
    S* g1 = g0 + ldg;
    S* g2 = g1 + ldg;
    S* g3 = g2 + ldg;
    const S* z0 = z + j * ldz;
    const S* x0 = x + j * ldx;
    RESBLOCKS_SIMD
    for (Index r = 0; r < rows; ++r) {
      // branch-free (vectorises): g where z > 0, else 0
      const S a0 = g0[r] * S(z0[r] > S(0)), a1 = g1[r] * S(z0[r + ldz] > S(0));
      const S a2 = g2[r] * S(z0[r + 2 * ldz] > S(0)), a3 = g3[r] * S(z0[r + 3 * ldz] > S(0));
      g0[r] = a0;
      g1[r] = a1;
      g2[r] = a2;
      g3[r] = a3;
      sum_g[r] += (double(a0) + double(a1)) + (double(a2) + double(a3));
      sum_g_xc[r] += (double(a0) * double(x0[r] - mean[r]) + double(a1) * double(x0[r + ldx] - mean[r])) +
                     (double(a2) * double(x0[r + 2 * ldx] - mean[r]) + double(a3) * double(x0[r + 3 * ldx] - mean[r]));
    }
  }
  for (; j < cols; ++j) {
    S* gj = g + j * ldg;
    const S* zj = z + j * ldz;
    const S* xj = x + j * ldx;
    RESBLOCKS_SIMD
    for (Index r = 0; r < rows; ++r) {
      const S gr = gj[r] * S(zj[r] > S(0));
      gj[r] = gr;
      sum_g[r] += double(gr);
      sum_g_xc[r] += double(gr) * double(xj[r] - mean[r]);
    }
  }
}

/// f(thread, part) for parts [0, nparts), each thread of `threads` taking a contiguous range.
template <class F>
void for_each_part_by_thread(Index nparts, Index threads, const F& f) {
  parallel_parts(threads, [&](Index t) {
    for (Index p = nparts * t / threads; p < nparts * (t + 1) / threads; ++p) f(t, p);
  });
}

}  // namespace detail

template <class S>
class DenseBlock;

/// \brief DenseNet-BC's composite layer (Huang et al. 2017), as torchvision's `_DenseLayer`:
/// `conv2(relu(norm2(conv1(relu(norm1(x))))))`, conv1 1×1 to bn_size·k channels, conv2 3×3
/// (padding 1) to k channels, both without bias. Input c × (N·H·W), output k × (N·H·W).
///
/// Names: `norm1.weight`, `norm1.bias`, `conv1.weight` (4k × c), `norm2.*`, `conv2.weight`
/// (k × 4k·9); buffers `norm{1,2}.running_mean`, `.running_var`, `.num_batches_tracked`. The
/// BatchNorms behave as BatchNorm2d (batch statistics and running updates in training, running
/// statistics in evaluation); the convolutions start as PyTorch's defaults, U(±1/√fan_in).
///
/// Memory: the layer keeps only conv1's output h (4k × P) for backward. relu(norm1(x)) is never
/// stored whole: it is made chunk by chunk of columns (about 256 KB) in cache and fed straight to
/// conv1, and backward recomputes it the same way, fusing norm2's and norm1's backward and conv1's
/// two products into that chunk loop. relu(norm2(h)) and conv2's output live in a DenseScratch that
/// a DenseBlock shares among its layers; backward recomputes the former from h when another layer
/// wrote it since. The private `*_view` functions are the DenseBlock's (a friend) entry points: they read x as a
/// strided block of the block's feature buffer and write the k output rows straight into it.
/// Sums over columns run on fixed partitions merged in order: 1 and 2 threads give the same bits.
/// (The ReLU backward multiplies by the mask, so a non-finite gradient at a zeroed input gives NaN
/// rather than 0.)
template <class S = float>
class DenseLayer {
 public:
  using Scalar = S;
  static constexpr int InFeatures = Dynamic;
  static constexpr int OutFeatures = Dynamic;
  using Input = Batch<S>;
  using Output = Batch<S>;
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  /// A block of rows of a larger column-major matrix (outer stride = that matrix's row count).
  using ConstView = Eigen::Map<const Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  using View = Eigen::Map<Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  using Scratch = detail::DenseScratch<S>;
  static constexpr std::string_view name = "DenseLayer";

  /// \brief One pass's per-channel coefficients: y = relu(scale·x + shift) for each BatchNorm,
  /// the statistics used, and the backward's dL/dx = scale·g + b·x + c.
  struct Coefficients {
    Vector scale1, shift1, mean1, inv_std1, b1, c1;
    Vector scale2, shift2, mean2, inv_std2, b2, c2;
    Eigen::MatrixXd stats2;  ///< norm2's batch mean and variance (4k × 2)
    bool batch_stats = true;
  };

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
    Coefficients coefficients;
    Batch<S> h;
    Scratch scratch;
    Eigen::MatrixXd stats;
    typename Conv2d<S>::Workspace conv;
  };

  /// \brief A layer on `in_channels` inputs giving `growth_rate` (k) channels.
  /// \param in_channels input channels
  /// \param growth_rate output channels k
  /// \param options bottleneck width and the BatchNorms' settings
  /// \throws std::invalid_argument unless in_channels, growth_rate and bn_size are >= 1, eps > 0 and momentum is in
  ///   [0, 1]
  DenseLayer(Index in_channels, Index growth_rate, const DenseLayerOptions& options = {})
      : m_in(in_channels),
        m_k(growth_rate),
        m_opt(options),
        m_conv2(checked_bottleneck(in_channels, growth_rate, options), growth_rate, 3, {.padding = 1, .bias = false}) {
    const Index b = bottleneck_channels();
    m_gamma1.setOnes(m_in);
    m_beta1.setZero(m_in);
    m_dgamma1.setZero(m_in);
    m_dbeta1.setZero(m_in);
    m_running_mean1.setZero(m_in);
    m_running_var1.setOnes(m_in);
    m_gamma2.setOnes(b);
    m_beta2.setZero(b);
    m_dgamma2.setZero(b);
    m_dbeta2.setZero(b);
    m_running_mean2.setZero(b);
    m_running_var2.setOnes(b);
    m_w1.setZero(b, m_in);
    m_dw1.setZero(b, m_in);
    // conv2's im2col chunks of 256 positions (432 × 256 floats at k = 12, per part) instead of
    // Conv2d's ~1 MB default: a third of its scratch per layer, and measured no slower.
    m_conv2.set_max_chunk_positions(256);
    reset_parameters(default_generator());
  }

  /// \brief PyTorch's defaults: convolution weights U(±1/√fan_in), BatchNorm γ = 1, β = 0 (running statistics
  /// untouched).
  /// \param g generator the convolution weights are drawn from
  void reset_parameters(Generator& g) {
    fill_uniform(m_w1, 1.0 / std::sqrt(double(m_in)), g);
    m_conv2.reset_parameters(g);
    m_gamma1.setOnes();
    m_beta1.setZero();
    m_gamma2.setOnes();
    m_beta2.setZero();
  }

  [[nodiscard]] Index in_features() const noexcept { return m_in; }
  [[nodiscard]] Index out_features() const noexcept { return m_k; }
  [[nodiscard]] Index growth_rate() const noexcept { return m_k; }
  /// \brief conv1's output channels, bn_size·k.
  /// \returns bn_size·k
  [[nodiscard]] Index bottleneck_channels() const noexcept { return m_opt.bn_size * m_k; }
  [[nodiscard]] const DenseLayerOptions& options() const noexcept { return m_opt; }

  /// \brief Sets the input's height and width; the output has the same.
  /// \param in the input's height and width
  /// \returns `in`
  /// \throws std::invalid_argument on an empty `in`
  ImageSize set_image_size(ImageSize in) {
    m_conv2.set_image_size(in);
    m_image = in;
    return in;
  }
  [[nodiscard]] ImageSize image_size() const noexcept { return m_image; }

  void set_training(bool training) noexcept { m_training = training; }
  [[nodiscard]] bool training() const noexcept { return m_training; }

  const Output& forward(const Input& x) {
    check_input(x);
    m_stats.resize(m_in, 2);
    if (m_training) detail::row_statistics(x, m_scratch.parts, m_stats, 0);
    m_y.resize(m_k, x.cols());
    forward_view(whole(x), m_stats, m_scratch, whole(m_y));
    m_x = &x;
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, m_k, x.cols(), dL_dy);
    m_dL_dx.resize(m_in, x.cols());
    m_pending_b.setZero(m_in);
    m_pending_c.setZero(m_in);
    backward_view(dL_dy, whole(x), m_scratch, whole(m_dL_dx), nullptr, m_pending_b, m_pending_c);
    detail::add_pending(m_dL_dx, x, m_pending_b, m_pending_c, 0, m_dL_dx);
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    check_input(x);
    ws.stats.resize(m_in, 2);
    if (m_training) detail::row_statistics(x, ws.scratch.parts, ws.stats, 0);
    ws.y.resize(m_k, x.cols());
    infer_view(whole(x), ws.stats, ws.coefficients, ws.h, ws.scratch, ws.conv, whole(ws.y));
    return ws.y;
  }

  /// \brief Scalars of activation storage the layer itself keeps (conv1's output h).
  /// \returns the size of h, 0 before the first forward
  [[nodiscard]] Index kept_activations() const noexcept { return m_h.size(); }

  void zero_grad() {
    m_dgamma1.setZero();
    m_dbeta1.setZero();
    m_dw1.setZero();
    m_dgamma2.setZero();
    m_dbeta2.setZero();
    m_conv2.zero_grad();
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    visit_parameters(*this, f, prefix);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    visit_parameters(*this, f, prefix);
  }

  /// \brief `f(name, value)` on the BatchNorm buffers (`norm1.running_mean`, …, `norm2.num_batches_tracked`).
  /// \param f visitor, called as `f(name, value)`
  /// \param prefix prepended to every name (the layer's own name in its parent)
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) {
    visit_buffers(*this, f, prefix);
  }
  template <class F>
  void for_each_buffer(F&& f, const ParameterName& prefix = {}) const {
    visit_buffers(*this, f, prefix);
  }

 private:
  template <class>
  friend class DenseBlock;

  /// \name DenseBlock's entry points
  /// x is c × P (a row block of the block's feature buffer), `x_stats` its channels' batch mean
  /// (column 0) and biased variance (column 1) in its first c rows (read in training mode only).
  /// @{

  /// Training forward: y (k × P, any stride) = layer(x); updates the running statistics in training mode.
  void forward_view(const ConstView& x, const Eigen::MatrixXd& x_stats, Scratch& scratch, View y) {
    const bool batch = m_training;
    if (batch) check_batch(x.cols());
    compute(x, x_stats, m_co, m_h, scratch, y,
            [&](const Batch<S>& z2, Batch<S>& out) { m_conv2.forward_add(z2, out, NoSkip{}); });
    if (batch) {
      update_running(x_stats, m_running_mean1, m_running_var1, m_num_batches1, x.cols());
      update_running(m_co.stats2, m_running_mean2, m_running_var2, m_num_batches2, x.cols());
    }
  }

  /// Backward of the last forward_view, whose input was x, for dL/dy (k × P): adds the parameter
  /// gradients and writes dL/dx in two parts. norm1's backward is dL/dx = scale1·g + b1·x + c1 with
  /// per-channel b1, c1 known only after a pass over all columns; so `dL_dx` (c × P, any stride)
  /// gets `base` + scale1·g (base: dL_dx itself to accumulate, another c × P block, or null), and
  /// b1, c1 are added to the first c entries of `pending_b`, `pending_c`: the caller completes
  /// dL/dx += pending_b·x + pending_c. A DenseBlock sums them over its layers (all see the same
  /// features) and applies them once per channel, when that channel's gradient is needed.
  void backward_view(const Batch<S>& dL_dy, const ConstView& x, Scratch& scratch, View dL_dx, const ConstView* base,
                     Vector& pending_b, Vector& pending_c) {
    const Index P = x.cols(), b = bottleneck_channels(), c = m_in;
    if (m_h.cols() != P || x.rows() != m_in)
      throw std::logic_error(
          "DenseLayer: backward() called before forward(), or with another input than the last forward's");
    detail::check_output_gradient(name, m_k, P, dL_dy);
    if (pending_b.size() < c || pending_c.size() < c || dL_dx.rows() != c || dL_dx.cols() != P ||
        (base && (base->rows() != c || base->cols() != P)))
      throw std::invalid_argument("DenseLayer: backward_view buffers do not match the " + detail::shape_string(c, P) +
                                  " input");
    // conv2: its input relu(norm2(h)) is recomputed if another layer used the shared buffer since.
    if (scratch.z2_owner != this) {
      scratch.z2.resize(b, P);
      detail::normalize_relu(m_h, m_co.scale2, m_co.shift2, scratch.z2);
      scratch.z2_owner = this;
    }
    scratch.dz2.resize(b, P);
    m_conv2.backward_add(dL_dy, scratch.dz2, NoSkip{});
    // norm2-relu: mask dL/dz2 in place, its sums give dγ2, dβ2 and dL/dh = scale2·g + b2·h + c2.
    {
      const Index step = detail::statistics_partition(b, P), nparts = (P + step - 1) / step;
      auto sums = detail::grown_view(scratch.parts, b, 2 * nparts);
      detail::for_each_statistics_partition(b, P, [&](Index p, Index c0, Index n) {
        double* sum_g = sums.col(2 * p).data();
        double* sum_g_xc = sums.col(2 * p + 1).data();
        for (Index r = 0; r < b; ++r) sum_g[r] = sum_g_xc[r] = 0;
        detail::masked_sums(scratch.dz2.data() + c0 * b, b, scratch.z2.data() + c0 * b, b, m_h.data() + c0 * b, b,
                            m_co.mean2.data(), b, n, sum_g, sum_g_xc);
      });
      finish_norm_backward(sums, P, m_co.scale2, m_co.mean2, m_co.inv_std2, m_co.b2, m_co.c2, m_dgamma2, m_dbeta2);
    }
    // Chunks of columns, in cache: dL/dh; relu(norm1(x)) recomputed; conv1's dL/dW (per chunk,
    // summed in chunk order below) and dL/dz1 = W1ᵀ dh; norm1-relu's mask and sums; dL/dx's
    // scale1·g part.
    const Index step = chunk_columns(P), nparts = (P + step - 1) / step, threads = chunk_threads(nparts);
    auto sums = detail::grown_view(scratch.parts, c, 2 * nparts);
    auto dw = detail::grown_view(scratch.dw_parts, b, c * nparts);
    reserve_chunks(scratch.z1c, threads, c * std::min(step, P));
    reserve_chunks(scratch.dz1c, threads, c * std::min(step, P));
    reserve_chunks(scratch.dhc, threads, b * std::min(step, P));
    detail::for_each_part_by_thread(nparts, threads, [&](Index t, Index p) {
      const Index c0 = p * step, n = std::min(step, P - c0);
      auto z1 = detail::grown_view(scratch.z1c[std::size_t(t)], c, n);
      detail::normalize_relu_block(x.middleCols(c0, n), m_co.scale1, m_co.shift1, z1);
      auto dh = detail::grown_view(scratch.dhc[std::size_t(t)], b, n);
      detail::affine_backward_block(scratch.dz2.middleCols(c0, n), m_h.middleCols(c0, n), m_co.scale2, m_co.b2, m_co.c2,
                                    dh);
      auto dw_p = dw.middleCols(p * c, c);
      detail::gemm<false, true>(dw_p, dh, z1, detail::zero_block(dw_p));
      auto dz = detail::grown_view(scratch.dz1c[std::size_t(t)], c, n);
      detail::gemm<true, false>(dz, m_w1, dh, detail::zero_block(dz));
      double* sum_g = sums.col(2 * p).data();
      double* sum_g_xc = sums.col(2 * p + 1).data();
      for (Index r = 0; r < c; ++r) sum_g[r] = sum_g_xc[r] = 0;
      detail::masked_sums(dz.data(), c, z1.data(), c, x.data() + c0 * x.outerStride(), x.outerStride(),
                          m_co.mean1.data(), c, n, sum_g, sum_g_xc);
      const S* base_c = base ? base->data() + c0 * base->outerStride() : nullptr;
      detail::scaled_add_block(base_c, base ? base->outerStride() : 0, dz, m_co.scale1.data(), dL_dx.middleCols(c0, n));
    });
    for (Index p = 0; p < nparts; ++p) m_dw1 += dw.middleCols(p * c, c);
    finish_norm_backward(sums, P, m_co.scale1, m_co.mean1, m_co.inv_std1, m_co.b1, m_co.c1, m_dgamma1, m_dbeta1);
    pending_b.head(c) += m_co.b1;
    pending_c.head(c) += m_co.c1;
  }

  /// Inference: y = layer(x) with the caller's buffers (co, h, scratch, conv), no member touched.
  void infer_view(const ConstView& x, const Eigen::MatrixXd& x_stats, Coefficients& co, Batch<S>& h, Scratch& scratch,
                  typename Conv2d<S>::Workspace& conv, View y) const {
    if (m_training) check_batch(x.cols());
    compute(x, x_stats, co, h, scratch, y,
            [&](const Batch<S>& z2, Batch<S>& out) { m_conv2.infer_add(z2, out, NoSkip{}, conv); });
  }
  /// @}

  static Index checked_bottleneck(Index in, Index k, const DenseLayerOptions& o) {
    auto require = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("DenseLayer: " + what);
    };
    require(in >= 1, "in_channels must be >= 1, got " + std::to_string(in));
    require(k >= 1, "growth_rate must be >= 1, got " + std::to_string(k));
    require(o.bn_size >= 1, "bn_size must be >= 1, got " + std::to_string(o.bn_size));
    require(o.norm.eps > 0 && o.norm.momentum >= 0 && o.norm.momentum <= 1,
            "eps must be > 0 and momentum in [0, 1], got eps " + std::to_string(o.norm.eps) + ", momentum " +
                std::to_string(o.norm.momentum));
    return o.bn_size * k;
  }

  static ConstView whole(const Matrix& m) {
    return ConstView(m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.rows()));
  }
  static View whole(Matrix& m) { return View(m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.rows())); }

  void check_input(const Input& x) const {
    detail::check_input_features(name, m_in, x);
    detail::samples_in(name, m_image, x.rows(), x.cols());
    if (m_training) check_batch(x.cols());
  }
  static void check_batch(Index columns) {
    if (columns < 2)
      throw std::invalid_argument("DenseLayer: training needs more than one value per channel, got " +
                                  std::to_string(columns) + " column(s)");
  }

  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    const ParameterName n1 = prefix.child("norm1"), n2 = prefix.child("norm2");
    f(n1.child("weight").view(), self.m_gamma1, self.m_dgamma1);
    f(n1.child("bias").view(), self.m_beta1, self.m_dbeta1);
    f(prefix.child("conv1").child("weight").view(), self.m_w1, self.m_dw1);
    f(n2.child("weight").view(), self.m_gamma2, self.m_dgamma2);
    f(n2.child("bias").view(), self.m_beta2, self.m_dbeta2);
    self.m_conv2.for_each_parameter(f, prefix.child("conv2"));
  }
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    const ParameterName n1 = prefix.child("norm1"), n2 = prefix.child("norm2");
    f(n1.child("running_mean").view(), self.m_running_mean1);
    f(n1.child("running_var").view(), self.m_running_var1);
    f(n1.child("num_batches_tracked").view(), self.m_num_batches1);
    f(n2.child("running_mean").view(), self.m_running_mean2);
    f(n2.child("running_var").view(), self.m_running_var2);
    f(n2.child("num_batches_tracked").view(), self.m_num_batches2);
  }

  /// Per-channel scale, shift, mean and 1/√(var + ε) of one BatchNorm (detail::norm_coefficients).
  void coefficients(bool batch, const Eigen::MatrixXd& stats, const Vector& gamma, const Vector& beta,
                    const Vector& running_mean, const Vector& running_var, Vector& scale, Vector& shift, Vector& mean,
                    Vector& inv_std) const {
    detail::norm_coefficients(batch, stats, gamma, beta, running_mean, running_var, m_opt.norm.eps, scale, shift, mean,
                              inv_std);
  }

  void update_running(const Eigen::MatrixXd& stats, Vector& running_mean, Vector& running_var, std::int64_t& count,
                      Index columns) {
    detail::update_running_statistics(stats, columns, m_opt.norm.momentum, running_mean, running_var, count);
  }

  /// Columns per chunk of the fused passes over the c-row input (about 256 KB of it).
  [[nodiscard]] Index chunk_columns(Index P) const noexcept { return detail::statistics_partition(m_in, P); }
  /// Threads for `nparts` chunks (each thread takes a contiguous range; results do not depend on it).
  static Index chunk_threads(Index nparts) noexcept {
    return std::max<Index>(1, std::min<Index>(num_threads(), nparts));
  }
  static void reserve_chunks(std::vector<Vector>& chunks, Index threads, Index size) {
    if (Index(chunks.size()) < threads) chunks.resize(std::size_t(threads));
    for (Index t = 0; t < threads; ++t)
      if (chunks[std::size_t(t)].size() < size) chunks[std::size_t(t)].resize(size);
  }

  /// y = conv2(relu(norm2(conv1(relu(norm1(x)))))), `conv(z2, out)` running conv2; fills co and h.
  /// relu(norm1(x)) exists only chunk by chunk, in cache, each chunk going straight into conv1.
  template <class Conv>
  void compute(const ConstView& x, const Eigen::MatrixXd& x_stats, Coefficients& co, Batch<S>& h, Scratch& scratch,
               View& y, const Conv& conv) const {
    const Index P = x.cols(), b = bottleneck_channels(), c = m_in;
    if (x.rows() != m_in || y.rows() != m_k || y.cols() != P)
      throw std::invalid_argument("DenseLayer: input is " + detail::shape_string(x.rows(), P) + " and output " +
                                  detail::shape_string(y.rows(), y.cols()) + ", expected " + std::to_string(m_in) +
                                  " and " + std::to_string(m_k) + " rows with equal columns");
    const bool batch = m_training;
    co.batch_stats = batch;
    if (batch && x_stats.rows() < m_in)
      throw std::invalid_argument("DenseLayer: statistics of " + std::to_string(x_stats.rows()) + " channels for " +
                                  std::to_string(m_in) + " input channels");
    coefficients(batch, x_stats, m_gamma1, m_beta1, m_running_mean1, m_running_var1, co.scale1, co.shift1, co.mean1,
                 co.inv_std1);
    h.resize(b, P);
    const Index step = chunk_columns(P), nparts = (P + step - 1) / step, threads = chunk_threads(nparts);
    auto moments = detail::grown_view(scratch.parts, b, 2 * nparts);
    reserve_chunks(scratch.z1c, threads, c * std::min(step, P));
    detail::for_each_part_by_thread(nparts, threads, [&](Index t, Index p) {
      const Index c0 = p * step, n = std::min(step, P - c0);
      auto z1 = detail::grown_view(scratch.z1c[std::size_t(t)], c, n);
      detail::normalize_relu_block(x.middleCols(c0, n), co.scale1, co.shift1, z1);
      auto hc = h.middleCols(c0, n);
      detail::gemm<false, false>(hc, m_w1, z1, detail::zero_block(hc));
      if (batch) detail::partial_moments(hc, moments.col(2 * p).data(), moments.col(2 * p + 1).data());
    });
    co.stats2.resize(b, 2);
    if (batch) detail::merge_moments(moments, P, step, co.stats2, 0);
    coefficients(batch, co.stats2, m_gamma2, m_beta2, m_running_mean2, m_running_var2, co.scale2, co.shift2, co.mean2,
                 co.inv_std2);
    scratch.z2.resize(b, P);
    detail::normalize_relu(h, co.scale2, co.shift2, scratch.z2);
    scratch.z2_owner = this;
    scratch.out.resize(m_k, P);
    conv(scratch.z2, scratch.out);
    detail::copy_columns(y, scratch.out);
  }

  /// detail::finish_norm_backward, as the last forward normalised.
  template <class Sums>
  void finish_norm_backward(const Sums& sums, Index cols, const Vector& scale, const Vector& mean,
                            const Vector& inv_std, Vector& b, Vector& c, Vector& dgamma, Vector& dbeta) const {
    detail::finish_norm_backward(sums, cols, m_co.batch_stats, scale, mean, inv_std, b, c, dgamma, dbeta);
  }

  Index m_in, m_k;
  DenseLayerOptions m_opt;
  bool m_training = true;
  ImageSize m_image{};
  Vector m_gamma1, m_beta1, m_dgamma1, m_dbeta1, m_running_mean1, m_running_var1;
  Vector m_gamma2, m_beta2, m_dgamma2, m_dbeta2, m_running_mean2, m_running_var2;
  std::int64_t m_num_batches1 = 0, m_num_batches2 = 0;
  Matrix m_w1, m_dw1;  ///< conv1.weight (4k × c) and its gradient
  Conv2d<S> m_conv2;
  Coefficients m_co;  ///< the last forward's
  Batch<S> m_h;       ///< conv1's output of the last forward (4k × P)
  Scratch m_scratch;  ///< this layer's own shared buffers, when used alone
  Eigen::MatrixXd m_stats;
  Vector m_pending_b, m_pending_c;  ///< norm1's b·x + c part of dL/dx (used alone)
  CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks

#undef RESBLOCKS_SIMD
