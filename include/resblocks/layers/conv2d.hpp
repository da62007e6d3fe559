#pragma once
/// \file
/// \brief Conv2d: 2-D convolution on the image layout, as chunked im2col + GEMM.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/direct_conv.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/torch_shape.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace resblocks {


namespace detail {

/// \brief An im2col matrix that is never written: element (position, patch row) is read from a
/// channels-last image through a per-position table of tap offsets (-1 in the padding), while
/// Eigen packs it for its GEMM kernel (the implicit GEMM of gemm_mapped). `PatchAlongK`: the
/// matrix is positions × patch (RowMajor packing), else patch × positions (ColMajor packing).
/// The patch row r is (tap r >> shift, channel r & mask): channel counts are powers of two.
template <class S, bool PatchAlongK>
class Im2colMapper {
 public:
  struct LinearMapper {};  // required by Eigen's packing routines' typedefs, never used

  Im2colMapper(const S* image, const Index* offsets, Index taps, int shift, Index pos0 = 0, Index patch0 = 0) noexcept
      : m_image(image), m_offsets(offsets), m_taps(taps), m_shift(shift), m_pos0(pos0), m_patch0(patch0) {}

  [[nodiscard]] S operator()(Index i, Index k) const noexcept {
    const Index pos = m_pos0 + (PatchAlongK ? i : k), patch = m_patch0 + (PatchAlongK ? k : i);
    const Index off = m_offsets[pos * m_taps + (patch >> m_shift)];
    return off < 0 ? S(0) : m_image[off + (patch & mask())];
  }

  /// The packet of patch rows starting at this element (along the patch: one tap's channels).
  template <class Packet>
  [[nodiscard]] Packet loadPacket(Index i, Index k) const noexcept {
    constexpr int size = Eigen::internal::unpacket_traits<Packet>::size;
    const Index pos = m_pos0 + (PatchAlongK ? i : k), patch = m_patch0 + (PatchAlongK ? k : i);
    const Index channel = patch & mask();
    if (channel + size <= mask() + 1) {  // within one tap: one load
      const Index off = m_offsets[pos * m_taps + (patch >> m_shift)];
      return off < 0 ? Eigen::internal::pset1<Packet>(S(0)) : Eigen::internal::ploadu<Packet>(m_image + off + channel);
    }
    alignas(64) S values[size];  // straddles two taps (a cache block edge inside a tap run)
    for (int e = 0; e < size; ++e) values[e] = PatchAlongK ? (*this)(i, k + e) : (*this)(i + e, k);
    return Eigen::internal::pload<Packet>(values);
  }

  [[nodiscard]] Im2colMapper getSubMapper(Index i, Index k) const noexcept {
    return Im2colMapper(m_image, m_offsets, m_taps, m_shift, m_pos0 + (PatchAlongK ? i : k),
                        m_patch0 + (PatchAlongK ? k : i));
  }

 private:
  [[nodiscard]] Index mask() const noexcept { return (Index(1) << m_shift) - 1; }
  const S* m_image;
  const Index* m_offsets;
  Index m_taps;
  int m_shift;
  Index m_pos0, m_patch0;
};

/// Per-thread table of tap offsets for Im2colMapper (grows once, then reused: no allocation per step).
inline std::vector<Index>& im2col_offsets() {
  thread_local std::vector<Index> offsets;
  return offsets;
}

}  // namespace detail

/// \brief Geometry of a Conv2d besides its channel counts and kernel size (PyTorch's defaults).
struct Conv2dOptions {
  Index stride = 1;
  Index padding = 0;   ///< zeros on every side
  Index dilation = 1;
  Index groups = 1;    ///< in and out channels split into this many independent groups
  bool bias = true;
};

/// \brief 2-D convolution with a k×k kernel, as PyTorch's `nn.Conv2d` (square kernel, stride,
/// padding, dilation, groups). `weight` is Out × (In/groups·k·k) in PyTorch's order (its
/// `[Out, In/groups, k, k]` tensor flattened), `bias` has Out entries; both start U(±1/√fan_in).
///
/// Input In × (n·H·W), output Out × (n·Ho·Wo) on the image layout (see ImageSize); H×W is set with
/// set_image_size(). A 1×1 stride-1 convolution is one GEMM on the batch; any other runs as
/// im2col + GEMM over chunks of positions that fit in cache, the batch split into parts that run
/// side by side (one per thread, single-threaded GEMMs inside). Backward of a stride-1 convolution
/// is the convolution of dL/dy with the flipped kernel: one im2col of dL/dy feeds both dL/dx and
/// dL/dW; other strides use dL/dcolumns and a col2im scatter. The parts depend on the batch and
/// max(2, threads) only, and partial dL/dW are summed in part order: 1 and 2 threads give the same bits.
template <class S = float, int In = Dynamic, int Out = Dynamic>
class Conv2d {
 public:
  using Scalar = S;
  static constexpr int InFeatures = In;
  static constexpr int OutFeatures = Out;
  using Input = Batch<S, In>;
  using Output = Batch<S, Out>;
  using Weight = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Bias = detail::ParamVector<S, Out>;
  static constexpr std::string_view name = "Conv2d";
  static constexpr bool has_epilogue_hooks = true;  ///< offers forward_then / backward_then / infer_then

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
    Weight w;     ///< the weight in the kernel's order
    std::vector<Weight> cols;  ///< per part: one chunk of im2col columns, and its output transposed
  };

  /// Static channel counts: `Conv2d<float, 16, 32> c(3, {.padding = 1});`.
  explicit Conv2d(Index kernel_size, Conv2dOptions options = {})
    requires(In != Dynamic && Out != Dynamic)
      : Conv2d(In, Out, kernel_size, options) {}

  /// Run-time channel counts (must agree with static ones, where given).
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

  /// PyTorch's default initialisation: weight and bias uniform in ±1/√fan_in, fan_in = In/groups·k·k.
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
  /// In/groups·k·k and Out/groups·k·k, as torch.nn.init computes them.
  [[nodiscard]] Index fan_in() const noexcept { return group_in() * m_k * m_k; }
  [[nodiscard]] Index fan_out() const noexcept { return group_out() * m_k * m_k; }
  /// The weight's shape in PyTorch, [Out, In/groups, k, k] (stored as Out × (In/groups·k·k), same order).
  [[nodiscard]] TorchShape torch_weight_shape() const noexcept { return {{m_out, group_in(), m_k, m_k}, 4}; }

  Weight& weight() noexcept { return m_weight; }
  const Weight& weight() const noexcept { return m_weight; }
  Bias& bias() noexcept { return m_bias; }
  const Bias& bias() const noexcept { return m_bias; }
  const Weight& weight_grad() const noexcept { return m_dL_dweight; }
  const Bias& bias_grad() const noexcept { return m_dL_dbias; }

  /// Sets the input's height and width; returns the output's.
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
  /// Tuning: at most this many output positions per im2col chunk (default: ~1 MB of float columns).
  void set_max_chunk_positions(Index positions) noexcept { m_max_chunk = std::max<Index>(1, positions); }
  /// Tuning: read the patches straight from the image while the GEMM packs them (implicit GEMM; on by
  /// default where it applies: one group, a power-of-two channel count of whole SIMD packets) instead
  /// of writing them out first (im2col). Both give the same bits.
  void set_implicit_gemm(bool on) noexcept { m_implicit = on; }
  /// Tuning: use the direct kernels (no im2col, no packing; see direct_conv.hpp) where they apply:
  /// one group, no dilation, output channels of 1, 2 or 4 SIMD packets (16, 32, 64 floats with
  /// AVX-512) and rows wide enough; dL/dx and dL/dW of stride-1 convolutions whose input channels
  /// qualify too. On by default; off, the GEMM paths run (same results up to rounding).
  void set_direct(bool on) noexcept { m_direct = on; }
  /// Off: backward computes dL/dW (and dL/db) only and returns dL/dx as zeros — for a first layer,
  /// whose input gradient training never uses (PyTorch skips it for inputs without requires_grad).
  void set_input_gradient(bool on) noexcept { m_input_gradient = on; }
  [[nodiscard]] bool input_gradient() const noexcept { return m_input_gradient; }
  [[nodiscard]] ImageSize output_image_size() const noexcept { return m_out_size; }

  const Output& forward(const Input& x) {
    forward_then(x, detail::NoPrepare{}, detail::NoEpilogue{});
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// forward(x), then `epilogue(y, r0, rows, c0, cols)` on each finished block of y (Sequential
  /// applies a following activation there, while the block is in cache); `prepare(y)` runs first.
  template <class Prepare, class Epilogue>
  const Output& forward_then(const Input& x, const Prepare& prepare, const Epilogue& epilogue) {
    const Index n = check_input(x);
    m_x = &x;
    prepare_weights(m_w, m_wf);
    compute(x, n, m_y, Output::Zero(m_out, 0), kernel_weight(m_w), m_cols, prepare, epilogue);
    return m_y;
  }

  /// y = skip + conv(x): the skip initialises the output blocks the GEMMs accumulate into.
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    const Index n = check_input(x);
    m_x = &x;
    prepare_weights(m_w, m_wf);
    compute(x, n, y, skip, kernel_weight(m_w), m_cols, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  const Input& backward(const Output& dL_dy) {
    backward_into(dL_dy, m_dL_dx, Input::Zero(m_in, 0), detail::NoPrepare{}, detail::NoEpilogue{});
    return m_dL_dx;
  }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// (Sequential applies a preceding activation's backward there); `prepare(dL_dx)` runs first.
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    backward_into(dL_dy, m_dL_dx, Input::Zero(m_in, 0), prepare, epilogue);
    return m_dL_dx;
  }

  /// dL_dx = skip_grad + dL/dx: skip_grad initialises the blocks dL/dx accumulates into.
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
    const Index n = check_input(x);
    if (!same_order()) to_kernel_order(m_weight, ws.w);
    compute(x, n, ws.y, Output::Zero(m_out, 0), kernel_weight(ws.w), ws.cols, prepare, epilogue);
    return ws.y;
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    const Index n = check_input(x);
    if (!same_order()) to_kernel_order(m_weight, ws.w);
    compute(x, n, y, skip, kernel_weight(ws.w), ws.cols, detail::NoPrepare{}, detail::NoEpilogue{});
  }

  void zero_grad() {
    m_dL_dweight.setZero();
    if (m_opt.bias) m_dL_dbias.setZero();
  }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    detail::visit_parameter(f, prefix.child("weight").view(), m_weight, m_dL_dweight, torch_weight_shape());
    if (m_opt.bias) f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    detail::visit_parameter(f, prefix.child("weight").view(), m_weight, m_dL_dweight, torch_weight_shape());
    if (m_opt.bias) f(prefix.child("bias").view(), m_bias, m_dL_dbias);
  }

 private:
  using ChunkMap = Eigen::Map<Weight, Eigen::Aligned16>;

  /// Where the patches of an im2col come from: a source of `channels` rows (`group` of them per
  /// group) on src_h × src_w images, read by a k×k kernel at out_h × out_w positions.
  struct Geometry {
    Index src_h, src_w, out_h, out_w, channels, group, k, stride, pad, dil;
    [[nodiscard]] Index patch() const noexcept { return group * k * k; }
    [[nodiscard]] Index src_area() const noexcept { return src_h * src_w; }
    [[nodiscard]] Index out_area() const noexcept { return out_h * out_w; }
  };
  /// The forward convolution's patches of x.
  [[nodiscard]] Geometry forward_geometry() const noexcept {
    return {m_in_size.height, m_in_size.width, m_out_size.height, m_out_size.width, m_in, group_in(),
            m_k, m_opt.stride, m_opt.padding, m_opt.dilation};
  }
  /// dL/dx of a stride-1 convolution is a convolution of dL/dy with the flipped kernel (padding
  /// d(k-1) - p): its patches of dL/dy, one per input position.
  [[nodiscard]] Geometry gather_geometry() const noexcept {
    return {m_out_size.height, m_out_size.width, m_in_size.height, m_in_size.width, m_out, m_out,
            m_k, 1, m_opt.dilation * (m_k - 1) - m_opt.padding, m_opt.dilation};
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
    for (Index t = 0; t < kk; ++t) wf.middleCols(m_out * (kk - 1 - t), m_out) = kw.middleCols(m_in * t, m_in).transpose();
  }

  /// Parts of a batch of n samples run side by side (fixed by n and the thread setting; 1 for small work).
  [[nodiscard]] Index partitions(Index n) const {
    const double work = double(n) * double(m_out_size.area()) * double(m_weight.size());
    if (work < detail::k_gemm_grain) return std::min<Index>(n, 1);
    return std::min<Index>(n, std::max(2, num_threads()));
  }

  /// The implicit GEMM applies: ungrouped, channels a power of two and whole packets. It pays off
  /// from 32 channels (measured: ~5% per convolution at 32 and 64; at 16 the table lookups per
  /// packet cost what the im2col pass saves) and when the product's other side (`n`) is not thin.
  [[nodiscard]] bool implicit(const Geometry& geo, Index n) const noexcept {
    const Index c = geo.channels, packet = Eigen::internal::packet_traits<S>::size;
    return m_implicit && geo.group == c && (c & (c - 1)) == 0 && c % packet == 0 && c >= 32 && n >= 16;
  }
  static int log2(Index c) noexcept {
    int shift = 0;
    while ((Index(1) << shift) < c) ++shift;
    return shift;
  }
  /// This thread's table of tap offsets of positions [p0, p0 + pc): offsets[j·k² + tap] = the tap's
  /// first element in the image, -1 in the padding.
  static const Index* tap_offsets(const Geometry& geo, Index p0, Index pc) {
    const Index taps = geo.k * geo.k, c = geo.channels;
    std::vector<Index>& offsets = detail::im2col_offsets();
    if (offsets.size() < std::size_t(pc * taps)) offsets.resize(std::size_t(pc * taps));
    Index* table = offsets.data();
    for_each_tap(geo, p0, 0, pc, [=](Index j, Index offset, Index column, Index run) {
      Index* row = table + j * taps + offset / geo.group;
      for (Index t = 0; t < run; ++t) row[t] = column < 0 ? Index(-1) : (column + t) * c;
    });
    return table;
  }

  /// f(p0, count) over chunks of positions [begin, end): about 1 MB of float patches of `patch` rows each.
  template <class F>
  void for_each_chunk(Index begin, Index end, Index patch, const F& f) const {
    const Index by_size = std::max<Index>(64, (Index(1) << 18) / std::max<Index>(patch, 1));
    const Index chunk = std::max<Index>(1, std::min(by_size, m_max_chunk));
    for (Index p0 = begin; p0 < end; p0 += chunk) f(p0, std::min(chunk, end - p0));
  }
  /// A rows × cols view of `buffer`'s storage, grown only when too small: forward and backward
  /// reuse one buffer for differently shaped chunks without reallocating.
  static ChunkMap chunk_buffer(Weight& buffer, Index rows, Index cols) {
    if (buffer.size() < rows * cols) buffer.resize(rows * cols, 1);
    return ChunkMap(buffer.data(), rows, cols);
  }

  /// y = skip + bias + conv(x) with the kernel-order weight w; each part owns a range of samples.
  template <class Skip, class Prepare, class Epilogue>
  void compute(const Input& x, Index n, Output& y, const Skip& skip, const Weight& w, std::vector<Weight>& buffers,
               const Prepare& prepare, const Epilogue& epilogue) const {
    y.resize(m_out, n * m_out_size.area());
    prepare(std::as_const(y));
    const bool has_skip = skip.cols() != 0;
    if (pointwise()) {  // y = skip + bias + W x: skip and bias initialise each thread's block of y
      auto init = [&](Index r0, Index rows, Index c0, Index cols) {
        auto block = y.block(r0, c0, rows, cols);
        if (has_skip && m_opt.bias)
          block = skip.block(r0, c0, rows, cols).colwise() + m_bias.segment(r0, rows);
        else if (has_skip)
          block = skip.block(r0, c0, rows, cols);
        else if (m_opt.bias)
          block.colwise() = m_bias.segment(r0, rows);
        else
          block.setZero();
      };
      detail::gemm<false, false>(y, w, x, init, [&](Index r0, Index rows, Index c0, Index cols) {
        epilogue(std::as_const(y), r0, rows, c0, cols);
      });
      return;
    }
    if (const detail::DirectConvPlan plan = direct_forward_plan(); plan.ok()) {
      const detail::DirectConvShape shape = direct_forward_shape();
      const Index in_area = m_in_size.area(), out_area = m_out_size.area(), parts = direct_parts(n);
      if (Index(buffers.size()) < 2 * parts) buffers.resize(std::size_t(2 * parts));
      detail::parallel_parts_dynamic(parts, [&](Index q) {
        for (Index i = n * q / parts; i < n * (q + 1) / parts; ++i) {
          const S* src = padded(x.data() + i * in_area * m_in, m_in_size, m_in, m_opt.padding, shape,
                                buffers[std::size_t(2 * q)]);
          auto yi = y.middleCols(i * out_area, out_area);
          if (has_skip) {  // the kernel's result first, then skip (+ bias): skip may be y itself
            auto t = chunk_buffer(buffers[std::size_t(2 * q + 1)], m_out, out_area);
            detail::direct_conv(plan, shape, src, w.data(), t.data());
            if (m_opt.bias)
              yi = (skip.middleCols(i * out_area, out_area) + t).colwise() + m_bias;
            else
              yi = skip.middleCols(i * out_area, out_area) + t;
          } else {
            detail::direct_conv(plan, shape, src, w.data(), yi.data());
            if (m_opt.bias) yi.colwise() += m_bias;
          }
          epilogue(std::as_const(y), 0, m_out, i * out_area, out_area);
        }
      });
      return;
    }
    const Geometry geo = forward_geometry();
    const Index kg = geo.patch(), og = group_out(), parts = partitions(n), out_area = geo.out_area();
    if (Index(buffers.size()) < 2 * parts) buffers.resize(std::size_t(2 * parts));
    detail::parallel_parts(parts, [&](Index q) {
      for_each_chunk(n * q / parts * out_area, n * (q + 1) / parts * out_area, kg, [&](Index p0, Index pc) {
        auto cols = chunk_buffer(buffers[std::size_t(2 * q)], kg, pc);
        auto yt = chunk_buffer(buffers[std::size_t(2 * q + 1)], pc, og);
        for (Index g = 0; g < m_opt.groups; ++g) {
          // yᵀ = colsᵀ wᵀ: the positions are the GEMM's long M side (few output channels make a poor M).
          if (implicit(geo, og)) {  // the patches are read from x while they are packed: no im2col pass
            const detail::Im2colMapper<S, true> patches(x.data(), tap_offsets(geo, p0, pc), m_k * m_k, log2(geo.channels));
            yt.setZero();
            detail::gemm_mapped<Eigen::RowMajor, true, S>(pc, og, kg, patches, {w.data(), w.outerStride()}, yt.data(),
                                                          yt.outerStride());
          } else {
            im2col(geo, x.data() + g * geo.group, p0, pc, cols);
            detail::gemm<true, true>(yt, cols, w.block(g * og, 0, og, kg), detail::zero_block(yt));
          }
          auto yg = y.block(g * og, p0, og, pc);
          if (has_skip && m_opt.bias)
            yg = (skip.block(g * og, p0, og, pc) + yt.transpose()).colwise() + m_bias.segment(g * og, og);
          else if (has_skip)
            yg = skip.block(g * og, p0, og, pc) + yt.transpose();
          else if (m_opt.bias)
            yg = yt.transpose().colwise() + m_bias.segment(g * og, og);
          else
            yg = yt.transpose();
        }
        epilogue(std::as_const(y), 0, m_out, p0, pc);
      });
    });
  }

  template <class SkipGrad, class Prepare, class Epilogue>
  void backward_into(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Prepare& prepare,
                     const Epilogue& epilogue) {
    const Input& x = m_x.get(name);
    const Index n = x.cols() / m_in_size.area();
    detail::check_output_gradient(name, m_out, n * m_out_size.area(), dL_dy);
    dL_dx.resize(m_in, x.cols());
    prepare(std::as_const(dL_dx));
    const bool has_skip = skip_grad.cols() != 0;
    if (m_opt.bias) m_dL_dbias += dL_dy.rowwise().sum();
    // Without the input gradient the GEMM paths still compute dL/dx (with dL/dW); the epilogue runs
    // once on what replaces it (drop_input_gradient), not on the dropped values.
    auto then = [&](Index r0, Index rows, Index c0, Index cols) {
      if (m_input_gradient) epilogue(std::as_const(dL_dx), r0, rows, c0, cols);
    };
    if (pointwise()) {  // dL/dW += dL_dy xᵀ; dL/dx = skip_grad + Wᵀ dL_dy
      detail::gemm<false, true>(m_dL_dweight, dL_dy, x, detail::Accumulate{});
      if (has_skip)
        detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::assign_block(dL_dx, skip_grad), then);
      else
        detail::gemm<true, false>(dL_dx, m_weight, dL_dy, detail::zero_block(dL_dx), then);
      drop_input_gradient(dL_dx, skip_grad, epilogue);
      return;
    }
    if (direct_backward_applies()) {
      direct_backward(dL_dy, dL_dx, skip_grad, epilogue, n, direct_parts(n));
      return;
    }
    const Weight& w = kernel_weight(m_w);
    const Geometry geo = forward_geometry();
    const Index kg = geo.patch(), og = group_out(), parts = partitions(n);
    const Index in_area = m_in_size.area(), out_area = m_out_size.area();
    const bool gather = gather_backward();
    if (Index(m_dw_parts.size()) < parts) m_dw_parts.resize(std::size_t(parts));
    if (Index(m_cols.size()) < 2 * parts) m_cols.resize(std::size_t(2 * parts));
    if (gather) {
      // Stride 1: one im2col of dy per chunk of input positions serves both products,
      // dL/dx = skip + w_flip · cols (no scatter) and (dL/dw_flip)ᵀ += cols · xᵀ.
      const Geometry back = gather_geometry();
      detail::parallel_parts(parts, [&](Index q) {
        const Index s0 = n * q / parts, s1 = n * (q + 1) / parts;
        Weight& dwf_t = m_dw_parts[std::size_t(q)];  // (out·k·k) × in
        dwf_t.setZero(back.patch(), m_in);
        for_each_chunk(s0 * in_area, s1 * in_area, back.patch(), [&](Index p0, Index pc) {
          auto dxt = chunk_buffer(m_cols[std::size_t(2 * q + 1)], pc, m_in);
          auto xs = x.middleCols(p0, pc);
          if (implicit(back, m_in)) {  // both products read the patches of dL/dy straight from it
            const Index* offsets = tap_offsets(back, p0, pc);
            const int shift = log2(back.channels);
            const detail::Im2colMapper<S, false> patches_t(dL_dy.data(), offsets, m_k * m_k, shift);
            detail::gemm_mapped<Eigen::ColMajor, true, S>(back.patch(), m_in, pc, patches_t, {xs.data(), xs.outerStride()},
                                                          dwf_t.data(), dwf_t.outerStride());
            const detail::Im2colMapper<S, true> patches(dL_dy.data(), offsets, m_k * m_k, shift);
            dxt.setZero();
            detail::gemm_mapped<Eigen::RowMajor, true, S>(pc, m_in, back.patch(), patches,
                                                          {m_wf.data(), m_wf.outerStride()}, dxt.data(), dxt.outerStride());
          } else {
            auto cols = chunk_buffer(m_cols[std::size_t(2 * q)], back.patch(), pc);
            im2col(back, dL_dy.data(), p0, pc, cols);
            detail::gemm<false, true>(dwf_t, cols, xs, detail::Accumulate{});
            detail::gemm<true, true>(dxt, cols, m_wf, detail::zero_block(dxt));
          }
          auto dx = dL_dx.middleCols(p0, pc);
          if (has_skip)
            dx = skip_grad.middleCols(p0, pc) + dxt.transpose();
          else
            dx = dxt.transpose();
          then(0, m_in, p0, pc);
        });
      });
      for (Index q = 1; q < parts; ++q) m_dw_parts[0] += m_dw_parts[std::size_t(q)];
      // dL/dW(o, ci, tap t) = row o + out·(k·k - 1 - t), column ci of the flipped gradient.
      const Index kk = m_k * m_k;
      for (Index ci = 0; ci < m_in; ++ci)
        for (Index t = 0; t < kk; ++t)
          m_dL_dweight.col(t + kk * ci) += m_dw_parts[0].col(ci).segment(m_out * (kk - 1 - t), m_out);
      drop_input_gradient(dL_dx, skip_grad, epilogue);
      return;
    }
    // Each part owns a range of samples: their columns of dL/dx (a patch never crosses a sample)
    // and its own partial dL/dW, summed in part order afterwards.
    detail::parallel_parts(parts, [&](Index q) {
      const Index s0 = n * q / parts, s1 = n * (q + 1) / parts;
      Weight& dw_t = m_dw_parts[std::size_t(q)];  // (dL/dW)ᵀ, kg × out: the long side is the GEMM's M
      dw_t.setZero(kg, m_out);
      auto dx = dL_dx.middleCols(s0 * in_area, (s1 - s0) * in_area);
      if (has_skip)
        dx = skip_grad.middleCols(s0 * in_area, (s1 - s0) * in_area);
      else
        dx.setZero();
      for_each_chunk(s0 * out_area, s1 * out_area, kg, [&](Index p0, Index pc) {
        auto cols = chunk_buffer(m_cols[std::size_t(2 * q)], kg, pc);
        for (Index g = 0; g < m_opt.groups; ++g) {
          im2col(geo, x.data() + g * geo.group, p0, pc, cols);
          auto dy = dL_dy.block(g * og, p0, og, pc);
          auto dw_g = dw_t.middleCols(g * og, og);
          detail::gemm<false, true>(dw_g, cols, dy, detail::Accumulate{});
          // dL/dcolumns = wᵀ dy, scattered back onto the pixels the patches came from.
          detail::gemm<true, false>(cols, w.block(g * og, 0, og, kg), dy, detail::zero_block(cols));
          col2im(cols, g, p0, pc, dL_dx);
        }
      });
      then(0, m_in, s0 * in_area, (s1 - s0) * in_area);
    });
    for (Index q = 1; q < parts; ++q) m_dw_parts[0] += m_dw_parts[std::size_t(q)];
    if (same_order())
      m_dL_dweight += m_dw_parts[0].transpose();
    else
      from_kernel_order_add(m_dw_parts[0].transpose(), m_dL_dweight);
    drop_input_gradient(dL_dx, skip_grad, epilogue);
  }

  /// Parts of the direct paths: samples in up to 8 parts whatever the threads (each with its own
  /// partial dL/dW, summed in order), handed out to the threads as they come free.
  [[nodiscard]] Index direct_parts(Index n) const noexcept {
    const double work = double(n) * double(m_out_size.area()) * double(m_weight.size());
    return work < detail::k_gemm_grain ? std::min<Index>(n, 1) : std::min<Index>(n, 8);
  }
  /// The direct kernels' plan for the forward convolution (none: GEMM path).
  [[nodiscard]] detail::DirectConvPlan direct_forward_plan() const noexcept {
    if (!m_direct || m_opt.groups != 1 || m_opt.dilation != 1) return {};
    return detail::direct_conv_plan<S>(m_out, m_out_size.width);
  }
  [[nodiscard]] detail::DirectConvShape direct_forward_shape() const noexcept {
    return {m_in, m_out, m_k, m_opt.stride, m_in_size.height + 2 * m_opt.padding, m_in_size.width + 2 * m_opt.padding,
            m_out_size.height, m_out_size.width};
  }
  /// dL/dx (the gather convolution of dL/dy) and dL/dW of a stride-1 convolution, both direct.
  [[nodiscard]] detail::DirectConvPlan direct_backward_plan() const noexcept {
    if (!direct_forward_plan().ok()) return {};
    return detail::direct_conv_plan<S>(m_in, m_in_size.width);
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
  template <class SkipGrad, class Epilogue>
  void drop_input_gradient(Input& dL_dx, const SkipGrad& skip_grad, const Epilogue& epilogue) const {
    if (m_input_gradient) return;
    if (skip_grad.cols() != 0)
      dL_dx = skip_grad;
    else
      dL_dx.setZero();
    epilogue(std::as_const(dL_dx), 0, m_in, 0, dL_dx.cols());
  }

  /// The direct backward applies (after the pointwise case): direct dL/dW, and direct dL/dx unless it
  /// is not wanted.
  [[nodiscard]] bool direct_backward_applies() const noexcept {
    return direct_forward_plan().ok() && (!m_input_gradient || (gather_backward() && direct_backward_plan().ok()));
  }

  /// The direct backward (dL/dx only for a stride-1 convolution): per sample, dL/dx = skip + the convolution
  /// of dL/dy (padded by k−1−p) with the flipped kernel, and this part's dL/dW += the products of
  /// the padded x with dL/dy; partial dL/dW summed in part order (same bits on 1 and 2 threads).
  template <class SkipGrad, class Epilogue>
  void direct_backward(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad, const Epilogue& epilogue, Index n,
                       Index parts) {
    const Input& x = m_x.get(name);
    const detail::DirectConvShape fwd = direct_forward_shape();
    const Index q_pad = m_k - 1 - m_opt.padding;
    const detail::DirectConvShape back{m_out, m_in, m_k, 1, m_out_size.height + 2 * q_pad,
                                       m_out_size.width + 2 * q_pad, m_in_size.height, m_in_size.width};
    const detail::DirectConvPlan dx_plan = direct_backward_plan(), dw_plan = direct_forward_plan();
    const Index in_area = m_in_size.area(), out_area = m_out_size.area();
    const bool has_skip = skip_grad.cols() != 0;
    if (Index(m_cols.size()) < 3 * parts) m_cols.resize(std::size_t(3 * parts));
    if (Index(m_dw_parts.size()) < parts) m_dw_parts.resize(std::size_t(parts));
    detail::parallel_parts_dynamic(parts, [&](Index q) {
      Weight& dw = m_dw_parts[std::size_t(q)];  // kernel order: [tap][in][out]
      dw.setZero(m_out, m_in * m_k * m_k);
      for (Index i = n * q / parts; i < n * (q + 1) / parts; ++i) {
        const S* dy = dL_dy.data() + i * out_area * m_out;
        if (m_input_gradient) {
          const S* dy_padded = padded(dy, m_out_size, m_out, q_pad, back, m_cols[std::size_t(3 * q)]);
          auto dxi = dL_dx.middleCols(i * in_area, in_area);
          if (has_skip) {  // skip_grad may be dL_dx itself
            auto t = chunk_buffer(m_cols[std::size_t(3 * q + 2)], m_in, in_area);
            detail::direct_conv(dx_plan, back, dy_padded, m_wf.data(), t.data());
            dxi = skip_grad.middleCols(i * in_area, in_area) + t;
          } else {
            detail::direct_conv(dx_plan, back, dy_padded, m_wf.data(), dxi.data());
          }
          epilogue(std::as_const(dL_dx), 0, m_in, i * in_area, in_area);
        }
        const S* x_padded = padded(x.data() + i * in_area * m_in, m_in_size, m_in, m_opt.padding, fwd,
                                   m_cols[std::size_t(3 * q + 1)]);
        detail::direct_conv_weight(dw_plan, fwd, x_padded, dy, dw.data());
      }
    });
    for (Index q = 1; q < parts; ++q) m_dw_parts[0] += m_dw_parts[std::size_t(q)];
    if (same_order())
      m_dL_dweight += m_dw_parts[0];
    else
      from_kernel_order_add(m_dw_parts[0], m_dL_dweight);
    drop_input_gradient(dL_dx, skip_grad, epilogue);
  }

  /// Calls f(j, row offset in the patch, source column or -1 in the padding, taps) for every kernel
  /// tap of positions p0 + j, j in [j0, j1), in order (positions advance without divisions). Taps
  /// along a kernel row that read neighbouring source pixels come as one run (`taps` > 1), so that
  /// their channels are one contiguous copy (undilated, ungrouped); padding comes as runs of -1.
  template <class F>
  static void for_each_tap(const Geometry& geo, Index p0, Index j0, Index j1, const F& f) {
    const Index ho_count = geo.out_h, wo_count = geo.out_w, area = ho_count * wo_count;
    const Index h = geo.src_h, w = geo.src_w, k = geo.k, cg = geo.group;
    const Index stride = geo.stride, pad = geo.pad, dil = geo.dil;
    const bool runs = dil == 1 && geo.group == geo.channels;
    Index n = (p0 + j0) / area, r = (p0 + j0) - n * area, ho = r / wo_count, wo = r - ho * wo_count;
    for (Index j = j0; j < j1; ++j) {
      const Index base = n * h * w, hb = ho * stride - pad, wb = wo * stride - pad;
      for (Index kh = 0; kh < k; ++kh) {
        const Index hi = hb + kh * dil, row = cg * k * kh;
        if (hi < 0 || hi >= h) {
          f(j, row, Index(-1), k);
        } else if (runs) {
          const Index kw0 = std::max<Index>(0, -wb), kw1 = std::min<Index>(k, w - wb);
          if (kw1 <= kw0) {
            f(j, row, Index(-1), k);
            continue;
          }
          if (kw0 > 0) f(j, row, Index(-1), kw0);
          f(j, row + cg * kw0, base + hi * w + wb + kw0, kw1 - kw0);
          if (kw1 < k) f(j, row + cg * kw1, Index(-1), k - kw1);
        } else {
          for (Index kw = 0; kw < k; ++kw) {
            const Index wi = wb + kw * dil;
            f(j, row + cg * kw, wi >= 0 && wi < w ? base + hi * w + wi : Index(-1), Index(1));
          }
        }
      }
      if (++wo == wo_count) {
        wo = 0;
        if (++ho == ho_count) {
          ho = 0;
          ++n;
        }
      }
    }
  }

  /// Runs f.template operator()<L>() with L = len when it is a common channel run (16, 32, 64; 12
  /// and 48: DenseNet's growth rate k and bottleneck 4k): the copies and adds below then compile to
  /// whole-register moves. L = 0: run-time length.
  template <class F>
  static void with_run_length(Index len, const F& f) {
    switch (len) {
      case 12: f.template operator()<12>(); break;
      case 16: f.template operator()<16>(); break;
      case 32: f.template operator()<32>(); break;
      case 48: f.template operator()<48>(); break;
      case 64: f.template operator()<64>(); break;
      default: f.template operator()<0>(); break;
    }
  }

  /// Columns [p0, p0 + pc) of the im2col matrix of `src` (pointing at the group's first channel):
  /// row ci + group·(kw + k·kh) of column j holds channel ci of the source pixel under tap (kh, kw)
  /// of position p0 + j (0 in the padding).
  static void im2col(const Geometry& geo, const S* src, Index p0, Index pc, ChunkMap& cols) {
    const Index cg = geo.group, kg = geo.patch(), c = geo.channels;
    detail::parallel_for(pc, double(kg), [&](Index j0, Index j1) {
      with_run_length(cg, [&]<int L>() {
        using Run = Eigen::Matrix<S, L == 0 ? Eigen::Dynamic : L, 1>;
        S* dst = cols.data();
        for_each_tap(geo, p0, j0, j1, [=](Index j, Index offset, Index column, Index taps) {
          S* out = dst + j * kg + offset;
          if (column >= 0) {
            const S* in = src + column * c;  // taps > 1 only when c == cg: the pixels' channels are contiguous
            for (Index t = 0; t < taps; ++t) Eigen::Map<Run>(out + t * cg, cg) = Eigen::Map<const Run>(in + t * cg, cg);
          } else {
            for (Index t = 0; t < taps; ++t) Eigen::Map<Run>(out + t * cg, cg).setZero();
          }
        });
      });
    });
  }

  /// dL_dx += col2im(dcols) for group g: the transpose of im2col, split over channels so that each
  /// element of dL/dx is summed by one thread in a fixed order.
  void col2im(const ChunkMap& dcols, Index g, Index p0, Index pc, Input& dL_dx) const {
    const Geometry geo = forward_geometry();
    const Index cg = geo.group, kg = geo.patch(), c = m_in;
    S* dst = dL_dx.data() + g * cg;
    detail::parallel_for(cg, double(pc) * double(m_k * m_k), [&](Index c0, Index c1) {
      with_run_length(c1 - c0, [&]<int L>() {
        using Run = Eigen::Matrix<S, L == 0 ? Eigen::Dynamic : L, 1>;
        const S* src = dcols.data() + c0;
        const Index len = c1 - c0;
        for_each_tap(geo, p0, 0, pc, [=](Index j, Index offset, Index column, Index taps) {
          if (column < 0) return;
          for (Index t = 0; t < taps; ++t)
            Eigen::Map<Run>(dst + (column + t) * c + c0, len) += Eigen::Map<const Run>(src + j * kg + offset + t * cg, len);
        });
      });
    });
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
  bool m_input_gradient = true;
  std::vector<Weight> m_cols;      ///< per part: im2col chunk (forward), dL/dcolumns chunk (backward)
  std::vector<Weight> m_dw_parts;  ///< per part: partial dL/dW in kernel order
  detail::CachedInput<Input> m_x;
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
