#pragma once
/// \file
/// \brief Conv2d: 2-D convolution on the image layout (direct kernels, or im2col / implicit GEMM).

#include "resblocks/core/block_fn.hpp"
#include "resblocks/core/compiled_kernels.hpp"
#include "resblocks/core/direct_conv.hpp"
#include "resblocks/core/fused_layer.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/im2col.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/norm_gradient.hpp"
#include "resblocks/core/norm_input.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/torch_shape.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/core/winograd_conv.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// \brief Geometry of a Conv2d besides its channel counts and kernel size (PyTorch's defaults).
struct Conv2dOptions {
  Index stride = 1;
  Index padding = 0;  ///< zeros on every side
  Index dilation = 1;
  Index groups = 1;  ///< in and out channels split into this many independent groups
  bool bias = true;
};

/// \brief 2-D convolution with a k×k kernel, as PyTorch's `nn.Conv2d` (square kernel, stride,
/// padding, dilation, groups). `weight` is Out × (In/groups·k·k) in PyTorch's order (its
/// `[Out, In/groups, k, k]` tensor flattened), `bias` has Out entries; both start U(±1/√fan_in).
///
/// Input In × (n·H·W), output Out × (n·Ho·Wo) on the image layout (see ImageSize); H×W is set with
/// set_image_size(). Three paths, picked per call:
/// - a 1×1, stride-1 convolution is one GEMM on the batch;
/// - the direct kernels (core/direct_conv.hpp, the default where they apply: one group, no dilation,
///   output channels of 1, 2 or 4 SIMD packets): the output channels of a row block of pixels stay in
///   registers, each input value broadcast into them; no im2col, no packing. dL/dx of a stride-1
///   convolution is the same kernel on dL/dy with the flipped weights, dL/dW a kernel of its own;
///   a 3×3, stride-1, padding-1 convolution with whole packets of input channels runs Winograd
///   instead (core/winograd_conv.hpp; F(4×4, 3×3) in float: 36 products per 4×4 outputs instead of
///   144), forward, dL/dx and dL/dW, by default in float (set_winograd());
/// - otherwise im2col (core/im2col.hpp) + GEMM over chunks of positions that fit in cache, or the
///   implicit GEMM that reads the patches while packing them. Backward of a stride-1 convolution is the
///   convolution of dL/dy with the flipped kernel; other strides use dL/dcolumns and a col2im scatter.
///
/// The batch is split into up to 8 parts, handed to the threads as they come free (single-threaded
/// kernels inside); the parts depend on the batch only, and partial dL/dW are summed in part order:
/// any thread count gives the same bits.
template <class S = float, int In = Dynamic, int Out = Dynamic>
class Conv2d : public FusedLayer<Conv2d<S, In, Out>, S, In, Out>, public detail::VisitsParameters<Conv2d<S, In, Out>> {
  using Base = FusedLayer<Conv2d<S, In, Out>, S, In, Out>;
  friend Base;

 public:
  using typename Base::Input;
  using typename Base::Output;
  using Weight = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Bias = detail::ParamVector<S, Out>;
  static constexpr std::string_view name = "Conv2d";

  /// \brief Inference buffers of one caller.
  struct Workspace : detail::FusedWorkspace<S, Out> {
    Weight w;                   ///< the weight in the kernel's order
    std::vector<Weight> cols;   ///< per part: one chunk of im2col columns, and its output transposed
    detail::NormInput<S> norm;  ///< x of the infer passes, when set (infers_norm_input)
    /// The infer passes until this is reset read their input through g (see Conv2d::set_norm_input).
    /// \param g the preceding normalisation's output through a ReLU, as coefficients, or empty
    void set_norm_input(const detail::NormInput<S>& g) noexcept { norm = g; }
  };

  /// \brief Static channel counts: `Conv2d<float, 16, 32> c(3, {.padding = 1});`.
  /// \param kernel_size k of the k × k kernel
  /// \param options stride, padding, dilation, groups and bias
  /// \throws std::invalid_argument on k < 1, stride < 1, padding < 0, dilation < 1, or groups that do not divide
  ///   both channel counts
  explicit Conv2d(Index kernel_size, Conv2dOptions options = {}) requires(In != Dynamic && Out != Dynamic)
      : Conv2d(In, Out, kernel_size, options) {}

  /// \brief Run-time channel counts (must agree with static ones, where given).
  /// \param in_channels input channels
  /// \param out_channels output channels
  /// \param kernel_size k of the k × k kernel
  /// \param options stride, padding, dilation, groups and bias
  /// \throws std::invalid_argument on a channel count that is negative or disagrees with a static one, k < 1,
  ///   stride < 1, padding < 0, dilation < 1, or groups that do not divide both channel counts
  Conv2d(Index in_channels, Index out_channels, Index kernel_size, Conv2dOptions options = {})
      : m_in(in_channels), m_out(out_channels), m_k(kernel_size), m_opt(options) {
    detail::check_features(name, "in_channels", In, in_channels);
    detail::check_features(name, "out_channels", Out, out_channels);
    auto require = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("Conv2d: " + what);
    };
    require(m_k >= 1, "kernel_size must be >= 1, got " + std::to_string(m_k));
    require(m_opt.stride >= 1, "stride must be >= 1, got " + std::to_string(m_opt.stride));
    require(m_opt.padding >= 0, "padding must be >= 0, got " + std::to_string(m_opt.padding));
    require(m_opt.dilation >= 1, "dilation must be >= 1, got " + std::to_string(m_opt.dilation));
    require(m_opt.groups >= 1 && m_in % m_opt.groups == 0 && m_out % m_opt.groups == 0,
            "groups (" + std::to_string(m_opt.groups) + ") must divide in_channels (" + std::to_string(m_in) +
                ") and out_channels (" + std::to_string(m_out) + ")");
    m_weight.setZero(m_out, group_in() * m_k * m_k);
    m_dL_dweight.setZero(m_out, group_in() * m_k * m_k);
    if (m_opt.bias) {
      m_bias.setZero(m_out);
      m_dL_dbias.setZero(m_out);
    }
    if (!same_order()) m_w.setZero(m_out, m_weight.cols());
    reset_parameters(default_generator());
  }

  /// \brief PyTorch's default initialisation: weight and bias uniform in ±1/√fan_in, fan_in = In/groups·k·k.
  /// \param g generator the weight and bias are drawn from
  void reset_parameters(Generator& g) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in()));
    fill_uniform(m_weight, bound, g);
    if (m_opt.bias) fill_uniform(m_bias, bound, g);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_in; }
  [[nodiscard]] Index out_features() const noexcept { return m_out; }
  [[nodiscard]] Index kernel_size() const noexcept { return m_k; }
  [[nodiscard]] const Conv2dOptions& options() const noexcept { return m_opt; }
  [[nodiscard]] bool has_bias() const noexcept { return m_opt.bias; }
  /// \brief In/groups·k·k and Out/groups·k·k, as torch.nn.init computes them.
  /// \returns In/groups·k·k (fan_out() returns Out/groups·k·k)
  [[nodiscard]] Index fan_in() const noexcept { return group_in() * m_k * m_k; }
  [[nodiscard]] Index fan_out() const noexcept { return group_out() * m_k * m_k; }
  /// \brief The weight's shape in PyTorch, [Out, In/groups, k, k] (stored as Out × (In/groups·k·k), same order).
  /// \returns the four dimensions
  [[nodiscard]] TorchShape torch_weight_shape() const noexcept { return {{m_out, group_in(), m_k, m_k}, 4}; }

  Weight& weight() noexcept { return m_weight; }
  const Weight& weight() const noexcept { return m_weight; }
  Bias& bias() noexcept { return m_bias; }
  const Bias& bias() const noexcept { return m_bias; }
  const Weight& weight_grad() const noexcept { return m_dL_dweight; }
  const Bias& bias_grad() const noexcept { return m_dL_dbias; }

  /// \brief Sets the input's height and width; returns the output's.
  /// \param in the input's height and width
  /// \returns the output's height and width
  /// \throws std::invalid_argument when `in` is empty or smaller than the dilated kernel with its padding
  ImageSize set_image_size(ImageSize in) {
    const Index reach = m_opt.dilation * (m_k - 1) + 1;
    const Index ho = (in.height + 2 * m_opt.padding - reach) / m_opt.stride + 1;
    const Index wo = (in.width + 2 * m_opt.padding - reach) / m_opt.stride + 1;
    if (in.empty() || in.height + 2 * m_opt.padding < reach || in.width + 2 * m_opt.padding < reach)
      throw std::invalid_argument("Conv2d: a " + in.str() + " image is smaller than the " + std::to_string(reach) +
                                  "x" + std::to_string(reach) + " (dilated) kernel with padding " +
                                  std::to_string(m_opt.padding));
    m_in_size = in;
    m_out_size = {ho, wo};
    return m_out_size;
  }
  [[nodiscard]] ImageSize image_size() const noexcept { return m_in_size; }
  /// \brief Tuning: at most this many output positions per im2col chunk (default: ~1 MB of float columns).
  /// \param positions the limit (values below 1 count as 1)
  void set_max_chunk_positions(Index positions) noexcept { m_max_chunk = std::max<Index>(1, positions); }
  /// Tuning: read the patches straight from the image while the GEMM packs them (implicit GEMM; on by
  /// default where it applies: one group, a power-of-two channel count of whole SIMD packets) instead
  /// of writing them out first (im2col). Both give the same bits.
  /// \param on true to use the implicit GEMM where it applies
  void set_implicit_gemm(bool on) noexcept { m_implicit = on; }
  /// Tuning: use the direct kernels (no im2col, no packing; see direct_conv.hpp) where they apply:
  /// one group, no dilation, output channels of 1, 2 or 4 SIMD packets (16, 32, 64 floats with
  /// AVX-512) and rows wide enough; dL/dx and dL/dW of stride-1 convolutions whose input channels
  /// qualify too. On by default; off, the GEMM paths run (same results up to rounding).
  /// \param on true to use the direct kernels where they apply
  void set_direct(bool on) noexcept { m_direct = on; }
  /// Tuning: run the direct kernels' 3×3, stride-1, padding-1 convolutions (forward, dL/dx, dL/dW) as
  /// Winograd where the input channels are whole SIMD packets too: in float F(4×4, 3×3) (4× fewer
  /// multiplications) where the output's tiles make it worth it, else F(2×2, 3×3) (2.25×);
  /// F(2×2, 3×3) in double. Rounded in another order (F(4×4): about ten times F(2×2)'s rounding
  /// error). On by default for float, off for double (whose results stay those of the direct sum).
  /// \param on true to use Winograd where it applies
  void set_winograd(bool on) noexcept { m_winograd = on; }
  /// Off: backward computes dL/dW (and dL/db) only and returns dL/dx as zeros — for a first layer,
  /// whose input gradient training never uses (PyTorch skips it for inputs without requires_grad).
  /// \param on false to skip dL/dx (on by default)
  void set_input_gradient(bool on) noexcept { m_input_gradient = on; }
  [[nodiscard]] bool input_gradient() const noexcept { return m_input_gradient; }
  [[nodiscard]] ImageSize output_image_size() const noexcept { return m_out_size; }

  /// The blocks forward_then(x, …)'s epilogue gets when each is one sample's output (the direct
  /// kernels run per sample): columns (the output area) and samples; empty on the GEMM paths (blocks
  /// of positions) or when x is not whole images. Sequential then has a following BatchNorm2d sum
  /// each sample's statistics while it is in cache.
  /// \param x the coming input
  /// \returns the blocks, or empty ones
  [[nodiscard]] detail::SampleBlocks forward_sample_blocks(const Input& x) const noexcept {
    const Index in_area = m_in_size.area();
    if (pointwise() || !direct_forward_plan().ok() || in_area <= 0 || x.cols() % in_area != 0) return {};
    return {m_out_size.area(), x.cols() / in_area};
  }
  /// The blocks backward_then's epilogue gets when they are whole samples of dL/dx (the direct pass
  /// runs one sample at a time, the strided one a part's samples): columns (the input area) and
  /// samples of the last forward's input; empty on the other paths, without the input gradient, or
  /// before a forward (detail::HasBackwardSampleBlocks). Sequential and Repeat then have a
  /// BatchNorm2d before the activation before this layer sum its backward sums in this pass.
  /// \returns the blocks, or empty ones
  [[nodiscard]] detail::SampleBlocks backward_sample_blocks() const noexcept {
    const Input* x = this->cached_input_if();
    const Index in_area = m_in_size.area();
    const BackwardPath path = backward_path();
    if (!x || !m_input_gradient || (path != BackwardPath::direct && path != BackwardPath::scatter) || in_area <= 0 ||
        x->cols() % in_area != 0)
      return {};
    return {in_area, x->cols() / in_area};
  }
  /// Whether backward can read dL/dy as a following BatchNorm2d's unwritten dL/dx
  /// (detail::NormGradient): on the direct path, without a bias. Sequential then runs the pair so.
  /// \returns true when set_norm_gradient() may be used for the next backward
  [[nodiscard]] bool takes_norm_gradient() const noexcept {
    return !m_opt.bias && backward_path() == BackwardPath::direct;
  }
  /// The backward passes until this is reset (to an empty one) compute dL/dy from g per sample, and
  /// ignore the dL_dy they are given beyond its shape (detail::NormGradientScope sets and resets it).
  /// \param g the following normalisation's dL/dx as coefficients, or empty
  void set_norm_gradient(const detail::NormGradient<S>& g) noexcept { m_norm_gradient = g; }
  /// Whether forward can read its input as a preceding BatchNorm2d's output through a ReLU, from the
  /// normalisation's input and coefficients (detail::NormInput): on the direct paths forward and
  /// backward, with the input gradient, unless set_fuse_norm_input(false). Sequential then runs
  /// BatchNorm2d → ReLU → Conv2d so in training, and the normalised batch is never written.
  /// \returns true when set_norm_input() may be used for the next forward
  [[nodiscard]] bool takes_norm_input() const noexcept {
    return infers_norm_input() && m_input_gradient && backward_path() == BackwardPath::direct;
  }
  /// Whether infer can read its input so (through its Workspace's set_norm_input): on the direct
  /// forward path, unless set_fuse_norm_input(false).
  /// \returns true when Workspace::set_norm_input() may be used for the next infer
  [[nodiscard]] bool infers_norm_input() const noexcept {
    return m_fuse_norm_input && !pointwise() && direct_forward_plan().ok();
  }
  /// The forward passes until this is reset (to an empty one) read their input through g: x must be
  /// g's input (g.x), and each sample is computed from it (detail::NormInputScope sets and resets it).
  /// The backward of such a forward reads x through g too (for dL/dW), and returns dL/dx with respect
  /// to the normalisation's output: the ReLU's backward applied.
  /// \param g the preceding normalisation's output through a ReLU, as coefficients, or empty
  void set_norm_input(const detail::NormInput<S>& g) noexcept { m_norm_input = g; }
  /// Whether the last forward read its input through set_norm_input(): its backward then includes the
  /// ReLU's (see there).
  /// \returns true when the last forward read a NormInput
  [[nodiscard]] bool read_norm_input() const noexcept { return static_cast<bool>(m_x_norm); }
  /// Tuning: let Sequential fuse a BatchNorm2d → ReLU before this convolution into its passes
  /// (takes_norm_input; on by default). Both give the same bits.
  /// \param on false to have the normalisation and the ReLU write their outputs
  void set_fuse_norm_input(bool on) noexcept { m_fuse_norm_input = on; }

  void zero_grad() {
    detail::parallel_zero(m_dL_dweight);
    if (m_opt.bias) m_dL_dbias.setZero();
  }

 private:
  friend detail::VisitsParameters<Conv2d<S, In, Out>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    detail::visit_parameter(f, prefix.child("weight").view(), self.m_weight, self.m_dL_dweight,
                            self.torch_weight_shape());
    if (self.m_opt.bias) f(prefix.child("bias").view(), self.m_bias, self.m_dL_dbias);
  }

  using ChunkMap = Eigen::Map<Weight, Eigen::Aligned16>;

  // The kernels FusedLayer runs (see there).
  Index forward_begin(const Input& x) {
    const Index n = check_input(x);
    if (m_norm_input && (!takes_norm_input() || m_norm_input.x != x.data() || m_norm_input.rows != x.rows()))
      throw std::logic_error(
          "Conv2d: set_norm_input() of another input, or on a convolution that does not take it "
          "(takes_norm_input())");
    m_x_norm = m_norm_input;
    prepare_weights(m_w, m_wf);
    return n * m_out_size.area();
  }
  void forward_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue) {
    compute(x, y, skip, kernel_weight(m_w), m_cols, epilogue, m_x_norm);
  }
  Index infer_begin(const Input& x, Workspace& ws) const {
    const Index n = check_input(x);
    if (ws.norm && (!infers_norm_input() || ws.norm.x != x.data() || ws.norm.rows != x.rows()))
      throw std::logic_error(
          "Conv2d: Workspace::set_norm_input() of another input, or on a convolution that does not take it "
          "(infers_norm_input())");
    if (!same_order()) to_kernel_order(m_weight, ws.w);
    return n * m_out_size.area();
  }
  void infer_kernel(const Input& x, Output& y, const Output* skip, detail::BlockFn epilogue, Workspace& ws) const {
    compute(x, y, skip, kernel_weight(ws.w), ws.cols, epilogue, ws.norm);
  }
  Index backward_begin(const Output& dL_dy) const {
    const Input& x = this->cached_input();
    detail::check_output_gradient(name, m_out, x.cols() / m_in_size.area() * m_out_size.area(), dL_dy);
    return x.cols();
  }
  void backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue);

  /// The forward convolution's patches of x.
  [[nodiscard]] detail::ConvGeometry forward_geometry() const noexcept {
    return {m_in_size.height, m_in_size.width, m_out_size.height, m_out_size.width, m_in, group_in(), m_k,
            m_opt.stride,     m_opt.padding,   m_opt.dilation};
  }
  /// dL/dx of a stride-1 convolution is a convolution of dL/dy with the flipped kernel (padding
  /// d(k-1) - p): its patches of dL/dy, one per input position.
  [[nodiscard]] detail::ConvGeometry gather_geometry() const noexcept {
    return {m_out_size.height,
            m_out_size.width,
            m_in_size.height,
            m_in_size.width,
            m_out,
            m_out,
            m_k,
            1,
            m_opt.dilation * (m_k - 1) - m_opt.padding,
            m_opt.dilation};
  }
  /// dL/dx as that convolution (no col2im scatter) when stride 1, one group, padding ≤ d(k-1).
  [[nodiscard]] bool gather_backward() const noexcept {
    return m_opt.stride == 1 && m_opt.groups == 1 && m_opt.padding <= m_opt.dilation * (m_k - 1);
  }

  [[nodiscard]] Index group_in() const noexcept { return m_in / m_opt.groups; }
  [[nodiscard]] Index group_out() const noexcept { return m_out / m_opt.groups; }
  /// A 1×1, stride-1, unpadded, ungrouped convolution: one GEMM on the input itself.
  [[nodiscard]] bool pointwise() const noexcept {
    return m_k == 1 && m_opt.stride == 1 && m_opt.padding == 0 && m_opt.groups == 1;
  }
  /// PyTorch's weight order (ci slowest) equals the kernel's (ci fastest) only for 1×1 kernels.
  [[nodiscard]] bool same_order() const noexcept { return m_k == 1; }
  const Weight& kernel_weight(const Weight& converted) const noexcept { return same_order() ? m_weight : converted; }

  Index check_input(const Input& x) const {
    detail::check_input_features(name, m_in, x);
    return detail::samples_in(name, m_in_size, x.rows(), x.cols());
  }

  /// Kernel order: column ci + Cg·(kw + k·kh); PyTorch's: kw + k·(kh + k·ci).
  void to_kernel_order(const Weight& torch_order, Weight& kernel) const {
    const Index cg = group_in(), kk = m_k * m_k;
    kernel.resize(torch_order.rows(), torch_order.cols());
    for (Index ci = 0; ci < cg; ++ci)
      for (Index t = 0; t < kk; ++t) kernel.col(ci + cg * t) = torch_order.col(t + kk * ci);
  }
  template <class Kernel>
  void from_kernel_order_add(const Kernel& kernel, Weight& torch_order) const {
    const Index cg = group_in(), kk = m_k * m_k;
    for (Index ci = 0; ci < cg; ++ci)
      for (Index t = 0; t < kk; ++t) torch_order.col(t + kk * ci) += kernel.col(ci + cg * t);
  }
  /// The weights the training passes use: kernel order, and (gather backward) the flipped kernel
  /// wf, In × (Out·k·k), column o + Out·(k·k - 1 - t) = tap t of output channel o.
  void prepare_weights(Weight& w, Weight& wf) const {
    if (!same_order()) to_kernel_order(m_weight, w);
    if (pointwise() || !gather_backward()) return;
    const Weight& kw = kernel_weight(w);
    const Index kk = m_k * m_k;
    wf.resize(m_in, m_out * kk);
    for (Index t = 0; t < kk; ++t)
      wf.middleCols(m_out * (kk - 1 - t), m_out) = kw.middleCols(m_in * t, m_in).transpose();
  }

  /// The implicit GEMM applies: ungrouped, channels a power of two and whole packets. It pays off
  /// from 32 channels (measured: ~5% per convolution at 32 and 64; at 16 the table lookups per
  /// packet cost what the im2col pass saves) and when the product's other side (`n`) is not thin.
  [[nodiscard]] bool implicit(const detail::ConvGeometry& geo, Index n) const noexcept {
    const Index c = geo.channels, packet = Eigen::internal::packet_traits<S>::size;
    return m_implicit && geo.group == c && (c & (c - 1)) == 0 && c % packet == 0 && c >= 32 && n >= 16;
  }
  /// Positions in one chunk of patches of `patch` rows: about 1 MB of float patches.
  [[nodiscard]] Index chunk_positions(Index patch) const noexcept {
    const Index by_size = std::max<Index>(64, (Index(1) << 18) / std::max<Index>(patch, 1));
    return std::max<Index>(1, std::min(by_size, m_max_chunk));
  }
  /// f(p0, count) over chunks of positions [begin, end) (chunk_positions(patch) each, the last shorter).
  template <class F>
  void for_each_chunk(Index begin, Index end, Index patch, const F& f) const {
    const Index chunk = chunk_positions(patch);
    for (Index p0 = begin; p0 < end; p0 += chunk) f(p0, std::min(chunk, end - p0));
  }
  /// Scratch of the threads that run the parts of n samples (`area` positions each) in chunks of
  /// patches of `patch` rows, all sized before the parts run, so that whichever parts a thread is
  /// handed, nothing grows inside the parallel region: the per-thread chunk buffers (buffers[2t]:
  /// rows0 × chunk, the im2col matrix, 0 rows when the implicit GEMM reads the patches instead;
  /// buffers[2t+1]: chunk × cols1) here; the packing space for the products on a chunk
  /// of pc positions, shapes(pc) = their (m, n, k), and the tap table of the implicit GEMM by the
  /// returned start(t), which each thread calls first. Every chunk length that occurs counts: full
  /// chunks and the remainders of the two part lengths.
  template <class Shapes>
  [[nodiscard]] auto reserve_part_scratch(std::vector<Weight>& buffers, Index n, Index parts, Index area, Index patch,
                                          Index rows0, Index cols1, const Shapes& shapes) const {
    const Index chunk = chunk_positions(patch), longest = std::min(chunk, (n + parts - 1) / parts * area);
    const Index threads = detail::threads_for_parts(parts);
    if (Index(buffers.size()) < 2 * threads) buffers.resize(std::size_t(2 * threads));
    for (Index t = 0; t < threads; ++t) {
      chunk_buffer(buffers[std::size_t(2 * t)], rows0, longest);
      chunk_buffer(buffers[std::size_t(2 * t + 1)], longest, cols1);
    }
    std::size_t space = 0;
    for (const Index samples : {n / parts, (n + parts - 1) / parts}) {
      const Index positions = samples * area;
      for (const Index pc : {positions >= chunk ? chunk : Index(0), positions % chunk})
        if (pc > 0)
          for (const auto& [m, nn, k] : shapes(pc)) space = std::max(space, detail::gemm_space<S>(m, nn, k));
    }
    const std::size_t taps = std::size_t(longest * m_k * m_k);
    return [space, taps](Index) {
      detail::thread_pack_buffer<S>().get(space);
      std::vector<Index>& offsets = detail::im2col_offsets();
      if (offsets.size() < taps) offsets.resize(taps);
    };
  }
  /// A rows × cols view of `buffer`'s storage, grown only when too small: forward and backward
  /// reuse one buffer for differently shaped chunks without reallocating.
  static ChunkMap chunk_buffer(Weight& buffer, Index rows, Index cols) {
    if (buffer.size() < rows * cols) buffer.resize(rows * cols, 1);
    return ChunkMap(buffer.data(), rows, cols);
  }

  void compute(const Input& x, Output& y, const Output* skip, const Weight& w, std::vector<Weight>& buffers,
               detail::BlockFn epilogue, const detail::NormInput<S>& norm) const;
  void compute_direct(const detail::DirectConvPlan& plan, const Input& x, Output& y, const Output* skip,
                      const Weight& w, std::vector<Weight>& buffers, detail::BlockFn epilogue,
                      const detail::NormInput<S>& norm) const;
  void compute_im2col(const Input& x, Output& y, const Output* skip, const Weight& w, std::vector<Weight>& buffers,
                      detail::BlockFn epilogue) const;
  void backward_gather(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn then, Index n);
  void backward_scatter(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn then, Index n);
  void direct_backward(const Output& dL_dy, Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue, Index n,
                       const detail::NormGradient<S>& norm);

  /// Parts of a batch of n samples: up to 8 whatever the threads (each with its own partial dL/dW,
  /// summed in order: same bits on any thread count), handed out to the threads as they come free.
  [[nodiscard]] Index partitions(Index n) const noexcept {
    const double work = double(n) * double(m_out_size.area()) * double(m_weight.size());
    return work < detail::k_gemm_grain ? std::min<Index>(n, 1) : std::min<Index>(n, 8);
  }
  /// The direct kernels' plan for the forward convolution (none: GEMM path).
  [[nodiscard]] detail::DirectConvPlan direct_forward_plan() const noexcept {
    if (!m_direct || m_opt.groups != 1 || m_opt.dilation != 1) return {};
    return detail::direct_conv_plan<S>(m_out, m_out_size.width);
  }
  [[nodiscard]] detail::DirectConvShape direct_forward_shape() const noexcept {
    return {m_in,
            m_out,
            m_k,
            m_opt.stride,
            m_in_size.height + 2 * m_opt.padding,
            m_in_size.width + 2 * m_opt.padding,
            m_out_size.height,
            m_out_size.width};
  }
  /// dL/dx (the gather convolution of dL/dy) and dL/dW of a stride-1 convolution, both direct.
  [[nodiscard]] detail::DirectConvPlan direct_backward_plan() const noexcept {
    if (!direct_forward_plan().ok()) return {};
    return detail::direct_conv_plan<S>(m_in, m_in_size.width);
  }
  /// Winograd runs a direct convolution of `channels` input channels and `plan`'s output channels:
  /// on, 3×3, stride 1, padding 1, whole packets of input channels.
  [[nodiscard]] bool winograd_applies(const detail::DirectConvPlan& plan, Index channels) const noexcept {
    return m_winograd && plan.ok() && m_k == 3 && m_opt.stride == 1 && m_opt.padding == 1 &&
           channels % detail::DirectConvTraits<S>::lanes == 0;
  }
  /// The Winograd plan of such a convolution with out_h × out_w outputs (not ok: the direct kernel
  /// runs; dL/dW takes any number of tiles and needs only winograd_applies).
  [[nodiscard]] detail::WinogradPlan winograd_plan(const detail::DirectConvPlan& plan, Index channels,
                                                   ImageSize out) const noexcept {
    if (!winograd_applies(plan, channels)) return {};
    return detail::winograd_plan<S>(plan.nv, out.height, out.width);
  }
  /// shape with the source unpadded (size), as the Winograd kernels read it, and their scratch in
  /// `buffer`.
  static detail::DirectConvShape unpadded(detail::DirectConvShape shape, ImageSize size) noexcept {
    shape.src_h = size.height;
    shape.src_w = size.width;
    return shape;
  }
  static S* winograd_scratch(Weight& buffer, const detail::DirectConvShape& shape) {
    return chunk_buffer(buffer, Index(detail::winograd_scratch_size<S>(shape.in, shape.out)), 1).data();
  }
  /// u = the transformed weights of w (layout [tap][shape.in][shape.out]) in `buffer`, when wino.ok().
  static const S* winograd_prepare(detail::WinogradPlan wino, const detail::DirectConvShape& shape, const S* w,
                                   Weight& buffer) {
    if (!wino.ok()) return nullptr;
    auto u = chunk_buffer(buffer, wino.points() * shape.in, shape.out);
    detail::winograd_weights(w, shape.in, shape.out, wino.m, u.data());
    return u.data();
  }
  /// The convolution of one sample (src: size × shape.in, padded by `pad`) by the kernel picked:
  /// Winograd (wino.ok(), u its weights; it pads on the fly), or direct with the weights w on a
  /// zero-padded copy in `copy`.
  static void convolve(const detail::DirectConvPlan& plan, detail::WinogradPlan wino,
                       const detail::DirectConvShape& shape, const S* src, ImageSize size, Index pad, const S* w,
                       const S* u, S* y, Weight& copy, Weight& scratch) {
    if (wino.ok())
      detail::winograd_conv(unpadded(shape, size), wino, src, u, y, winograd_scratch(scratch, shape));
    else
      detail::direct_conv(plan, shape, padded(src, size, shape.in, pad, shape, copy), w, y);
  }
  /// Grows the buffers convolve(…) with these arguments uses, so that its calls allocate nothing.
  static void reserve_convolve(detail::WinogradPlan wino, const detail::DirectConvShape& shape, Index pad, Weight& copy,
                               Weight& scratch) {
    if (wino.ok())
      winograd_scratch(scratch, shape);
    else if (pad != 0)
      chunk_buffer(copy, shape.in, shape.src_h * shape.src_w);
  }
  /// Sample i of a batch of `rows` × area-column samples: `stored` (its place in the batch) itself, or,
  /// when coefficients g (detail::NormGradient or detail::NormInput) are set, the sample they compute,
  /// written into `buffer` (part scratch that stays in cache).
  template <class Coefficients>
  static const S* sample_of(const Coefficients& g, Index i, Index rows, Index area, const S* stored, Weight& buffer) {
    if (!g) return stored;
    S* computed = chunk_buffer(buffer, rows, area).data();
    g.columns(i * area, area, computed);
    return computed;
  }
  /// src (one sample, size × channels) itself when unpadded, else a zero-padded copy in buffer.
  static const S* padded(const S* src, ImageSize size, Index channels, Index pad, const detail::DirectConvShape& shape,
                         Weight& buffer) {
    if (pad == 0) return src;
    auto dst = chunk_buffer(buffer, channels, shape.src_h * shape.src_w);
    detail::pad_sample(src, size.height, size.width, channels, pad, shape.src_h, shape.src_w, dst.data());
    return dst.data();
  }

  /// Without the input gradient: dL/dx = skip_grad (or 0), then the epilogue on all of it.
  void drop_input_gradient(Input& dL_dx, const Input* skip_grad, detail::BlockFn epilogue) const {
    if (m_input_gradient) return;
    if (skip_grad)
      dL_dx = *skip_grad;
    else
      dL_dx.setZero();
    epilogue(0, m_in, 0, dL_dx.cols());
  }

  /// The passes backward can take: one GEMM per product (pointwise), the direct kernels (direct dL/dW,
  /// and direct dL/dx unless it is not wanted), im2col of dL/dy (gather), im2col of x and col2im
  /// (scatter).
  enum class BackwardPath { pointwise, direct, gather, scatter };
  /// The path backward_kernel takes; backward_sample_blocks and takes_norm_gradient follow it.
  [[nodiscard]] BackwardPath backward_path() const noexcept {
    if (pointwise()) return BackwardPath::pointwise;
    if (direct_forward_plan().ok() && (!m_input_gradient || (gather_backward() && direct_backward_plan().ok())))
      return BackwardPath::direct;
    return gather_backward() ? BackwardPath::gather : BackwardPath::scatter;
  }

  Index m_in, m_out, m_k;
  Conv2dOptions m_opt;
  ImageSize m_in_size{}, m_out_size{};
  Weight m_weight, m_dL_dweight;
  Bias m_bias, m_dL_dbias;
  Weight m_w;   ///< the weight in kernel order (k > 1)
  Weight m_wf;  ///< the flipped kernel of the gather backward
  Index m_max_chunk = Index(1) << 40;
  bool m_implicit = true;
  bool m_direct = true;
  bool m_winograd = std::is_same_v<S, float>;
  bool m_input_gradient = true;
  std::vector<Weight> m_cols;               ///< per part: im2col chunk (forward), dL/dcolumns chunk (backward)
  std::vector<Weight> m_dw_parts;           ///< per part: partial dL/dW in kernel order
  detail::NormGradient<S> m_norm_gradient;  ///< dL/dy of the backward passes, when set (set_norm_gradient)
  detail::NormInput<S> m_norm_input;        ///< x of the forward passes, when set (set_norm_input)
  detail::NormInput<S> m_x_norm;            ///< x of the last forward: m_norm_input then (read_norm_input)
  bool m_fuse_norm_input = true;

  /// m_dw_parts[0] += m_dw_parts[1] + … + m_dw_parts[parts − 1], each element in part order (the bits
  /// of the serial sum, on any thread count), the columns split between the threads: the sum of 8
  /// parts of a 64-channel Winograd dL/dU (8 × 590 KB) no longer runs on one thread while the others wait.
  void sum_weight_parts(Index parts) {
    if (parts < 2) return;
    Weight& total = m_dw_parts[0];
    detail::parallel_for(total.cols(), double(total.rows()) * double(parts - 1), [&](Index c0, Index c1) {
      auto block = total.middleCols(c0, c1 - c0);
      for (Index q = 1; q < parts; ++q) block += m_dw_parts[std::size_t(q)].middleCols(c0, c1 - c0);
    });
  }
};

/// y = skip + bias + conv(x) with the kernel-order weight w; each part owns a range of samples.
template <class S, int In, int Out>
void Conv2d<S, In, Out>::compute(const Input& x, Output& y, const Output* skip, const Weight& w,
                                 std::vector<Weight>& buffers, detail::BlockFn epilogue,
                                 const detail::NormInput<S>& norm) const {
  if (pointwise()) {  // y = skip + bias + W x: skip and bias initialise each thread's block of y
    detail::gemm<false, false>(
        y, w, x,
        [&](Index r0, Index rows, Index c0, Index cols) {
          auto block = y.block(r0, c0, rows, cols);
          if (skip && m_opt.bias)
            block = skip->block(r0, c0, rows, cols).colwise() + m_bias.segment(r0, rows);
          else if (skip)
            block = skip->block(r0, c0, rows, cols);
          else if (m_opt.bias)
            block.colwise() = m_bias.segment(r0, rows);
          else
            block.setZero();
        },
        epilogue);
    return;
  }
  if (const detail::DirectConvPlan plan = direct_forward_plan(); plan.ok())
    compute_direct(plan, x, y, skip, w, buffers, epilogue, norm);
  else
    compute_im2col(x, y, skip, w, buffers, epilogue);
}

/// The direct forward: per sample, the kernel's result (from a zero-padded copy when padded), then
/// skip and bias, then the epilogue on the sample's columns. buffers[0]: the Winograd weights;
/// buffers[1 + 4t …]: thread t's padded sample, kernel result, Winograd scratch and the sample
/// computed from `norm` (when set: x is its input).
template <class S, int In, int Out>
void Conv2d<S, In, Out>::compute_direct(const detail::DirectConvPlan& plan, const Input& x, Output& y,
                                        const Output* skip, const Weight& w, std::vector<Weight>& buffers,
                                        detail::BlockFn epilogue, const detail::NormInput<S>& norm) const {
  const detail::DirectConvShape shape = direct_forward_shape();
  const Index n = x.cols() / m_in_size.area();
  const Index in_area = m_in_size.area(), out_area = m_out_size.area(), parts = partitions(n);
  if (Index(buffers.size()) < 1 + 4 * parts) buffers.resize(std::size_t(1 + 4 * parts));
  const detail::WinogradPlan wino = winograd_plan(plan, m_in, m_out_size);
  const S* u = winograd_prepare(wino, shape, w.data(), buffers[0]);
  // Each thread's scratch set, sized when the region starts (any thread may run any part; a set per
  // thread rather than per part stays in cache: the step ran 2.6% faster).
  const auto reserve = [&](Index thread) {
    Weight* part = buffers.data() + 1 + 4 * thread;
    reserve_convolve(wino, shape, m_opt.padding, part[0], part[2]);
    if (skip) chunk_buffer(part[1], m_out, out_area);
    if (norm) chunk_buffer(part[3], m_in, in_area);
  };
  detail::parallel_parts_dynamic(
      parts,
      [&](Index q, Index thread) {
        Weight* part = buffers.data() + 1 + 4 * thread;
        for (Index i = n * q / parts; i < n * (q + 1) / parts; ++i) {
          const S* src = sample_of(norm, i, m_in, in_area, x.data() + i * in_area * m_in, part[3]);
          auto yi = y.middleCols(i * out_area, out_area);
          if (skip) {  // the kernel's result first, then skip (+ bias): skip may be y itself
            auto t = chunk_buffer(part[1], m_out, out_area);
            convolve(plan, wino, shape, src, m_in_size, m_opt.padding, w.data(), u, t.data(), part[0], part[2]);
            if (m_opt.bias)
              yi = (skip->middleCols(i * out_area, out_area) + t).colwise() + m_bias;
            else
              yi = skip->middleCols(i * out_area, out_area) + t;
          } else {
            convolve(plan, wino, shape, src, m_in_size, m_opt.padding, w.data(), u, yi.data(), part[0], part[2]);
            if (m_opt.bias) yi.colwise() += m_bias;
          }
          epilogue(0, m_out, i * out_area, out_area);
        }
      },
      reserve);
}

/// The GEMM forward: per chunk of output positions, yᵀ = colsᵀ wᵀ (the positions are the GEMM's long
/// M side: few output channels make a poor M), the patches written out (im2col) or read while packed.
template <class S, int In, int Out>
void Conv2d<S, In, Out>::compute_im2col(const Input& x, Output& y, const Output* skip, const Weight& w,
                                        std::vector<Weight>& buffers, detail::BlockFn epilogue) const {
  const detail::ConvGeometry geo = forward_geometry();
  const Index n = x.cols() / m_in_size.area();
  const Index kg = geo.patch(), og = group_out(), parts = partitions(n), out_area = geo.out_area();
  const Index im2col_rows = implicit(geo, og) ? 0 : kg;
  const auto start = reserve_part_scratch(buffers, n, parts, out_area, kg, im2col_rows, og, [&](Index pc) {
    return std::array<std::array<Index, 3>, 1>{{{pc, og, kg}}};
  });
  detail::parallel_parts_dynamic(
      parts,
      [&](Index q, Index t) {
        for_each_chunk(n * q / parts * out_area, n * (q + 1) / parts * out_area, kg, [&](Index p0, Index pc) {
          auto yt = chunk_buffer(buffers[std::size_t(2 * t + 1)], pc, og);
          for (Index g = 0; g < m_opt.groups; ++g) {
            if (implicit(geo, og)) {
              const detail::Im2colMapper<S, true> patches(x.data(), detail::tap_offsets(geo, p0, pc), m_k * m_k,
                                                          detail::log2_ceil(geo.channels));
              yt.setZero();
              detail::gemm_mapped<Eigen::RowMajor, true, S>(pc, og, kg, patches, {w.data(), w.outerStride()}, yt.data(),
                                                            yt.outerStride());
            } else {
              auto cols = chunk_buffer(buffers[std::size_t(2 * t)], kg, pc);
              detail::im2col(geo, x.data() + g * geo.group, p0, pc, cols.data());
              detail::gemm<true, true>(yt, cols, w.block(g * og, 0, og, kg), detail::zero_block(yt));
            }
            auto yg = y.block(g * og, p0, og, pc);
            if (skip && m_opt.bias)
              yg = (skip->block(g * og, p0, og, pc) + yt.transpose()).colwise() + m_bias.segment(g * og, og);
            else if (skip)
              yg = skip->block(g * og, p0, og, pc) + yt.transpose();
            else if (m_opt.bias)
              yg = yt.transpose().colwise() + m_bias.segment(g * og, og);
            else
              yg = yt.transpose();
          }
          epilogue(0, m_out, p0, pc);
        });
      },
      start);
}

template <class S, int In, int Out>
void Conv2d<S, In, Out>::backward_kernel(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                         detail::BlockFn epilogue) {
  const Input& x = this->cached_input();
  const Index n = x.cols() / m_in_size.area();
  const detail::NormGradient<S> norm = m_norm_gradient;
  if (norm && !takes_norm_gradient())
    throw std::logic_error(
        "Conv2d: set_norm_gradient() on a convolution that does not take it (takes_norm_gradient())");
  if (m_x_norm && (skip_grad || backward_path() != BackwardPath::direct))
    throw std::logic_error(
        "Conv2d: the backward of a forward that read set_norm_input() takes no skip gradient and "
        "runs the direct path");
  if (m_opt.bias) m_dL_dbias += dL_dy.rowwise().sum();
  // Without the input gradient the GEMM paths still compute dL/dx (with dL/dW); the epilogue runs
  // once on what replaces it (drop_input_gradient), not on the dropped values.
  const auto guarded = [&](Index r0, Index rows, Index c0, Index cols) {
    if (m_input_gradient) epilogue(r0, rows, c0, cols);
  };
  const detail::BlockFn then = epilogue ? detail::BlockFn(guarded) : detail::BlockFn{};
  switch (backward_path()) {
    case BackwardPath::pointwise:  // dL/dW += dL_dy xᵀ; dL/dx = skip_grad + Wᵀ dL_dy
      detail::gemm<false, true>(m_dL_dweight, dL_dy, x, detail::Accumulate);
      if (skip_grad)
        detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::assign_block(dL_dx, *skip_grad), then);
      else
        detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::zero_block(dL_dx), then);
      break;
    case BackwardPath::direct:
      direct_backward(dL_dy, dL_dx, skip_grad, epilogue, n, norm);
      break;
    case BackwardPath::gather:
      backward_gather(dL_dy, dL_dx, skip_grad, then, n);
      break;
    case BackwardPath::scatter:
      backward_scatter(dL_dy, dL_dx, skip_grad, then, n);
      break;
  }
  drop_input_gradient(dL_dx, skip_grad, epilogue);
}

/// Stride 1: one im2col of dL/dy per chunk of input positions serves both products,
/// dL/dx = skip + w_flip · cols (no scatter) and (dL/dw_flip)ᵀ += cols · xᵀ.
template <class S, int In, int Out>
void Conv2d<S, In, Out>::backward_gather(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                         detail::BlockFn then, Index n) {
  const Input& x = this->cached_input();
  const detail::ConvGeometry back = gather_geometry();
  const Index parts = partitions(n), in_area = m_in_size.area();
  if (Index(m_dw_parts.size()) < parts) m_dw_parts.resize(std::size_t(parts));
  const Index im2col_rows = implicit(back, m_in) ? 0 : back.patch();
  const auto start = reserve_part_scratch(m_cols, n, parts, in_area, back.patch(), im2col_rows, m_in, [&](Index pc) {
    return std::array<std::array<Index, 3>, 2>{{{back.patch(), m_in, pc}, {pc, m_in, back.patch()}}};
  });
  detail::parallel_parts_dynamic(
      parts,
      [&](Index q, Index t) {
        const Index s0 = n * q / parts, s1 = n * (q + 1) / parts;
        Weight& dwf_t = m_dw_parts[std::size_t(q)];  // (out·k·k) × in
        dwf_t.setZero(back.patch(), m_in);
        for_each_chunk(s0 * in_area, s1 * in_area, back.patch(), [&](Index p0, Index pc) {
          auto dxt = chunk_buffer(m_cols[std::size_t(2 * t + 1)], pc, m_in);
          auto xs = x.middleCols(p0, pc);
          if (implicit(back, m_in)) {  // both products read the patches of dL/dy straight from it
            const Index* offsets = detail::tap_offsets(back, p0, pc);
            const int shift = detail::log2_ceil(back.channels);
            const detail::Im2colMapper<S, false> patches_t(dL_dy.data(), offsets, m_k * m_k, shift);
            detail::gemm_mapped<Eigen::ColMajor, true, S>(
                back.patch(), m_in, pc, patches_t, {xs.data(), xs.outerStride()}, dwf_t.data(), dwf_t.outerStride());
            const detail::Im2colMapper<S, true> patches(dL_dy.data(), offsets, m_k * m_k, shift);
            dxt.setZero();
            detail::gemm_mapped<Eigen::RowMajor, true, S>(
                pc, m_in, back.patch(), patches, {m_wf.data(), m_wf.outerStride()}, dxt.data(), dxt.outerStride());
          } else {
            auto cols = chunk_buffer(m_cols[std::size_t(2 * t)], back.patch(), pc);
            detail::im2col(back, dL_dy.data(), p0, pc, cols.data());
            detail::gemm<false, true>(dwf_t, cols, xs, detail::Accumulate);
            detail::gemm<true, true>(dxt, cols, m_wf, detail::zero_block(dxt));
          }
          auto dx = dL_dx.middleCols(p0, pc);
          if (skip_grad)
            dx = skip_grad->middleCols(p0, pc) + dxt.transpose();
          else
            dx = dxt.transpose();
          then(0, m_in, p0, pc);
        });
      },
      start);
  sum_weight_parts(parts);
  // dL/dW(o, ci, tap t) = row o + out·(k·k - 1 - t), column ci of the flipped gradient.
  const Index kk = m_k * m_k;
  for (Index ci = 0; ci < m_in; ++ci)
    for (Index t = 0; t < kk; ++t)
      m_dL_dweight.col(t + kk * ci) += m_dw_parts[0].col(ci).segment(m_out * (kk - 1 - t), m_out);
}

/// Other strides and groups: each part owns a range of samples (their columns of dL/dx: a patch never
/// crosses a sample) and its own partial dL/dW, summed in part order afterwards.
template <class S, int In, int Out>
void Conv2d<S, In, Out>::backward_scatter(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                          detail::BlockFn then, Index n) {
  const Input& x = this->cached_input();
  const Weight& w = kernel_weight(m_w);
  const detail::ConvGeometry geo = forward_geometry();
  const Index kg = geo.patch(), og = group_out(), parts = partitions(n);
  const Index in_area = m_in_size.area(), out_area = m_out_size.area();
  if (Index(m_dw_parts.size()) < parts) m_dw_parts.resize(std::size_t(parts));
  const auto start = reserve_part_scratch(m_cols, n, parts, out_area, kg, kg, 0, [&](Index pc) {
    return std::array<std::array<Index, 3>, 2>{{{kg, og, pc}, {kg, pc, og}}};
  });
  detail::parallel_parts_dynamic(
      parts,
      [&](Index q, Index t) {
        const Index s0 = n * q / parts, s1 = n * (q + 1) / parts;
        Weight& dw_t = m_dw_parts[std::size_t(q)];  // (dL/dW)ᵀ, kg × out: the long side is the GEMM's M
        dw_t.setZero(kg, m_out);
        auto dx = dL_dx.middleCols(s0 * in_area, (s1 - s0) * in_area);
        if (skip_grad)
          dx = skip_grad->middleCols(s0 * in_area, (s1 - s0) * in_area);
        else
          dx.setZero();
        for_each_chunk(s0 * out_area, s1 * out_area, kg, [&](Index p0, Index pc) {
          auto cols = chunk_buffer(m_cols[std::size_t(2 * t)], kg, pc);
          for (Index g = 0; g < m_opt.groups; ++g) {
            detail::im2col(geo, x.data() + g * geo.group, p0, pc, cols.data());
            auto dy = dL_dy.block(g * og, p0, og, pc);
            auto dw_g = dw_t.middleCols(g * og, og);
            detail::gemm<false, true>(dw_g, cols, dy, detail::Accumulate);
            // dL/dcolumns = wᵀ dy, scattered back onto the pixels the patches came from.
            detail::gemm<true, false>(cols, w.block(g * og, 0, og, kg), dy, detail::zero_block(cols));
            detail::col2im(geo, cols.data(), g, p0, pc, dL_dx.data());
          }
        });
        then(0, m_in, s0 * in_area, (s1 - s0) * in_area);
      },
      start);
  sum_weight_parts(parts);
  if (same_order())
    m_dL_dweight += m_dw_parts[0].transpose();
  else
    from_kernel_order_add(m_dw_parts[0].transpose(), m_dL_dweight);
}

/// The direct backward (dL/dx only for a stride-1 convolution): per sample, dL/dx = skip + the
/// convolution of dL/dy (padded by k−1−p) with the flipped kernel, and this part's dL/dW += the
/// products of the padded x with dL/dy; partial dL/dW summed in part order (same bits on any thread count).
/// With `norm`, each sample's dL/dy is computed from it first, into part scratch that stays in cache.
template <class S, int In, int Out>
void Conv2d<S, In, Out>::direct_backward(const Output& dL_dy, Input& dL_dx, const Input* skip_grad,
                                         detail::BlockFn epilogue, Index n, const detail::NormGradient<S>& norm) {
  const Input& x = this->cached_input();
  const Index parts = partitions(n);
  const detail::DirectConvShape fwd = direct_forward_shape();
  const Index q_pad = m_k - 1 - m_opt.padding;
  const detail::DirectConvShape back{
      m_out,          m_in, m_k, 1, m_out_size.height + 2 * q_pad, m_out_size.width + 2 * q_pad, m_in_size.height,
      m_in_size.width};
  const detail::DirectConvPlan dx_plan = direct_backward_plan(), dw_plan = direct_forward_plan();
  const Index in_area = m_in_size.area(), out_area = m_out_size.area();
  // m_cols[0]: the Winograd weights of the flipped kernel; m_cols[1 + 6t …]: thread t's padded dL/dy,
  // padded x, dL/dx before the skip, Winograd scratch, dL/dy from `norm`, x from m_x_norm (m_dw_parts:
  // per part).
  const detail::NormInput<S> x_norm = m_x_norm;
  if (Index(m_cols.size()) < 1 + 6 * parts) m_cols.resize(std::size_t(1 + 6 * parts));
  if (Index(m_dw_parts.size()) < parts) m_dw_parts.resize(std::size_t(parts));
  const detail::WinogradPlan wino =
      m_input_gradient ? winograd_plan(dx_plan, m_out, m_in_size) : detail::WinogradPlan{};
  const S* u = winograd_prepare(wino, back, m_wf.data(), m_cols[0]);
  // dL/dW by Winograd: each part sums dL/dU ([ξ][in][out]), turned into dL/dW once at the end.
  const int dw_m =
      winograd_applies(dw_plan, m_in) ? detail::winograd_weight_m<S>(m_out_size.height, m_out_size.width) : 0;
  const detail::DirectConvShape fwd_unpadded = unpadded(fwd, m_in_size);
  const auto reserve = [&](Index thread) {  // each thread's scratch set, as in compute_direct
    Weight* part = m_cols.data() + 1 + 6 * thread;
    if (norm) chunk_buffer(part[4], m_out, out_area);
    if (x_norm) chunk_buffer(part[5], m_in, in_area);
    if (m_input_gradient) {
      if (skip_grad) chunk_buffer(part[2], m_in, in_area);
      reserve_convolve(wino, back, q_pad, part[0], part[3]);
    }
    if (dw_m > 0)
      winograd_scratch(part[3], fwd);
    else if (m_opt.padding != 0)
      chunk_buffer(part[1], m_in, fwd.src_h * fwd.src_w);
  };
  detail::parallel_parts_dynamic(
      parts,
      [&](Index q, Index thread) {
        Weight* part = m_cols.data() + 1 + 6 * thread;
        Weight& dw = m_dw_parts[std::size_t(q)];  // kernel order [tap][in][out], or dL/dU
        if (dw_m > 0)  // the Winograd kernel writes the part's first sample's sums (no pass of zeros)
          dw.resize(m_out, m_in * detail::winograd_points(dw_m));
        else
          dw.setZero(m_out, m_in * m_k * m_k);
        const Index first = n * q / parts;
        for (Index i = first; i < n * (q + 1) / parts; ++i) {
          const S* dy = sample_of(norm, i, m_out, out_area, dL_dy.data() + i * out_area * m_out, part[4]);
          // dL/dW first: its kernels read the sample x from memory while they compute (prefetching), and
          // leave it in cache for the epilogue after dL/dx, which reads it again (ReLU's mask in place of
          // x: with the mask first, it waited on memory).
          // With x_norm, the sample's input as the forward computed it (x is the normalisation's input).
          const S* xi = sample_of(x_norm, i, m_in, in_area, x.data() + i * in_area * m_in, part[5]);
          if (dw_m > 0) {
            detail::winograd_conv_weight(fwd_unpadded, dw_m, xi, dy, dw.data(), winograd_scratch(part[3], fwd),
                                         i == first);
          } else {
            const S* x_padded = padded(xi, m_in_size, m_in, m_opt.padding, fwd, part[1]);
            detail::direct_conv_weight(dw_plan, fwd, x_padded, dy, dw.data());
          }
          if (m_input_gradient) {
            auto dxi = dL_dx.middleCols(i * in_area, in_area);
            if (skip_grad) {  // skip_grad may be dL_dx itself
              auto t = chunk_buffer(part[2], m_in, in_area);
              convolve(dx_plan, wino, back, dy, m_out_size, q_pad, m_wf.data(), u, t.data(), part[0], part[3]);
              dxi = skip_grad->middleCols(i * in_area, in_area) + t;
            } else {
              convolve(dx_plan, wino, back, dy, m_out_size, q_pad, m_wf.data(), u, dxi.data(), part[0], part[3]);
            }
            // The ReLU's backward, from its output computed above (still in cache): dL/dx then is with
            // respect to the normalisation's output.
            if (x_norm) detail::relu_backward(xi, dxi.data(), in_area * m_in);
            epilogue(0, m_in, i * in_area, in_area);
          }
        }
      },
      reserve);
  sum_weight_parts(parts);
  if (dw_m > 0) {
    auto kernel = chunk_buffer(m_cols[0], m_out, m_in * m_k * m_k);
    kernel.setZero();
    detail::winograd_weight_grad(m_dw_parts[0].data(), m_in, m_out, dw_m, kernel.data());
    from_kernel_order_add(kernel, m_dL_dweight);
  } else if (same_order()) {
    m_dL_dweight += m_dw_parts[0];
  } else {
    from_kernel_order_add(m_dw_parts[0], m_dL_dweight);
  }
}

// Compiled once in the compiled-kernels mode (core/compiled_kernels.hpp).
RESBLOCKS_EXTERN_KERNEL(class Conv2d<float>)
RESBLOCKS_EXTERN_KERNEL(class Conv2d<double>)

}  // namespace resblocks
